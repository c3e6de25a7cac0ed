/* The job runner: jobs of workflows, run one task after another on loop 0,
 * at most --max-jobs at once (the others wait in a queue), with every status
 * change and log line published to job.{id} and workflow.{id}. */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/internal.h"
#include "pub/pub.h"

const char *const job_status_names[] = {"Pending", "Running", "Suspended", "Waiting", "Done",
                                        "Failed",  "Warning", "Stopped",   "Rejected"};

/* A job's final event was committed (or not): its id is saved with the
 * job's row. */
static void on_final_published(fc_pub_op_t *op, void *ud) {
  job_t *job = ud;
  if (fc_pub_op_status(op) == 0) {
    job->final_seq = fc_pub_op_result(op)->last_seq;
    fc__db_defer_save(job->owner, job);
  }
}

/* The end of the current task, held (fc__job_task_ended) until its events
 * are committed, goes on: not while the job is suspended (resuming does it). */
static void release_task_end(job_t *job) {
  if (!job->end_held || job->task_pubs || job->status == ST_SUSPENDED) return;
  char *why = job->end_why;
  job->end_held = false;
  job->end_why = NULL;
  fc__job_task_ended(job, job->end_ok, why);
  free(why);
}

/* An event of the current task (a publish task, an exec task's ::sse line)
 * was committed, or failed: the task fails with it. */
static void on_task_published(fc_pub_op_t *op, void *ud) {
  job_t *job = ud;
  if (fc_pub_op_status(op) != 0) job->pub_failed = true;
  job->task_pubs--;
  release_task_end(job);
}

/* Publishes one event durably (through storage); `answer` (or NULL) gets
 * `ud` once it is committed. `data` is copied. Events of one job keep their
 * order. Loop 0. */
static void publish(job_t *job, const char *channel, const char *event, const char *data, bool is_json,
                    fc_pub_answer_cb answer, void *ud) {
  fc_pub_op_t *op = fc_pub_op_new(job->owner->o.pub, 0, answer, ud);
  fc_pub_add(op, event ? (fc_str_t){event, strlen(event)} : (fc_str_t){"", 0}, (fc_str_t){data, strlen(data)}, is_json);
  /* A channel that cannot be opened (storage failed) is answered -EIO. */
  fc_pub_open(op, channel, strlen(channel), FC_HUB_CREATE | FC_HUB_NOCAP);
  fc_pub_submit(op);
}

void fc__job_publish(job_t *job, const char *channel, const char *event, const char *data, bool is_json) {
  job->task_pubs++;
  publish(job, channel, event, data, is_json, on_task_published, job);
}

/* Publishes a job event to job.{id} (answered to `answer`, if any) and
 * workflow.{id}. */
static void publish_both(job_t *job, const char *event, const char *data, fc_pub_answer_cb answer, void *ud) {
  char ch[64];
  snprintf(ch, sizeof ch, "job.%s", job->id);
  publish(job, ch, event, data, true, answer, ud);
  snprintf(ch, sizeof ch, "workflow.%lld", (long long)job->wf_id);
  publish(job, ch, event, data, true, NULL, NULL);
}

void fc__job_log(job_t *job, const char *stream, const char *line, size_t n) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_printf(&b, "{\"jobId\":\"%s\",\"task\":%zu,\"stream\":\"%s\",\"line\":", job->id, job->task, stream);
  fc_json_quote(&b, line, n);
  fc_buf_puts(&b, "}");
  fc_buf_append(&b, "", 1);
  publish_both(job, "log", b.data, NULL, NULL);
  fc_buf_dispose(&b);
}

static void publish_status(job_t *job) { fc__job_publish_status_then(job, NULL, NULL); }

static void set_status(job_t *job, job_status_t st) {
  job->status = st;
  fc__db_save_job(job->owner, job);
  publish_status(job);
}

/* Publishes the final status and the one unnamed final event. */
static void publish_final(job_t *job) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_printf(&b, "{\"workflowId\":%lld,\"jobId\":\"%s\",\"status\":\"%s\",\"name\":", (long long)job->wf_id, job->id,
                job_status_names[job->status]);
  fc_json_quote(&b, job->name, strlen(job->name));
  fc_buf_puts(&b, ",\"description\":");
  fc_json_quote(&b, job->description, strlen(job->description));
  fc_buf_puts(&b, "}");
  fc_buf_append(&b, "", 1);
  publish_both(job, NULL, b.data, on_final_published, job);
  fc_buf_dispose(&b);
}

static void pump(fc_jobs_t *j);

/* Ends a job with a final status. Loop 0. */
void fc__job_finish(job_t *job, job_status_t st, const char *reason) {
  fc_jobs_t *j = job->owner;
  if (ST_FINAL(job->status)) return;
  bool was_running = job->status != ST_PENDING;
  if (job->timer_init) uv_timer_stop(&job->timer);
  job->ended_ms = fc_now_ms();
  if (reason && !job->reason) job->reason = strdup(reason);
  set_status(job, st);
  publish_final(job);
  fc_log(st == ST_DONE ? FC_LOG_INFO : FC_LOG_WARN, "job ended", "workflow=%lld job=%s status=%s reason=\"%s\"",
         (long long)job->wf_id, job->id, job_status_names[st], job->reason ? job->reason : "");
  if (was_running) j->running--;
  if (was_running && job->wf) job->wf->running--;
  fc__wf_unref(job->wf);
  job->wf = NULL;
  pump(j);
}

static json_t *current_task(job_t *job) { return job->wf ? json_array_get(job->wf->tasks, job->task) : NULL; }
static const char *task_type(json_t *t) { return t ? json_string_value(json_object_get(t, "type")) : ""; }

static void on_wait_done(uv_timer_t *t) {
  job_t *job = t->data;
  if (job->pending) { /* an exec task's timeout */
    job->timed_out = true;
    if (job->pid > 0) kill(-job->pid, SIGKILL);
    return;
  }
  fc__job_task_ended(job, true, NULL);
}

void fc__job_timer(job_t *job, uint64_t ms) { uv_timer_start(&job->timer, on_wait_done, ms, 0); }

/* Starts the job's current task, or ends the job after its last one. */
static void next_task(job_t *job) {
  json_t *t = current_task(job);
  if (!t) {
    fc__job_finish(job, job->warning ? ST_WARNING : ST_DONE, NULL);
    return;
  }
  const char *type = task_type(t);
  char why[256];
  if (!strcmp(type, "wait")) {
    uv_timer_start(&job->timer, on_wait_done, (uint64_t)(json_number_value(json_object_get(t, "seconds")) * 1000), 0);
  } else if (!strcmp(type, "exec")) {
    if (fc__exec_start(job, t, why, sizeof why) < 0) fc__job_task_ended(job, false, why);
  } else if (!strcmp(type, "publish")) {
    json_t *data = json_object_get(t, "data");
    char *s = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    fc__job_publish(job, json_string_value(json_object_get(t, "channel")),
                    json_string_value(json_object_get(t, "event")), json_is_string(data) ? json_string_value(data) : s,
                    !json_is_string(data));
    free(s);
    fc__job_task_ended(job, true, NULL); /* held until the event is committed */
  } else {                               /* approval */
    set_status(job, ST_WAITING);
  }
}

/* The current task ended (`ok` or not, with `why`): go on, or end the job.
 * Not before the task's events are committed: the next task, the job's status
 * and its final event come after them, as a client reading the job expects. */
void fc__job_task_ended(job_t *job, bool ok, const char *why) {
  fc_jobs_t *j = job->owner;
  if (j->stopping || ST_FINAL(job->status)) return;
  if (job->task_pubs) {
    job->end_held = true;
    job->end_ok = ok;
    free(job->end_why);
    job->end_why = why ? strdup(why) : NULL;
    return;
  }
  if (job->pub_failed) {
    job->pub_failed = false;
    if (ok) why = "an event of the task could not be stored";
    ok = false;
  }
  json_t *t = current_task(job);
  int64_t now = fc_now_ms();
  fc__db_save_task(j, job, task_type(t), ok ? "Done" : "Failed", job->exit_status, job->started_ms, now);
  if (job->stop_requested) {
    fc__job_finish(job, ST_STOPPED, "stopped");
    return;
  }
  if (!ok) {
    if (!json_is_true(json_object_get(t, "continueOnError"))) {
      fc__job_finish(job, ST_FAILED, why);
      return;
    }
    job->warning = true;
  }
  job->task++;
  next_task(job);
}

void fc__job_run(job_t *job) {
  job->owner->running++;
  if (job->wf) job->wf->running++;
  job->started_ms = fc_now_ms();
  set_status(job, ST_RUNNING);
  next_task(job);
}

/* Starts queued jobs while there is room. */
/* Runs queued jobs while the global limit allows, in order, passing over the
 * jobs of a workflow that is at its own limit (they wait; others go on). */
static void pump(fc_jobs_t *j) {
  if (j->q) {
    fc__cl_pump(j);
    return;
  }
  job_t **pp = &j->qhead, *prev = NULL;
  while (!j->stopping && *pp && j->running < j->max_running) {
    job_t *job = *pp;
    wf_t *w = job->wf;
    if (w && w->max_running && w->running >= w->max_running) {
      prev = job;
      pp = &job->qnext;
      continue;
    }
    *pp = job->qnext;
    if (j->qtail == job) j->qtail = prev;
    job->qnext = NULL;
    j->queued--;
    fc__job_run(job); /* may end at once and pump again: start over from the head */
    pp = &j->qhead;
    prev = NULL;
  }
}

void fc__job_uuid(char out[40]) {
  unsigned char b[16];
  randombytes_buf(b, sizeof b);
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
           b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

job_t *fc__job_new(fc_jobs_t *j, const char *id, int64_t wf_id) {
  job_t *job = fc_xcalloc(1, sizeof *job);
  snprintf(job->id, sizeof job->id, "%s", id);
  job->wf_id = wf_id;
  job->owner = j;
  job->pid = -1;
  fc_buf_init(&job->line[0]);
  fc_buf_init(&job->line[1]);
  return job;
}

void fc__job_adopt(fc_jobs_t *j, job_t *job) {
  job->next = j->jobs; /* newest first */
  j->jobs = job;
  uv_timer_init(fc_loop_uv(j->loop), &job->timer);
  uv_timer_init(fc_loop_uv(j->loop), &job->grace);
  job->timer.data = job->grace.data = job;
  job->timer_init = true;
}

int fc_jobs_start(fc_jobs_t *j, int64_t wf_id, const char *input, const char *starter, char id[40]) {
  wf_t *w = fc__wf_find(j, wf_id);
  if (!w) return -ENOENT;
  if (j->q) return fc__cl_start(j, w, input, starter, id);
  bool waits = j->qhead || j->running >= j->max_running || (w->max_running && w->running >= w->max_running);
  if (waits && j->queued >= j->max_queued) return -EAGAIN;
  fc__job_uuid(id);
  job_t *job = fc__job_new(j, id, wf_id);
  fc__job_adopt(j, job);
  job->wf = w;
  w->refs++;
  job->name = strdup(w->name);
  job->description = strdup(w->description);
  job->input = input ? strdup(input) : NULL;
  job->starter = starter ? strdup(starter) : NULL;
  job->created_ms = fc_now_ms();
  set_status(job, ST_PENDING);
  if (j->qtail) j->qtail->qnext = job;
  else j->qhead = job;
  j->qtail = job;
  j->queued++;
  pump(j);
  return 0;
}

job_t *fc__job_find(fc_jobs_t *j, const char *id) {
  for (job_t *job = j->jobs; job; job = job->next)
    if (!strcmp(job->id, id)) return job;
  return NULL;
}

static void unqueue(fc_jobs_t *j, job_t *job) {
  job_t **pp = &j->qhead, *prev = NULL;
  while (*pp && *pp != job) prev = *pp, pp = &(*pp)->qnext;
  if (!*pp) return;
  *pp = job->qnext;
  if (j->qtail == job) j->qtail = prev;
  job->qnext = NULL;
  j->queued--;
}

/* Pauses (`on`) or resumes the running task: signals for exec, the timer for
 * wait and for an exec timeout. */
static void pause_task(job_t *job, bool on) {
  if (on) {
    job->remaining_ms = uv_is_active((uv_handle_t *)&job->timer) ? uv_timer_get_due_in(&job->timer) : 0;
    uv_timer_stop(&job->timer);
    if (job->pending && job->pid > 0) kill(-job->pid, SIGSTOP);
    set_status(job, ST_SUSPENDED);
    return;
  }
  if (job->pending && job->pid > 0) kill(-job->pid, SIGCONT);
  if (job->remaining_ms || !strcmp(task_type(current_task(job)), "wait"))
    uv_timer_start(&job->timer, on_wait_done, job->remaining_ms, 0);
  set_status(job, ST_RUNNING);
  release_task_end(job);
}

static int stop_job(fc_jobs_t *j, job_t *job) {
  if (job->status == ST_PENDING) {
    unqueue(j, job);
    fc__job_finish(job, ST_STOPPED, "stopped");
  } else if (job->pending && job->pid > 0) {
    job->stop_requested = true;
    kill(-job->pid, SIGKILL);
    kill(-job->pid, SIGCONT);
  } else {
    fc__job_finish(job, ST_STOPPED, "stopped");
  }
  return 0;
}

int fc_jobs_control(fc_jobs_t *j, int64_t wf_id, const char *id, fc_job_action_t a, const fc_jobs_actor_t *who) {
  job_t *job = fc__job_find(j, id);
  if (!job && j->q && !j->remote) return fc__cl_control(j, wf_id, id, a, who);
  if (!job && j->remote) return -EBUSY; /* its record names this node, which no longer holds it */
  if (!job || job->wf_id != wf_id) return -ENOENT;
  if (!who->all && (!job->starter || !who->sub || strcmp(job->starter, who->sub))) return -EPERM;
  job_status_t st = job->status;
  if (ST_FINAL(st) || job->stop_requested) return -EBUSY;
  switch (a) {
    case FC_JOB_STOP: return stop_job(j, job);
    case FC_JOB_SUSPEND:
      if (st != ST_RUNNING) return -EBUSY;
      pause_task(job, true);
      return 0;
    case FC_JOB_RESUME:
      if (st != ST_SUSPENDED) return -EBUSY;
      pause_task(job, false);
      return 0;
    case FC_JOB_APPROVE:
      if (st != ST_WAITING) return -EBUSY;
      set_status(job, ST_RUNNING);
      fc__job_task_ended(job, true, NULL);
      return 0;
    case FC_JOB_REJECT:
      if (st != ST_WAITING) return -EBUSY;
      fc__job_finish(job, ST_REJECTED, "rejected");
      return 0;
  }
  return -EBUSY;
}

void fc__job_publish_status_then(job_t *job, fc_pub_answer_cb stored, void *ud) {
  char data[160];
  snprintf(data, sizeof data, "{\"jobId\":\"%s\",\"status\":\"%s\"}", job->id, job_status_names[job->status]);
  publish_both(job, "status", data, stored, ud);
}

void fc__job_publish_stale(job_t *job) {
  publish_status(job);
  publish_final(job);
}
