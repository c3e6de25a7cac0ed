/* The exec task: a child process (never a shell) in its own process group,
 * its output split into lines: `::sse {json}` lines are published, the others
 * become log events. A timeout or a stop kills the whole group. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/internal.h"
#include "pub/pub.h"

extern char **environ;

#define MAX_LINE (64 * 1024)
#define PIPE_GRACE_MS 300

/* An event for the workflow's stream, which every job of the workflow shares,
 * says which job and task sent it: object data gains "jobId" and "task" (unless
 * it has them), other data is wrapped as {"jobId","task","data"}. */
static void tag_job(job_t *job, json_t *line) {
  json_t *data = json_object_get(line, "data");
  if (!data) return; /* malformed: logged as a plain line */
  json_t *tag = json_pack("{s:s, s:I}", "jobId", job->id, "task", (json_int_t)job->task);
  if (!tag) return;
  if (json_is_object(data)) {
    json_object_update_missing(data, tag);
    json_decref(tag);
    return;
  }
  json_object_set(tag, "data", data);
  json_object_set_new(line, "data", tag);
}

/* Publishes one `::sse {"event","data","channel"?,"to"?}` line; false when it
 * is malformed (the caller logs it as a plain line). */
static bool sse_line(job_t *job, const char *p, size_t n) {
  json_t *j = json_loadb(p, n, 0, NULL);
  const char *ch = json_string_value(json_object_get(j, "channel"));
  const char *to = json_string_value(json_object_get(j, "to"));
  if (json_is_object(j) && !ch && !to) tag_job(job, j);
  fc_pub_event_t ev = {0};
  bool ok =
      json_is_object(j) && fc_pub_json_event(j, &ev) == FC_PUB_OK && (!ch || fc_channel_name_valid(ch, strlen(ch)));
  if (ok && to) {
    char from[64];
    snprintf(from, sizeof from, "job:%s", job->id);
    const fc_jobs_opts_t *o = &job->owner->o;
    if (o->send_direct(o->ud, to, from, json_object_get(j, "data")) < 0)
      fc_log(FC_LOG_WARN, "exec ::sse to an unknown connection", "job=%s to=%s", job->id, to);
  } else if (ok) {
    char def[48];
    snprintf(def, sizeof def, "workflow.%lld", (long long)job->wf_id);
    fc__job_publish(job, ch ? ch : def, ev.name.len ? ev.name.base : NULL, ev.data.base, ev.is_json);
  }
  fc_pub_event_dispose(&ev);
  json_decref(j);
  return ok;
}

static void on_line(job_t *job, int which, const char *p, size_t n) {
  if (n && p[n - 1] == '\r') n--;
  if (which == 0 && n >= 6 && !memcmp(p, "::sse ", 6)) {
    if (sse_line(job, p + 6, n - 6)) return;
    fc_log(FC_LOG_WARN, "malformed ::sse line", "job=%s line=\"%.*s\"", job->id, (int)(n > 200 ? 200 : n), p);
  }
  fc__job_log(job, which ? "stderr" : "stdout", p, n);
}

static void flush_partial(job_t *job, int which) {
  fc_buf_t *b = &job->line[which];
  if (b->len) on_line(job, which, b->data, b->len);
  b->len = 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  static char mem[64 * 1024]; /* loop 0 only; data is consumed in on_read */
  *buf = uv_buf_init(mem, sizeof mem);
}

static void on_handle_closed(uv_handle_t *h) {
  job_t *job = h->data;
  if (--job->pending > 0) return;
  uv_timer_stop(&job->grace);
  uv_timer_stop(&job->timer);
  job->pid = -1;
  char why[128] = "";
  bool ok = job->exit_status == 0 && job->term_signal == 0 && !job->timed_out;
  if (job->timed_out) snprintf(why, sizeof why, "timed out: the process group was killed");
  else if (job->term_signal) snprintf(why, sizeof why, "killed by signal %d", job->term_signal);
  else if (!ok) snprintf(why, sizeof why, "exited with status %lld", (long long)job->exit_status);
  fc__job_task_ended(job, ok, why);
}

static void close_pipe(job_t *job, uv_pipe_t *p) {
  if (uv_is_closing((uv_handle_t *)p)) return;
  flush_partial(job, p == &job->err);
  uv_close((uv_handle_t *)p, on_handle_closed);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  job_t *job = s->data;
  uv_pipe_t *p = (uv_pipe_t *)s;
  int which = p == &job->err;
  if (n < 0) {
    close_pipe(job, p);
    return;
  }
  fc_buf_t *b = &job->line[which];
  const char *c = buf->base, *end = c + n;
  while (c < end) {
    const char *nl = memchr(c, '\n', (size_t)(end - c));
    size_t take = (size_t)((nl ? nl : end) - c);
    if (b->len + take > MAX_LINE) take = MAX_LINE - b->len;
    fc_buf_append(b, c, take);
    c += take;
    if ((nl && c == nl) || b->len >= MAX_LINE) {
      on_line(job, which, b->data, b->len);
      b->len = 0;
      if (nl && c == nl) c++;
    }
  }
}

/* Grandchildren may keep the pipes open after the child exits: they get a
 * short grace to drain, then the pipes close. */
static void on_grace(uv_timer_t *t) {
  job_t *job = t->data;
  close_pipe(job, &job->out);
  close_pipe(job, &job->err);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  job_t *job = p->data;
  job->exit_status = status;
  job->term_signal = sig;
  uv_close((uv_handle_t *)p, on_handle_closed);
  if (!job->owner->stopping) uv_timer_start(&job->grace, on_grace, PIPE_GRACE_MS, 0);
}

/* The job's FLOWCAST_TOKEN: it may publish to and subscribe to the job's and
 * its workflow's channels. Sets *tok to a malloc'd token, or NULL when
 * authentication is off. Returns 0, or -EIO when it cannot be signed. */
static int mint_token(job_t *job, int64_t ttl_s, char **tok) {
  const fc_jobs_opts_t *o = &job->owner->o;
  *tok = NULL;
  if (!o->mint) return 0;
  char ch[2][64], *pubs[2] = {ch[0], ch[1]}, sub[64];
  snprintf(ch[0], sizeof ch[0], "job.%s", job->id);
  snprintf(ch[1], sizeof ch[1], "workflow.%lld", (long long)job->wf_id);
  snprintf(sub, sizeof sub, "job:%s", job->id);
  *tok = o->mint(o->ud, sub, pubs, 2, ttl_s);
  return *tok ? 0 : -EIO;
}

/* The child's environment: FLOWCAST_* (`tok` may be NULL), the task's env,
 * then the server's own variables not overridden. Free with free_env. */
static char **build_env(job_t *job, json_t *task, const char *tok) {
  size_t n = 0, cap = 16;
  for (char **e = environ; *e; e++) cap++;
  json_t *env = json_object_get(task, "env"), *v;
  cap += json_object_size(env);
  char **out = fc_xcalloc(cap, sizeof *out), *s;
  if (asprintf(&s, "FLOWCAST_URL=http://127.0.0.1:%d", job->owner->o.port) > 0) out[n++] = s;
  if (asprintf(&s, "FLOWCAST_TOKEN=%s", tok ? tok : "") > 0) out[n++] = s;
  if (asprintf(&s, "FLOWCAST_JOB_ID=%s", job->id) > 0) out[n++] = s;
  if (asprintf(&s, "FLOWCAST_WORKFLOW_ID=%lld", (long long)job->wf_id) > 0) out[n++] = s;
  if (asprintf(&s, "FLOWCAST_INPUT=%s", job->input ? job->input : "") > 0) out[n++] = s;
  const char *key;
  json_object_foreach(env, key, v) if (asprintf(&s, "%s=%s", key, json_string_value(v)) > 0) out[n++] = s;
  size_t fixed = n;
  for (char **e = environ; *e; e++) {
    size_t klen = strcspn(*e, "=");
    bool dup = false;
    for (size_t i = 0; i < fixed && !dup; i++) dup = !strncmp(out[i], *e, klen) && out[i][klen] == '=';
    if (!dup) out[n++] = strdup(*e);
  }
  return out;
}

static void free_env(char **env) {
  for (char **e = env; *e; e++) free(*e);
  free(env);
}

/* Spawns the task's command. Returns 0, or -errno with `why`. Loop 0. */
int fc__exec_start(job_t *job, json_t *task, char *why, size_t whylen) {
  uv_loop_t *loop = fc_loop_uv(job->owner->loop);
  json_t *cmd = json_object_get(task, "command"), *to = json_object_get(task, "timeoutSeconds");
  size_t argc = json_array_size(cmd);
  char *argv[argc + 1];
  for (size_t i = 0; i < argc; i++) argv[i] = (char *)json_string_value(json_array_get(cmd, i));
  argv[argc] = NULL;
  double timeout_s = to ? json_number_value(to) : 0;
  char *tok;
  if (mint_token(job, timeout_s > 0 ? (int64_t)timeout_s + 60 : 3600, &tok) < 0) {
    snprintf(why, whylen, "cannot make the task's FLOWCAST_TOKEN (JWT signing failed)");
    fc_log(FC_LOG_ERROR, "exec task not started", "workflow=%lld job=%s task=%zu reason=\"%s\"", (long long)job->wf_id,
           job->id, job->task, why);
    return -EIO;
  }
  char **env = build_env(job, task, tok);
  free(tok);
  /* Relative paths (the command's, the task's cwd) are the workflow
   * directory's, whatever the server's working directory is. */
  const char *dir = job->owner->o.workflows_dir, *cwd = json_string_value(json_object_get(task, "cwd"));
  char *cwd_path = NULL;
  if (!cwd) cwd = dir;
  else if (cwd[0] != '/' && asprintf(&cwd_path, "%s/%s", dir, cwd) > 0) cwd = cwd_path;
  uv_pipe_init(loop, &job->out, 0);
  uv_pipe_init(loop, &job->err, 0);
  job->out.data = job->err.data = job->proc.data = job;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&job->out},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&job->err}};
  uv_process_options_t o = {.exit_cb = on_exit_cb,
                            .file = argv[0],
                            .args = argv,
                            .env = env,
                            .cwd = cwd,
                            .flags = UV_PROCESS_DETACHED,
                            .stdio_count = 3,
                            .stdio = stdio};
  job->exit_status = 0;
  job->term_signal = 0;
  job->timed_out = false;
  job->pending = 3;
  int rc = uv_spawn(loop, &job->proc, &o);
  free_env(env);
  free(cwd_path);
  if (rc < 0) {
    /* The handles close first (a next task reuses them); then the task fails. */
    snprintf(why, whylen, "cannot run %s: %s", argv[0], uv_strerror(rc));
    fc__job_log(job, "stderr", why, strlen(why));
    job->exit_status = 127;
    uv_close((uv_handle_t *)&job->out, on_handle_closed);
    uv_close((uv_handle_t *)&job->err, on_handle_closed);
    uv_close((uv_handle_t *)&job->proc, on_handle_closed);
    return 0;
  }
  job->pid = job->proc.pid;
  uv_read_start((uv_stream_t *)&job->out, on_alloc, on_read);
  uv_read_start((uv_stream_t *)&job->err, on_alloc, on_read);
  if (timeout_s > 0) fc__job_timer(job, (uint64_t)(timeout_s * 1000));
  return 0;
}
