/* The runner's life: start-up, commands from other loops, reload, JSON views,
 * shutdown. */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/internal.h"

/* How long one idle pass publishes recovered jobs' final events (ms), so that
 * requests on loop 0 are answered in between. */
#define RECOVER_PASS_MS 5

bool fc_jobs_may_run(const fc_jobs_actor_t *a, int64_t wf) {
  if (a->all) return true;
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)wf);
  return fc_patterns_match(a->run, a->nrun, id);
}

void fc__jobs_finish(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  c->msg.receiver = (unsigned)j->rx_done;
  fc_net_post(j->o.net, c->loop, &c->msg); /* from here c is its loop's to free */
}

fc_jobs_cmd_t *fc__jobs_defer(fc_jobs_t *j) {
  if (j->cur) j->cur_deferred = true;
  return j->cur;
}

/* Runs a command on loop 0 and posts it back to its caller's loop, unless
 * its run held it (fc__jobs_defer): it is then answered later. */
static void run_cmd(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  j->cur = c;
  j->cur_deferred = false;
  if (j->loaded && !j->stopping) c->run(j, c);
  else c->rc = -ESHUTDOWN; /* stopping (perhaps before the jobs were loaded) */
  j->cur = NULL;
  if (!j->cur_deferred) fc__jobs_finish(j, c);
}

/* A command reached loop 0. Until the start-up load ends, commands wait in
 * arrival order (on_loaded runs them). */
static void on_cmd(fc_loop_t *l, fc_msg_t *m, void *ud) {
  (void)l;
  fc_jobs_t *j = ud;
  fc_jobs_cmd_t *c = (fc_jobs_cmd_t *)m;
  if (!j->loaded && !j->stopping) {
    c->next = NULL;
    *(j->held_tail ? &j->held_tail->next : &j->held) = c;
    j->held_tail = c;
    return;
  }
  run_cmd(j, c);
}

/* Runs the commands held during the start-up load (or answers them when
 * stopping). Loop 0. */
static void run_held(fc_jobs_t *j) {
  fc_jobs_cmd_t *c = j->held;
  j->held = j->held_tail = NULL;
  while (c) {
    fc_jobs_cmd_t *next = c->next;
    run_cmd(j, c);
    c = next;
  }
}

/* A command's run ended: its answer, on the caller's loop. */
static void on_cmd_done(fc_loop_t *l, fc_msg_t *m, void *ud) {
  (void)l;
  fc_jobs_cmd_t *c = (fc_jobs_cmd_t *)m;
  c->done(ud, c);
}

void fc_jobs_post(fc_jobs_t *j, fc_jobs_cmd_t *c) {
  assert(c->loop < j->o.threads);
  /* Under post_lock, so that a command is either answered here or in loop
   * 0's mailbox before fc_jobs_stop, which runs just before that mailbox:
   * once stopped, loop 0 may end and nothing would run a later command. */
  pthread_mutex_lock(&j->post_lock);
  if (j->closed) {
    c->rc = -ESHUTDOWN;
    c->msg.receiver = (unsigned)j->rx_done;
    fc_net_post(j->o.net, c->loop, &c->msg);
  } else {
    c->msg.receiver = (unsigned)j->rx_cmd;
    fc_net_post(j->o.net, fc_loop_index(j->loop), &c->msg);
  }
  pthread_mutex_unlock(&j->post_lock);
}

size_t fc_jobs_reload(fc_jobs_t *j) { return fc__jobs_reload(j, true); }

size_t fc__jobs_reload(fc_jobs_t *j, bool cluster_wide) {
  for (wf_t *w = j->wfs, *next; w; w = next) {
    next = w->next;
    fc__wf_triggers(j, w, false);
    fc__wf_unref(w);
  }
  size_t n;
  j->wfs = fc__wf_load_dir(j, j->o.workflows_dir, &n);
  for (wf_t *w = j->wfs; w; w = w->next) fc__wf_triggers(j, w, true);
  fc_log(FC_LOG_INFO, "workflows loaded", "dir=%s count=%zu", j->o.workflows_dir, n);
  if (j->q) fc__cl_defs(j, cluster_wide);
  return n;
}

static void on_sighup(uv_signal_t *s, int signum) {
  (void)signum;
  fc_jobs_reload(s->data);
}

static void on_cron(uv_timer_t *t) {
  fc_jobs_t *j = t->data;
  if (j->stopping) return;
  fc__wf_cron_tick(j, fc_now_ms() / 1000);
  unsigned counts[ST_REJECTED + 1] = {0};
  for (job_t *job = j->jobs; job; job = job->next) counts[job->status]++;
  for (size_t i = 0; i <= ST_REJECTED; i++) atomic_store(&j->counts[i], counts[i]);
}

void fc_jobs_metrics(fc_jobs_t *j, fc_buf_t *out) {
  fc_buf_puts(out, "# HELP flowcast_jobs Jobs by status (refreshed every second).\n# TYPE flowcast_jobs gauge\n");
  for (size_t i = 0; i <= ST_REJECTED; i++)
    fc_buf_printf(out, "flowcast_jobs{status=\"%s\"} %u\n", job_status_names[i], j ? atomic_load(&j->counts[i]) : 0);
}

const char *fc_jobs_count(fc_jobs_t *j, size_t i, unsigned *n) {
  _Static_assert(FC_JOBS_NSTATUS == ST_REJECTED + 1, "FC_JOBS_NSTATUS is the number of statuses");
  *n = j ? atomic_load(&j->counts[i]) : 0;
  return job_status_names[i];
}

/* Publishes the final events of recovered jobs, oldest first, for about
 * `ms` milliseconds (at least one job; UINT64_MAX: all of them). */
static void publish_recovered(fc_jobs_t *j, uint64_t ms) {
  uint64_t t0 = fc_mono_ms();
  while (j->recover) {
    job_t *job = j->recover;
    j->recover = job->rnext;
    job->rnext = NULL;
    fc__job_publish_stale(job);
    if (fc_mono_ms() - t0 >= ms) break;
  }
}

/* Loop 0's idle work, a bounded pass per loop iteration: saves deferred rows,
 * publishes the final events of a chunk of recovered jobs. Stops when done. */
static void on_idle(uv_idle_t *h) {
  fc_jobs_t *j = h->data;
  publish_recovered(j, RECOVER_PASS_MS);
  fc__db_flush(j);
  if (!j->recover && !j->saves) uv_idle_stop(h);
}

void fc__jobs_kick(fc_jobs_t *j) {
  if (j->idle_init && !j->stopping) uv_idle_start(&j->idle, on_idle);
}

void fc__jobs_trigger_refused(fc_jobs_t *j, int64_t wf, int rc) {
  int64_t now = fc_now_ms() / 1000;
  j->refused_unlogged++;
  if (now == j->refused_log_s) return;
  fc_log(FC_LOG_WARN, "job not triggered", "workflow=%lld reason=\"%s\" refused=%u max_queued_jobs=%u", (long long)wf,
         rc == -EAGAIN ? "the job queue is full"
         : rc == -EIO  ? "Redis is unavailable"
                       : "no such workflow",
         j->refused_unlogged, j->max_queued);
  j->refused_log_s = now;
  j->refused_unlogged = 0;
}

/* A libuv worker thread: reads the job rows, fails those left unfinished. */
static void load_work(uv_work_t *w) {
  fc_jobs_t *j = w->data;
  uint64_t t0 = fc_mono_ms();
  fc__db_read_rows(j->rows);
  fc_log(FC_LOG_DEBUG, "job rows read", "ms=%llu", (unsigned long long)(fc_mono_ms() - t0));
}

/* Loop 0: the rows become jobs; the commands held meanwhile run; the final
 * events of the failed ones are published a chunk per loop pass. */
static void on_loaded(uv_work_t *w, int status) {
  fc_jobs_t *j = w->data;
  if (status == 0) fc__db_adopt_rows(j, j->rows);
  fc__db_rows_free(j->rows);
  j->rows = NULL;
  j->loaded = true;
  if (j->stopping) { /* fc_jobs_stop answered the held commands; the store is still open */
    publish_recovered(j, UINT64_MAX);
    return;
  }
  fc__jobs_kick(j);
  run_held(j);
}

/* The jobs connection: crash durability unless --durability power. */
static void db_tune(fc_jobs_t *j) { fc_records_set_durability(j->db, j->o.durable_power); }

fc_jobs_t *fc_jobs_new(const fc_jobs_opts_t *o, char *err, size_t errlen) {
  fc_jobs_t *j = fc_xcalloc(1, sizeof *j);
  j->o = *o;
  j->loop = o->loop;
  j->max_running = o->max_jobs ? o->max_jobs : 1;
  j->max_queued = o->max_queued_jobs;
  if (o->cluster_url) j->o.data_dir = NULL; /* jobs live in Redis, not in this node's database */
  if (j->o.data_dir && !(j->db = fc_records_open(o->data_dir, err, errlen))) {
    free(j);
    return NULL;
  }
  if (j->db) db_tune(j);
  /* Last of what can fail: a receiver cannot be taken back. */
  if (fc__db_upgrade(j, err, errlen) < 0 || (j->rx_cmd = fc_net_receiver(o->net, on_cmd, j)) < 0 ||
      (j->rx_done = fc_net_receiver(o->net, on_cmd_done, j)) < 0) {
    if (j->rx_cmd < 0 || j->rx_done < 0) snprintf(err, errlen, "no mailbox receiver left for jobs");
    fc_records_close(j->db);
    free(j);
    return NULL;
  }
  pthread_mutex_init(&j->post_lock, NULL);
  pthread_mutex_init(&j->defs_lock, NULL);
  if (o->cluster_url && fc__cl_open(j, err, errlen) < 0) {
    pthread_mutex_destroy(&j->post_lock);
    pthread_mutex_destroy(&j->defs_lock);
    free(j);
    return NULL; /* its receivers stay taken: the server runs without workflows */
  }
  uv_signal_init(fc_loop_uv(j->loop), &j->sighup);
  j->sighup.data = j;
  uv_signal_start(&j->sighup, on_sighup, SIGHUP);
  uv_unref((uv_handle_t *)&j->sighup);
  uv_timer_init(fc_loop_uv(j->loop), &j->cron);
  j->cron.data = j;
  uv_timer_start(&j->cron, on_cron, 1000, 1000);
  uv_unref((uv_handle_t *)&j->cron);
  uv_idle_init(fc_loop_uv(j->loop), &j->idle);
  j->idle.data = j;
  j->idle_init = true;
  fc__jobs_reload(j, false);
  if (!j->db) {
    j->loaded = true;
    return j;
  }
  /* Jobs made from now on (triggers) are not this load's to read or fail. */
  j->rows = fc__db_rows_new(o->data_dir, fc_now_ms());
  j->load.data = j;
  if (uv_queue_work(fc_loop_uv(j->loop), &j->load, load_work, on_loaded) < 0) {
    load_work(&j->load);
    on_loaded(&j->load, 0);
  }
  return j;
}

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void fc_jobs_stop(fc_jobs_t *j) {
  if (!j) return;
  pthread_mutex_lock(&j->post_lock);
  j->closed = true;
  pthread_mutex_unlock(&j->post_lock);
  j->stopping = true;
  /* Commands held for the load get their answer (-ESHUTDOWN); those still on
   * their way are answered so as they arrive. */
  run_held(j);
  /* Recovered jobs not yet published get their final events now (the store
   * commits what is queued before it closes); deferred rows are saved. A load
   * still running ends in on_loaded, which publishes its own. */
  if (!j->loaded) uv_cancel((uv_req_t *)&j->load);
  publish_recovered(j, UINT64_MAX);
  fc__db_flush(j);
  close_handle((uv_handle_t *)&j->idle);
  close_handle((uv_handle_t *)&j->sighup);
  close_handle((uv_handle_t *)&j->cron);
  fc__cl_stop(j);
  for (wf_t *w = j->wfs; w; w = w->next) fc__wf_triggers(j, w, false);
  for (job_t *job = j->jobs; job; job = job->next) {
    if (!job->timer_init) continue;
    if (job->pending && job->pid > 0) {
      kill(-job->pid, SIGKILL);
      kill(-job->pid, SIGCONT);
    }
    close_handle((uv_handle_t *)&job->timer);
    close_handle((uv_handle_t *)&job->grace);
  }
}

void fc_jobs_free(fc_jobs_t *j) {
  if (!j) return;
  for (job_t *job = j->jobs, *next; job; job = next) {
    next = job->next;
    fc__job_free(job);
  }
  for (wf_t *w = j->wfs, *next; w; w = next) {
    next = w->next;
    fc__wf_unref(w);
  }
  fc_records_close(j->db);
  fc__cl_free(j);
  pthread_mutex_destroy(&j->post_lock);
  pthread_mutex_destroy(&j->defs_lock);
  free(j);
}

void fc__job_free(job_t *job) {
  fc__wf_unref(job->wf);
  free(job->name);
  free(job->description);
  free(job->reason);
  free(job->end_why);
  free(job->starter);
  free(job->input);
  fc_buf_dispose(&job->line[0]);
  fc_buf_dispose(&job->line[1]);
  free(job);
}

void fc_jobs_workflows_json(fc_jobs_t *j, const fc_jobs_actor_t *who, fc_buf_t *out) {
  size_t n = 0;
  fc_buf_puts(out, "[");
  for (wf_t *w = j->wfs; w; w = w->next) {
    if (!fc_jobs_may_run(who, w->id)) continue;
    if (n++) fc_buf_puts(out, ",");
    fc__wf_json(out, w);
  }
  fc_buf_puts(out, "]");
}

int fc_jobs_workflow_json(fc_jobs_t *j, int64_t wf, fc_buf_t *out) {
  wf_t *w = fc__wf_find(j, wf);
  if (!w) return -ENOENT;
  fc__wf_json(out, w);
  return 0;
}

static void time_field(fc_buf_t *b, const char *name, int64_t ms) {
  fc_buf_printf(b, ",\"%s\":", name);
  if (!ms) {
    fc_buf_puts(b, "null");
    return;
  }
  fc_buf_puts(b, "\"");
  fc_time_rfc3339(b, ms);
  fc_buf_puts(b, "\"");
}

void fc__job_view_json(fc_buf_t *b, const fc__job_view_t *v) {
  const char *name = v->name ? v->name : "";
  fc_buf_printf(b, "{\"jobId\":\"%s\",\"workflowId\":%lld,\"name\":", v->id, (long long)v->wf);
  fc_json_quote(b, name, strlen(name));
  fc_buf_printf(b, ",\"status\":\"%s\",\"task\":%llu,\"reason\":", v->status, (unsigned long long)v->task);
  if (v->reason) fc_json_quote(b, v->reason, strlen(v->reason));
  else fc_buf_puts(b, "null");
  time_field(b, "createdAt", v->created_ms);
  time_field(b, "startedAt", v->started_ms);
  time_field(b, "endedAt", v->ended_ms);
  fc_buf_puts(b, "}");
}

static void job_json(fc_buf_t *b, const job_t *job) {
  fc__job_view_json(b, &(fc__job_view_t){.id = job->id,
                                         .name = job->name,
                                         .status = job_status_names[job->status],
                                         .reason = job->reason,
                                         .wf = job->wf_id,
                                         .task = job->task,
                                         .created_ms = job->created_ms,
                                         .started_ms = job->started_ms,
                                         .ended_ms = job->ended_ms});
}

int fc_jobs_job_json(fc_jobs_t *j, int64_t wf, const char *id, fc_buf_t *out, uint64_t *final_seq) {
  job_t *job = fc__job_find(j, id);
  if (!job && j->q) return fc__cl_job_json(j, wf, id, out, final_seq);
  if (!job || job->wf_id != wf) return -ENOENT;
  if (out) job_json(out, job);
  if (final_seq) *final_seq = job->final_seq;
  return 0;
}

int fc_jobs_list_json(fc_jobs_t *j, int64_t wf, const char *after, unsigned limit, fc_buf_t *out, char next[40]) {
  if (j->q) return fc__cl_list_json(j, wf, after, limit ? limit : FC_JOBS_PAGE_DEFAULT, out, next);
  job_t *job = j->jobs;
  next[0] = '\0';
  if (!limit) limit = FC_JOBS_PAGE_DEFAULT;
  if (after && *after) {
    job_t *from = fc__job_find(j, after);
    if (!from || from->wf_id != wf) return -EINVAL;
    job = from->next;
  } else if (!fc__wf_find(j, wf)) { /* a removed workflow's jobs are still listed */
    while (job && job->wf_id != wf) job = job->next;
    if (!job) return -ENOENT;
  }
  size_t n = 0;
  const job_t *last = NULL;
  fc_buf_puts(out, "[");
  for (; job; job = job->next) {
    if (job->wf_id != wf) continue;
    if (n == limit) { /* one more exists: the page ends at `last` */
      snprintf(next, 40, "%s", last->id);
      break;
    }
    if (n++) fc_buf_puts(out, ",");
    job_json(out, job);
    last = job;
  }
  fc_buf_puts(out, "]");
  return 0;
}
