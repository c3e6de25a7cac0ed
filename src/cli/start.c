/* `flowcast start`: starts a workflow's job and follows it to its end,
 * printing status changes, log lines and the workflow's progress events. */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/internal.h"

/* The job stream and the progress watcher print from two threads. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&out_lock);
  vprintf(fmt, ap);
  fflush(stdout);
  pthread_mutex_unlock(&out_lock);
  va_end(ap);
}

/* Prints a progress-like event: `progress: 50%` when its data has a number
 * "pct", else `NAME: DATA`. */
static void print_named(const fc_sse_event_t *ev) {
  json_t *j = json_loadb(ev->data, ev->data_len, JSON_DECODE_ANY, NULL);
  json_t *pct = json_object_get(j, "pct");
  if (json_is_number(pct)) say("%s: %g%%\n", ev->event, json_number_value(pct));
  else say("%s: %s\n", ev->event, ev->data);
  json_decref(j);
}

/* ---- the job's own stream ---------------------------------------------------- */

typedef struct {
  fc__follow_t follow;
  int result;        /* -1 until the final event; then FC_EXIT_OK or FC_EXIT_JOB */
  uint64_t first_id; /* the job stream's first event (its Pending status) */
  uint64_t final_id; /* the final event's */
  char final[32];    /* the final status, printed once progress is all shown */
} job_t;

/* An event id as a number (ids are one counter across the server's channels);
 * 0 when it is not one. */
static uint64_t id_num(const char *id) {
  uint64_t n;
  return id && fc_parse_u64(id, strlen(id), &n) == 0 ? n : 0;
}

/* Prints a job stream's events; the unnamed one is the final status. */
static bool on_job_event(void *ud, const fc_sse_event_t *ev) {
  job_t *r = ud;
  bool final = !strcmp(ev->event, "message");
  json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
  const char *st = json_string_value(json_object_get(j, "status"));
  if (!strcmp(ev->event, "log")) {
    const char *line = json_string_value(json_object_get(j, "line"));
    say("  %s\n", line ? line : ev->data);
  } else if (!strcmp(ev->event, "status") || final) {
    if (!final) say("status: %s\n", st ? st : ev->data);
    else snprintf(r->final, sizeof r->final, "%s", st ? st : ev->data);
    if (final) r->result = st && !strcmp(st, "Done") ? FC_EXIT_OK : FC_EXIT_JOB;
  } else if (strncmp(ev->event, "flowcast.", 9)) {
    print_named(ev); /* progress, should a server put it on the job's stream */
  }
  json_decref(j);
  if (!r->first_id) r->first_id = id_num(ev->id);
  if (final) {
    r->final_id = id_num(ev->id);
    r->follow.done = true;
  }
  return final;
}

/* Asks the server for the job's final status (after a 204 on the stream). */
static int job_status(const fc__client_t *o, const char *wf, const char *job, job_t *r) {
  char path[256], err[256];
  snprintf(path, sizeof path, "/api/v1/job?w=%s&i=%s", wf, job);
  fc_buf_t out;
  fc_buf_init(&out);
  int status =
      fc_http_call(&o->url, &(fc_http_call_t){.method = "GET", .path = path, .token = o->token}, &out, err, sizeof err);
  json_t *j = status == 200 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
  const char *st = json_string_value(json_object_get(j, "status"));
  int rc = st && !strcmp(st, "Done") ? FC_EXIT_OK : FC_EXIT_JOB;
  if (st) snprintf(r->final, sizeof r->final, "%s", st);
  else rc = fc_cli_report("start", status, &out, err, o->url_text);
  json_decref(j);
  fc_buf_dispose(&out);
  return rc == FC_EXIT_OK && !st ? FC_EXIT_ERROR : rc;
}

/* ---- the workflow's stream, for progress events ------------------------------ */

typedef struct {
  fc__follow_t follow;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int connected; /* 0 until the first answer: its status, or -1 when the follow ended */
  int stop[2];   /* a pipe: writing to it ends the follow */
  char path[128], err[256];
  int status; /* how the follow ended */
  fc_buf_t body;
  char job[64]; /* under lock: the started job's id, once known */
  bool no_job;  /* under lock: no job was started */
} watch_t;

/* False for an event another job of the workflow sent (its data's "jobId",
 * which the server adds to what `::sse` lines send to the workflow's stream). */
static bool of_job(const fc_sse_event_t *ev, const char *job) {
  json_t *j = json_loadb(ev->data, ev->data_len, JSON_DECODE_ANY, NULL);
  const char *id = json_string_value(json_object_get(j, "jobId"));
  bool ours = !id || !strcmp(id, job);
  json_decref(j);
  return ours;
}

/* Prints the workflow stream's own events for this job: what its `::sse`
 * lines sent (progress). Waits until the job's id is known (the stream is
 * opened before the start, so as to miss nothing). */
static bool on_watch_event(void *ud, const fc_sse_event_t *ev) {
  watch_t *w = ud;
  if (!strcmp(ev->event, "message") || !strcmp(ev->event, "status") || !strcmp(ev->event, "log") ||
      !strncmp(ev->event, "flowcast.", 9))
    return false;
  pthread_mutex_lock(&w->lock);
  while (!*w->job && !w->no_job) pthread_cond_wait(&w->cond, &w->lock);
  bool ours = *w->job && of_job(ev, w->job);
  pthread_mutex_unlock(&w->lock);
  if (ours) print_named(ev);
  return false;
}

/* The started job's id (NULL: none was started), for the watcher. */
static void watch_job(watch_t *w, const char *job) {
  pthread_mutex_lock(&w->lock);
  if (job) snprintf(w->job, sizeof w->job, "%s", job);
  else w->no_job = true;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

/* Prints what the workflow's stream holds between the watcher's last event (or
 * the job's first) and the job's final one. The two streams are separate
 * connections, so the final status can arrive before the watcher has read the
 * job's last progress events; the history answers for them. Best effort. */
static void watch_catch_up(watch_t *w, const fc__client_t *o, const char *wf, const job_t *r) {
  uint64_t after = id_num(w->follow.parser.last_id);
  if (w->connected != 200 || !r->final_id) return;
  if (after < r->first_id) after = r->first_id;
  if (after + 1 >= r->final_id) return;
  char path[160], err[256];
  snprintf(path, sizeof path, "/api/v1/channels/workflow.%s/events?after=%llu&limit=1000", wf,
           (unsigned long long)after);
  fc_buf_t out;
  fc_buf_init(&out);
  int status =
      fc_http_call(&o->url, &(fc_http_call_t){.method = "GET", .path = path, .token = o->token}, &out, err, sizeof err);
  json_t *arr = status == 200 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    const char *id = json_string_value(json_object_get(e, "id")),
               *name = json_string_value(json_object_get(e, "event"));
    if (id_num(id) >= r->final_id) break;
    json_t *d = json_object_get(e, "data");
    char *text = json_is_string(d) ? strdup(json_string_value(d)) : json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text)
      on_watch_event(
          w, &(fc_sse_event_t){.id = id, .event = name ? name : "message", .data = text, .data_len = strlen(text)});
    free(text);
  }
  json_decref(arr);
  fc_buf_dispose(&out);
}

static void set_connected(watch_t *w, int status) {
  pthread_mutex_lock(&w->lock);
  if (!w->connected) w->connected = status;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

static void on_watch_connect(void *ud, int status) { set_connected(ud, status); }

static void *watch_run(void *arg) {
  watch_t *w = arg;
  w->status = fc__follow(&w->follow, &w->body, w->err, sizeof w->err);
  set_connected(w, -1);
  return NULL;
}

/* Starts following workflow.WF (new events only) and waits until it answers, at
 * most 2 s. Best effort: it ends quietly at its first failure in a row. */
static int watch_start(watch_t *w, const fc__client_t *o, const char *wf) {
  memset(w, 0, sizeof *w);
  if (pipe(w->stop) < 0) return -1;
  snprintf(w->path, sizeof w->path, "/api/v1/channels/workflow.%s/sse?replay=0", wf);
  w->follow = (fc__follow_t){.cmd = "start",
                             .client = o,
                             .path = w->path,
                             .default_retry_ms = 1000,
                             .max_backoff_ms = 10000,
                             .max_failures = 1,
                             .quiet = true,
                             .cancel_fd = w->stop[0],
                             .on_connect = on_watch_connect,
                             .ud = w};
  fc_sse_parser_init(&w->follow.parser, on_watch_event, w, NULL, 0);
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
  if (pthread_create(&w->thread, NULL, watch_run, w) != 0) {
    close(w->stop[0]), close(w->stop[1]);
    fc_sse_parser_dispose(&w->follow.parser);
    return -1;
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  pthread_mutex_lock(&w->lock);
  while (!w->connected && pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0) {}
  pthread_mutex_unlock(&w->lock);
  return 0;
}

/* Stops the watcher, prints the job's progress it had not read yet, and says
 * why progress was missing, if it was refused. */
static void watch_stop(watch_t *w, const fc__client_t *o, const char *wf, const job_t *r) {
  w->follow.done = true;
  watch_job(w, NULL); /* a watcher still waiting for the job's id gives up */
  if (write(w->stop[1], "x", 1) < 0) perror("flowcast start: write");
  pthread_join(w->thread, NULL);
  watch_catch_up(w, o, wf, r);
  if (w->status >= 400)
    fprintf(stderr, "flowcast start: progress events not shown: the workflow's stream answered %d\n", w->status);
  close(w->stop[0]), close(w->stop[1]);
  fc_buf_dispose(&w->body);
  fc_sse_parser_dispose(&w->follow.parser);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->cond);
}

/* ---- the command ---------------------------------------------------------------- */

static void usage(void) {
  printf("Usage: flowcast start WORKFLOW_ID [--url URL] [--token T]\n\n"
         "Starts a job of the workflow and follows it to its end, printing as they come its\n"
         "status changes (status: Running), log lines (indented), the progress events its tasks\n"
         "send to the workflow's stream (progress: 50%%; this job's only, told apart by the\n"
         "jobId the server adds; shown when the token may subscribe to workflow.ID), and the\n"
         "final status.\n"
         "A dropped stream is resumed after the last event. Exit status: 0 when the job ends\n"
         "Done, 6 for any other final status (Failed, Warning, Stopped, Rejected).\n\n");
  fc_cli_exit_help(stdout);
}

/* Starts a job of `wf`; fills `job`. Returns 0 or an exit status. */
static int start_job(const fc__client_t *o, const char *wf, char *job, size_t joblen) {
  char path[256], err[256];
  snprintf(path, sizeof path, "/api/v1/start?w=%s", wf);
  fc_buf_t out;
  fc_buf_init(&out);
  int status = fc_http_call(&o->url, &(fc_http_call_t){.method = "POST", .path = path, .token = o->token}, &out, err,
                            sizeof err);
  json_t *j = status >= 200 && status < 300 ? json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL) : NULL;
  const char *id = json_string_value(j);
  int rc = 0;
  if (id && strlen(id) < joblen && strspn(id, "0123456789abcdefABCDEF-") == strlen(id)) {
    snprintf(job, joblen, "%s", id);
  } else {
    rc = fc_cli_report("start", status, &out, err, o->url_text);
    if (rc == FC_EXIT_OK) rc = FC_EXIT_ERROR;
  }
  json_decref(j);
  fc_buf_dispose(&out);
  return rc;
}

/* Follows the job's stream to its final status, filling `r`. Returns the exit
 * status. */
static int follow_job(const fc__client_t *o, const char *wf, const char *job, job_t *r) {
  char path[256], err[256] = "";
  snprintf(path, sizeof path, "/api/v1/sse/%s/%s", wf, job);
  *r = (job_t){.result = -1};
  r->follow = (fc__follow_t){
      .cmd = "start", .client = o, .path = path, .default_retry_ms = 1000, .max_backoff_ms = 10000, .max_failures = 30};
  fc_sse_parser_init(&r->follow.parser, on_job_event, r, NULL, 0);
  fc_buf_t body;
  fc_buf_init(&body);
  int status = fc__follow(&r->follow, &body, err, sizeof err);
  int rc = r->result;
  if (rc < 0 && status == 204) rc = job_status(o, wf, job, r); /* it ended while we were away */
  else if (rc < 0) rc = fc_cli_report("start", status, &body, err, o->url_text);
  if (rc < 0 || (rc == FC_EXIT_OK && r->result < 0 && status != 204)) rc = FC_EXIT_ERROR;
  fc_buf_dispose(&body);
  fc_sse_parser_dispose(&r->follow.parser);
  return rc;
}

int fc_cli_start(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *wf = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(), FC_EXIT_OK;
    if (!strcmp(a, "--url") && v) url = v, i++;
    else if (!strcmp(a, "--token") && v) token = v, i++;
    else if (a[0] == '-' || wf)
      return fprintf(stderr, "flowcast start: unexpected argument '%s' (see --help)\n", a), FC_EXIT_USAGE;
    else wf = a;
  }
  uint64_t n;
  if (!wf) return fprintf(stderr, "flowcast start: name a workflow id (see --help)\n"), FC_EXIT_USAGE;
  if (strlen(wf) > 18 || fc_parse_u64(wf, strlen(wf), &n) < 0) {
    fprintf(stderr, "flowcast start: '%s' is not a workflow id: the id is the number in the workflow's JSON file\n",
            wf);
    return FC_EXIT_USAGE;
  }
  fc__client_t o;
  int rc = fc__client_init(&o, url, token, "start");
  if (rc) return rc;
  watch_t w;
  bool watching = watch_start(&w, &o, wf) == 0;
  char job[64] = "";
  job_t r = {0};
  rc = start_job(&o, wf, job, sizeof job);
  if (watching) watch_job(&w, rc == 0 ? job : NULL);
  if (rc == 0) {
    say("job %s\n", job);
    rc = follow_job(&o, wf, job, &r);
  }
  if (watching) watch_stop(&w, &o, wf, &r);
  if (*r.final) say("final: %s\n", r.final);
  return rc;
}
