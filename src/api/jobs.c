/* Workflow and job endpoints. The runner lives on loop 0: each handler hands
 * it a command (fc_jobs_post) and answers when the command comes back.
 *
 * Rights (with authentication on; --open allows everything):
 *   POST /start?w=                       `run` matching w
 *   POST /stop|suspend|resume|approve|reject?w=&i=
 *                                        `run` matching w, and the job's starter
 *                                        (same sub) or admin; a triggered job: admin
 *   GET /job?w=&i=, GET /jobs?w=         `run` matching w
 *   GET /workflows                       any token; lists the workflows it may run
 *   GET /workflows/{id}                  `run` matching id
 *   GET /sse/{w}/{j}                     subscribe on job.{j} (FC_ACCESS_SUBSCRIBE_JOB)
 * admin has every right. The run right is checked here, on the request's loop,
 * before anything is handed to the runner: a refused request changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "jobs/jobs.h"

/* Seconds a client is told to wait when the job queue is full. */
#define QUEUE_RETRY_AFTER_S 5

/* A new command, carrying a copy of the request's rights (the request's
 * claims are not read on loop 0). */
static fc_jobs_cmd_t *cmd_new(fc_req_t *req, void (*run)(fc_jobs_t *, fc_jobs_cmd_t *)) {
  fc_jobs_cmd_t *c = fc_xcalloc(1, sizeof *c);
  c->ud = req;
  c->loop = fc_loop_index(req->loop);
  c->run = run;
  fc_buf_init(&c->body);
  const fc_claims_t *cl = fc_api_claims(req);
  c->who.all = !fc_app_of(req)->auth || (cl && cl->admin);
  if (cl && cl->sub) c->who.sub = fc_xstrndup(cl->sub, strlen(cl->sub));
  if (cl && cl->nrun) {
    char **run_pats = fc_xcalloc(cl->nrun, sizeof *run_pats);
    for (size_t i = 0; i < cl->nrun; i++) run_pats[i] = fc_xstrndup(cl->run[i], strlen(cl->run[i]));
    c->who.run = run_pats;
    c->who.nrun = cl->nrun;
  }
  return c;
}

static void cmd_free(fc_jobs_cmd_t *c) {
  fc_buf_dispose(&c->body);
  free((char *)c->who.sub);
  for (size_t i = 0; i < c->who.nrun; i++) free(c->who.run[i]);
  free((char **)c->who.run);
  free(c);
}

/* Answers 403 and returns false unless the request may run workflow `wf`. */
static bool check_run(fc_req_t *req, const fc_jobs_cmd_t *c, int64_t wf) {
  if (fc_jobs_may_run(&c->who, wf)) return true;
  fc_http_error(req, 403, "forbidden", "the token may not run workflow %lld (it needs the run right)", (long long)wf);
  return false;
}

/* 429 with Retry-After: the job queue is full. */
static void answer_queue_full(fc_req_t *req, const char *msg) {
  char extra[48];
  snprintf(extra, sizeof extra, "Retry-After: %d\r\n", QUEUE_RETRY_AFTER_S);
  fc_http_error_with(req, 429, extra, "too_many_jobs", "%s", msg);
}

/* Answers a command's outcome: its JSON body (rc 0), or the JSON error its
 * rc stands for, with the run's message. Frees it. */
static void answer(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  (void)j;
  fc_req_t *req = c->ud;
  fc_buf_append(&c->body, "", 1);
  switch (c->rc) {
    case -ESHUTDOWN: fc_http_error(req, 503, "stopping", "the server is stopping"); break;
    case -EINVAL: fc_http_error(req, 400, "bad_cursor", "%s", c->body.data); break;
    case -EPERM: fc_http_error(req, 403, "forbidden", "%s", c->body.data); break;
    case -ENOENT: fc_http_error(req, 404, "not_found", "%s", c->body.data); break;
    case -EBUSY: fc_http_error(req, 409, "wrong_state", "%s", c->body.data); break;
    case -EAGAIN: answer_queue_full(req, c->body.data); break;
    case -EIO:
      fc_http_error(req, 503, "storage_unavailable", "jobs' storage (Redis) is unavailable; retry later");
      break;
    case -ETIMEDOUT:
      fc_http_error(req, 503, "node_unavailable", "the node running the job did not answer; retry later");
      break;
    default: fc_http_respond(req, 200, "application/json", NULL, c->body.data, c->body.len - 1);
  }
  cmd_free(c);
}

static void post(fc_req_t *req, fc_jobs_cmd_t *c) {
  fc_jobs_t *j = fc_app_of(req)->jobs;
  if (!c->done) c->done = answer;
  if (!j) {
    fc_http_error(req, 503, "no_workflows", "workflows are not available (see the server log)");
    cmd_free(c);
    return;
  }
  fc_jobs_post(j, c);
}

/* Parses a workflow id: answers 400 and returns -EINVAL when it is not a number. */
static int parse_wf(fc_req_t *req, const char *s, int64_t *out) {
  uint64_t v;
  if (!s || fc_parse_u64(s, strlen(s), &v) < 0 || v > INT64_MAX) {
    fc_http_error(req, 400, "bad_workflow_id", "the workflow id must be a whole number");
    return -EINVAL;
  }
  *out = (int64_t)v;
  return 0;
}

/* True when `s` is a job id (a UUID: 36 characters of hex and dashes). */
static bool job_id_valid(const char *s) {
  if (!s || strlen(s) != 36) return false;
  for (int i = 0; i < 36; i++) {
    char ch = s[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? ch != '-' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
      return false;
  }
  return true;
}

/* Reads ?w= and, when `need_job`, ?i=. Answers 400 and returns -EINVAL if bad. */
static int parse_query(fc_req_t *req, fc_jobs_cmd_t *c, bool need_job) {
  bool bad = false;
  if (parse_wf(req, fc_req_query(req, "w", 0, &bad), &c->wf) < 0) return -EINVAL;
  if (!need_job) return 0;
  const char *i = fc_req_query(req, "i", 0, &bad);
  if (bad || !job_id_valid(i)) {
    fc_http_error(req, 400, "bad_job_id", "the job id (?i=) must be a UUID");
    return -EINVAL;
  }
  snprintf(c->id, sizeof c->id, "%s", i);
  return 0;
}

/* Reads ?w= (and ?i= when `need_job`) into `c`, checks the run right, then
 * hands it to loop 0; or answers 400/403 and drops it. */
static void submit(fc_req_t *req, fc_jobs_cmd_t *c, bool need_job) {
  if (parse_query(req, c, need_job) < 0 || !check_run(req, c, c->wf)) {
    cmd_free(c);
    return;
  }
  post(req, c);
}

static void run_workflows(fc_jobs_t *j, fc_jobs_cmd_t *c) { fc_jobs_workflows_json(j, &c->who, &c->body); }

void fc_api_workflows(fc_req_t *req) { post(req, cmd_new(req, run_workflows)); }

static void run_workflow(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  if ((c->rc = fc_jobs_workflow_json(j, c->wf, &c->body)) < 0) {
    fc_buf_printf(&c->body, "no workflow %lld", (long long)c->wf);
  }
}

void fc_api_workflow(fc_req_t *req) {
  fc_jobs_cmd_t *c = cmd_new(req, run_workflow);
  if (parse_wf(req, req->params[0], &c->wf) < 0 || !check_run(req, c, c->wf)) {
    cmd_free(c);
    return;
  }
  post(req, c);
}

static void run_reload(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  fc_buf_printf(&c->body, "{\"workflows\":%zu}", fc_jobs_reload(j));
}

void fc_api_workflows_reload(fc_req_t *req) { post(req, cmd_new(req, run_reload)); }

static void run_start(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  char id[40];
  int rc = fc_jobs_start(j, c->wf, NULL, c->who.sub, id);
  if (rc == -EAGAIN) {
    c->rc = rc;
    fc_buf_printf(&c->body, "too many jobs wait to run (--max-queued-jobs); retry later");
    return;
  }
  if (rc < 0) {
    c->rc = rc == -EIO ? rc : -ENOENT;
    fc_buf_printf(&c->body, "no workflow %lld", (long long)c->wf);
    return;
  }
  /* 200, as Wexflow's server answers: clients check for 200 */
  fc_buf_printf(&c->body, "\"%s\"", id);
}

void fc_api_job_start(fc_req_t *req) {
  fc_jobs_cmd_t *c = cmd_new(req, run_start);
  submit(req, c, false);
}

/* In cluster mode the run may be held until the node running the job
 * answers: the message is made in control_done, from the rc either way. */
static void run_control(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  c->rc = fc_jobs_control(j, c->wf, c->id, (fc_job_action_t)c->action, &c->who);
}

static void control_done(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  static const char *const names[] = {"stop", "suspend", "resume", "approve", "reject"};
  int rc = c->rc;
  if (rc == -ENOENT) fc_buf_printf(&c->body, "no job %s of workflow %lld", c->id, (long long)c->wf);
  else if (rc == -EPERM)
    fc_buf_printf(&c->body, "only admin or the token that started job %s may %s it", c->id, names[c->action]);
  else if (rc == -EBUSY) fc_buf_printf(&c->body, "cannot %s job %s in its current state", names[c->action], c->id);
  else if (rc == 0) fc_buf_puts(&c->body, "true");
  else if (rc != -EIO && rc != -ETIMEDOUT && rc != -ESHUTDOWN) c->rc = -EIO;
  answer(j, c);
}

void fc_api_job_control(fc_req_t *req) {
  fc_jobs_cmd_t *c = cmd_new(req, run_control);
  c->done = control_done;
  const char *name = req->route->name + 4; /* "job_stop" ... */
  c->action = !strcmp(name, "stop")      ? FC_JOB_STOP
              : !strcmp(name, "suspend") ? FC_JOB_SUSPEND
              : !strcmp(name, "resume")  ? FC_JOB_RESUME
              : !strcmp(name, "approve") ? FC_JOB_APPROVE
                                         : FC_JOB_REJECT;
  submit(req, c, true);
}

static void run_job(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  if ((c->rc = fc_jobs_job_json(j, c->wf, c->id, &c->body, &c->final_seq)) < 0) {
    fc_buf_printf(&c->body, "no job %s of workflow %lld", c->id, (long long)c->wf);
  }
}

void fc_api_job(fc_req_t *req) {
  fc_jobs_cmd_t *c = cmd_new(req, run_job);
  submit(req, c, true);
}

static void run_jobs(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  int rc = fc_jobs_list_json(j, c->wf, c->after, c->limit, &c->body, c->next_after);
  if (rc < 0) {
    c->rc = rc == -EINVAL || rc == -EIO ? rc : -ENOENT;
    c->body.len = 0;
    if (rc == -EINVAL) fc_buf_printf(&c->body, "?after= is not a job of workflow %lld", (long long)c->wf);
    else fc_buf_printf(&c->body, "no workflow %lld", (long long)c->wf);
  }
}

/* A page of jobs; the cursor of the next one in Link (rel="next") and
 * X-Next-After, when there are more. */
static void jobs_done(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  if (c->rc < 0 || !c->next_after[0]) {
    answer(j, c);
    return;
  }
  char extra[256];
  snprintf(extra, sizeof extra, "Link: </api/v1/jobs?w=%lld&limit=%u&after=%s>; rel=\"next\"\r\nX-Next-After: %s\r\n",
           (long long)c->wf, c->limit, c->next_after, c->next_after);
  fc_http_respond(c->ud, 200, "application/json", extra, c->body.data, c->body.len);
  cmd_free(c);
}

/* Reads ?limit= (1..FC_JOBS_PAGE_MAX) and ?after= (a job id). Answers 400 and
 * returns -EINVAL when bad. */
static int parse_page(fc_req_t *req, fc_jobs_cmd_t *c) {
  bool bad = false;
  const char *l = fc_req_query(req, "limit", 0, &bad), *a = fc_req_query(req, "after", 0, &bad);
  uint64_t v = FC_JOBS_PAGE_DEFAULT;
  if (bad || (l && (fc_parse_u64(l, strlen(l), &v) < 0 || v < 1 || v > FC_JOBS_PAGE_MAX))) {
    fc_http_error(req, 400, "bad_limit", "?limit= must be a whole number from 1 to %d", FC_JOBS_PAGE_MAX);
    return -EINVAL;
  }
  c->limit = (unsigned)v;
  if (a && !job_id_valid(a)) {
    fc_http_error(req, 400, "bad_cursor", "?after= must be a job id (a UUID)");
    return -EINVAL;
  }
  snprintf(c->after, sizeof c->after, "%s", a ? a : "");
  return 0;
}

void fc_api_jobs(fc_req_t *req) {
  fc_jobs_cmd_t *c = cmd_new(req, run_jobs);
  c->done = jobs_done;
  if (parse_page(req, c) < 0) {
    cmd_free(c);
    return;
  }
  submit(req, c, false);
}

/* A job stream ends with its one unnamed event (status and log are named). */
static bool is_final(const fc_event_t *ev) { return ev->name_len == 0; }

/* Back on the request's loop: open the job's stream, or answer 204/404. */
static void sse_done(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  fc_req_t *req = c->ud;
  fc_str_t h = fc_req_header(req, "last-event-id");
  bool bad = false;
  const char *q = fc_req_query(req, "lastEventId", 0, &bad);
  const char *id = h.base && h.len ? h.base : q;
  size_t idlen = h.base && h.len ? h.len : (q ? strlen(q) : 0);
  fc_resume_t from = {.replay = FC_JOBS_RETENTION};
  if (c->rc < 0) {
    answer(j, c);
    return;
  }
  if (id && idlen && fc_sse_parse_id(id, idlen, &from.after) < 0) {
    fc_http_error(req, 400, "bad_last_event_id", "Last-Event-ID must be an event id (a decimal number)");
    cmd_free(c);
    return;
  }
  from.has_after = id && idlen;
  if (from.has_after && c->final_seq && from.after >= c->final_seq) {
    fc_http_respond(req, 204, NULL, NULL, "", 0); /* tells EventSource to stop */
  } else {
    fc_app_t *app = fc_app_of(req);
    char name[64];
    snprintf(name, sizeof name, "job.%s", c->id);
    fc_channel_t *ch = fc_hub_channel(app->hub, name, strlen(name), true);
    if (ch)
      fc_sse_open(app->sse, req, &ch, 1, &from,
                  &(fc_sse_how_t){.expires_ms = fc_api_expiry_ms(req), .is_final = is_final});
    else fc_http_error(req, 503, "storage_error", "storage could not be read; retry later");
    fc_channel_unref(ch); /* the subscription holds it now */
  }
  cmd_free(c);
}

void fc_api_job_sse(fc_req_t *req) {
  fc_jobs_cmd_t *c = cmd_new(req, run_job);
  c->done = sse_done;
  bool ok = parse_wf(req, req->params[0], &c->wf) == 0;
  if (ok && !job_id_valid(req->params[1])) {
    fc_http_error(req, 400, "bad_job_id", "the job id must be a UUID");
    ok = false;
  }
  if (!ok) {
    cmd_free(c);
    return;
  }
  snprintf(c->id, sizeof c->id, "%s", req->params[1]);
  post(req, c);
}
