/* Jobs across the nodes of a cluster (--redis): any node takes a start, the
 * job waits in the cluster's queue (store/jobq.h), and exactly one node with
 * room claims and runs it. Records live in Redis, so GET /job and GET /jobs
 * answer the same on every node; a control request for a job another node
 * runs is left there as a note, and its answer comes back the same way.
 *
 * Each node holds a lease it renews; a node that stops renewing it (killed,
 * cut off) is lost, and the first node to notice fails its jobs, with a
 * reason naming it, and publishes their final events so followers finish.
 *
 * Everything here runs on loop 0, on a 100 ms tick, with blocking calls to a
 * Redis that is normally local and answers in well under a millisecond; a
 * Redis that is away fails those calls at once (jobq.h). */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/internal.h"

#define TICK_MS 100
/* How long a control request waits for the node running the job. */
#define FORWARD_TIMEOUT_MS 5000
#define NOTES_PER_TICK 32
#define DEFAULT_LEASE_S 15

struct fc__fwd {
  fc__fwd_t *next;
  fc_jobs_cmd_t *c;
  char key[40]; /* where the answer comes */
  uint64_t deadline_ms;
};

static unsigned lease_ms(const fc_jobs_t *j) { return (j->o.lease_s ? j->o.lease_s : DEFAULT_LEASE_S) * 1000; }

/* A job record of this node's memory, made from the cluster's record. */
static job_t *job_of_row(fc_jobs_t *j, const fc_jobq_row_t *w) {
  job_t *job = fc__job_new(j, w->id, w->wf);
  job->status = fc__job_status_of(w->status);
  job->reason = w->reason ? strdup(w->reason) : NULL;
  job->input = w->input ? strdup(w->input) : NULL;
  job->starter = w->starter ? strdup(w->starter) : NULL;
  job->name = strdup(w->name ? w->name : "");
  job->description = strdup(w->description ? w->description : "");
  job->created_ms = w->created_ms;
  job->started_ms = w->started_ms;
  job->ended_ms = w->ended_ms;
  job->final_seq = w->final_seq;
  job->task = w->task;
  fc__job_adopt(j, job);
  return job;
}

void fc__cl_save(fc_jobs_t *j, const job_t *job) {
  fc_jobq_row_t row = {.id = job->id,
                       .wf = job->wf_id,
                       .status = job_status_names[job->status],
                       .reason = job->reason,
                       .input = job->input,
                       .starter = job->starter,
                       .name = job->name,
                       .description = job->description,
                       .created_ms = job->created_ms,
                       .started_ms = job->started_ms,
                       .ended_ms = job->ended_ms,
                       .final_seq = job->final_seq,
                       .task = job->task};
  if (fc_jobq_save(j->q, &row, ST_FINAL(job->status)) < 0)
    fc_log(FC_LOG_WARN, "cannot save job", "job=%s error=\"%s\"", job->id, fc_jobq_error(j->q));
}

/* ---- starting and claiming ------------------------------------------------ */

typedef struct {
  fc_jobs_t *j;
  bool swept; /* taken over from a node that never queued it */
  char id[40];
} queued_t;

/* A stop reached job `id` before it was queued: it ends here. */
static void stop_unqueued(fc_jobs_t *j, const char *id) {
  fc_jobq_rows_t rows = {0};
  if (fc_jobq_get(j->q, id, &rows) == 0 && rows.n) fc__job_finish(job_of_row(j, &rows.rows[0]), ST_STOPPED, "stopped");
  fc_jobq_rows_dispose(&rows);
}

/* The job's Pending status is stored: now it may be claimed (so that its
 * stream never shows Running before Pending). */
static void on_pending_stored(fc_pub_op_t *op, void *ud) {
  queued_t *p = ud;
  fc_jobs_t *j = p->j;
  int rc = fc_pub_op_status(op) == 0 ? fc_jobq_push(j->q, p->id, p->swept) : -EIO;
  if (rc < 0) fc_log(FC_LOG_WARN, "job not queued yet: Redis is unavailable (a node queues it later)", "job=%s", p->id);
  else if (rc == 0) stop_unqueued(j, p->id);
  else if (rc == 1 && !j->stopping) fc__cl_pump(j);
  free(p);
}

/* Publishes job `id`'s Pending status, then queues it (on_pending_stored). */
static void queue_pending(fc_jobs_t *j, const char *id, int64_t wf, bool swept) {
  job_t *job = fc__job_new(j, id, wf);
  job->status = ST_PENDING;
  queued_t *p = fc_xcalloc(1, sizeof *p);
  p->j = j;
  p->swept = swept;
  snprintf(p->id, sizeof p->id, "%s", id);
  fc__job_publish_status_then(job, on_pending_stored, p);
  fc__job_free(job);
}

int fc__cl_start(fc_jobs_t *j, wf_t *w, const char *input, const char *starter, char id[40]) {
  fc__job_uuid(id);
  fc_jobq_row_t row = {.id = id,
                       .wf = w->id,
                       .status = "Pending",
                       .input = input,
                       .starter = starter,
                       .name = w->name,
                       .description = w->description,
                       .created_ms = fc_now_ms(),
                       .max = w->max_running};
  int rc = fc_jobq_create(j->q, &row, j->max_queued);
  if (rc == -EAGAIN) return rc;
  if (rc < 0) {
    fc_log(FC_LOG_WARN, "job not started: Redis is unavailable", "workflow=%lld error=\"%s\"", (long long)w->id,
           fc_jobq_error(j->q));
    return -EIO;
  }
  queue_pending(j, id, w->id, false);
  return 0;
}

/* Runs a job this node claimed. */
static void run_claimed(fc_jobs_t *j, const fc_jobq_row_t *row) {
  job_t *job = job_of_row(j, row);
  wf_t *w = fc__wf_find(j, row->wf);
  if (!w) {
    char why[256];
    snprintf(why, sizeof why, "workflow %lld is not defined on node %s", (long long)row->wf, j->node);
    fc__job_finish(job, ST_FAILED, why);
    return;
  }
  job->wf = w;
  w->refs++;
  fc_log(FC_LOG_DEBUG, "job claimed", "workflow=%lld job=%s", (long long)row->wf, row->id);
  fc__job_run(job);
}

void fc__cl_pump(fc_jobs_t *j) {
  while (!j->stopping && j->running < j->max_running) {
    char id[40];
    if (fc_jobq_claim(j->q, j->node, id) <= 0) return;
    fc_jobq_rows_t rows = {0};
    if (fc_jobq_get(j->q, id, &rows) == 0 && rows.n) run_claimed(j, &rows.rows[0]);
    else fc_log(FC_LOG_WARN, "claimed job unreadable", "job=%s error=\"%s\"", id, fc_jobq_error(j->q));
    fc_jobq_rows_dispose(&rows);
  }
}

/* ---- reading -------------------------------------------------------------- */

static void row_json(fc_buf_t *b, const fc_jobq_row_t *w) {
  fc__job_view_json(b, &(fc__job_view_t){.id = w->id,
                                         .name = w->name,
                                         .status = w->status,
                                         .reason = w->reason,
                                         .wf = w->wf,
                                         .task = w->task,
                                         .created_ms = w->created_ms,
                                         .started_ms = w->started_ms,
                                         .ended_ms = w->ended_ms});
}

int fc__cl_job_json(fc_jobs_t *j, int64_t wf, const char *id, fc_buf_t *out, uint64_t *final_seq) {
  fc_jobq_rows_t rows = {0};
  int rc = fc_jobq_get(j->q, id, &rows) < 0 ? -EIO : 0;
  if (rc == 0 && (!rows.n || rows.rows[0].wf != wf)) rc = -ENOENT;
  if (rc == 0 && out) row_json(out, &rows.rows[0]);
  if (rc == 0 && final_seq) *final_seq = rows.rows[0].final_seq;
  fc_jobq_rows_dispose(&rows);
  return rc;
}

int fc__cl_list_json(fc_jobs_t *j, int64_t wf, const char *after, unsigned limit, fc_buf_t *out, char next[40]) {
  fc_jobq_rows_t rows = {0};
  bool more = false;
  next[0] = '\0';
  int rc = fc_jobq_page(j->q, wf, after, limit, &rows, &more);
  if (rc == 0 && !rows.n && !(after && *after) && !fc__wf_find(j, wf)) rc = -ENOENT;
  if (rc < 0) {
    fc_jobq_rows_dispose(&rows);
    return rc == -EINVAL || rc == -ENOENT ? rc : -EIO;
  }
  fc_buf_puts(out, "[");
  for (size_t i = 0; i < rows.n; i++) {
    if (i) fc_buf_puts(out, ",");
    row_json(out, &rows.rows[i]);
  }
  fc_buf_puts(out, "]");
  if (more && rows.n) snprintf(next, 40, "%s", rows.rows[rows.n - 1].id);
  fc_jobq_rows_dispose(&rows);
  return 0;
}

/* ---- control across nodes ------------------------------------------------- */

/* Leaves the request for the node running the job and holds the command
 * until it answers (check_answers). */
static int forward(fc_jobs_t *j, const fc_jobq_row_t *w, fc_job_action_t a, const fc_jobs_actor_t *who) {
  if (!j->cur) return -EBUSY; /* not a request: nobody would get the answer */
  unsigned char r[16];
  char key[40];
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(key, sizeof key, r, sizeof r);
  json_t *n = json_pack("{s:s, s:s, s:i, s:I, s:s, s:b, s:s?}", "op", "control", "key", key, "a", (int)a, "w",
                        (json_int_t)w->wf, "i", w->id, "all", who->all, "sub", who->sub);
  char *s = n ? json_dumps(n, JSON_COMPACT) : NULL;
  int rc = s ? fc_jobq_note(j->q, w->node, s) : -ENOMEM;
  free(s);
  json_decref(n);
  if (rc < 0) return -EIO;
  fc__fwd_t *f = fc_xcalloc(1, sizeof *f);
  f->c = fc__jobs_defer(j);
  memcpy(f->key, key, sizeof key);
  f->deadline_ms = fc_mono_ms() + FORWARD_TIMEOUT_MS;
  f->next = j->fwds;
  j->fwds = f;
  return -EINPROGRESS;
}

/* Control of a job by its record: a queued job is stopped here, a claimed
 * one by its node. */
static int control_row(fc_jobs_t *j, const fc_jobq_row_t *w, fc_job_action_t a, const fc_jobs_actor_t *who) {
  if (!who->all && (!w->starter || !who->sub || strcmp(w->starter, who->sub))) return -EPERM;
  if (ST_FINAL(fc__job_status_of(w->status))) return -EBUSY;
  if (!w->node) { /* not claimed: waiting in the queue (or about to) */
    if (a != FC_JOB_STOP) return -EBUSY;
    int rc = fc_jobq_unqueue(j->q, w->id);
    if (rc < 0) return -EIO;
    if (rc == 0) return -EAGAIN; /* claimed meanwhile: read it again */
    if (rc == 1) fc__job_finish(job_of_row(j, w), ST_STOPPED, "stopped");
    return 0; /* 2: the node that queues it ends it (stop_unqueued) */
  }
  if (!strcmp(w->node, j->node)) return -EBUSY; /* claimed here and not held: it is ending */
  return forward(j, w, a, who);
}

int fc__cl_control(fc_jobs_t *j, int64_t wf, const char *id, fc_job_action_t a, const fc_jobs_actor_t *who) {
  int rc = -EAGAIN;
  for (int tries = 0; rc == -EAGAIN && tries < 2; tries++) {
    fc_jobq_rows_t rows = {0};
    if (fc_jobq_get(j->q, id, &rows) < 0) rc = -EIO;
    else if (!rows.n || rows.rows[0].wf != wf) rc = -ENOENT;
    else rc = control_row(j, &rows.rows[0], a, who);
    fc_jobq_rows_dispose(&rows);
  }
  return rc == -EAGAIN ? -EBUSY : rc;
}

/* A control request from another node, for a job this node runs. */
static void remote_control(fc_jobs_t *j, json_t *n) {
  const char *key = json_string_value(json_object_get(n, "key")), *id = json_string_value(json_object_get(n, "i"));
  json_int_t a = json_integer_value(json_object_get(n, "a"));
  if (!key || !id || strlen(key) >= 40 || a < FC_JOB_STOP || a > FC_JOB_REJECT) return;
  fc_jobs_actor_t who = {.all = json_is_true(json_object_get(n, "all")),
                         .sub = json_string_value(json_object_get(n, "sub"))};
  j->remote = true;
  int rc = fc_jobs_control(j, json_integer_value(json_object_get(n, "w")), id, (fc_job_action_t)a, &who);
  j->remote = false;
  char answer[16];
  snprintf(answer, sizeof answer, "%d", rc);
  if (fc_jobq_answer(j->q, key, answer) < 0)
    fc_log(FC_LOG_WARN, "cannot answer a control request", "job=%s error=\"%s\"", id, fc_jobq_error(j->q));
}

static void on_note(void *ud, const char *note) {
  fc_jobs_t *j = ud;
  json_t *n = json_loads(note, 0, NULL);
  const char *op = json_string_value(json_object_get(n, "op"));
  if (op && !strcmp(op, "control")) remote_control(j, n);
  else if (op && !strcmp(op, "reload")) {
    fc_log(FC_LOG_INFO, "workflows reload asked by another node", "node=%s", j->node);
    fc__jobs_reload(j, false);
  }
  json_decref(n);
}

/* Answers the held commands whose answer came, or whose time ran out. */
static void check_answers(fc_jobs_t *j) {
  for (fc__fwd_t **pp = &j->fwds, *f; (f = *pp);) {
    char answer[16];
    int rc = fc_jobq_take_answer(j->q, f->key, answer, sizeof answer);
    if (rc == 1) f->c->rc = atoi(answer);
    else if (fc_mono_ms() >= f->deadline_ms) f->c->rc = -ETIMEDOUT;
    else {
      pp = &f->next;
      continue;
    }
    *pp = f->next;
    fc__jobs_finish(j, f->c);
    free(f);
  }
}

/* ---- leases --------------------------------------------------------------- */

/* Fails the jobs of lost nodes and publishes their final events; queues the
 * jobs a node created and never queued (its Pending status again first:
 * that node may have died before storing it). */
static void sweep(fc_jobs_t *j) {
  fc_jobq_rows_t rows = {0};
  if (fc_jobq_sweep(j->q, fc_now_ms(), &rows) == 0) {
    for (size_t i = 0; i < rows.n; i++) {
      job_t *job = job_of_row(j, &rows.rows[i]);
      fc_log(FC_LOG_WARN, "job ended", "workflow=%lld job=%s status=Failed reason=\"%s\"", (long long)job->wf_id,
             job->id, job->reason ? job->reason : "");
      fc__job_publish_stale(job);
    }
  }
  fc_jobq_rows_dispose(&rows);
  if (fc_jobq_stranded(j->q, fc_now_ms() - (int64_t)lease_ms(j), &rows) == 0) {
    for (size_t i = 0; i < rows.n; i++) {
      fc_log(FC_LOG_WARN, "job queued by this node: the node that took it never queued it", "workflow=%lld job=%s",
             (long long)rows.rows[i].wf, rows.rows[i].id);
      queue_pending(j, rows.rows[i].id, rows.rows[i].wf, true);
    }
  }
  fc_jobq_rows_dispose(&rows);
}

static void beat(fc_jobs_t *j) {
  j->next_beat = fc_mono_ms() + lease_ms(j) / 3;
  if (fc_jobq_beat(j->q, j->node, lease_ms(j)) == 0)
    fc_log(FC_LOG_WARN, "this node's lease had ended: other nodes may have failed its running jobs", "node=%s",
           j->node);
  sweep(j);
}

static void on_tick(uv_timer_t *t) {
  fc_jobs_t *j = t->data;
  if (j->stopping || !j->loaded) return;
  fc_jobq_notes(j->q, j->node, NOTES_PER_TICK, on_note, j);
  check_answers(j);
  fc__cl_pump(j);
  if (fc_mono_ms() >= j->next_beat) beat(j);
}

int fc__cl_open(fc_jobs_t *j, char *err, size_t errlen) {
  if (!(j->q = fc_jobq_open(j->o.cluster_url, err, errlen))) return -EIO;
  unsigned char r[4];
  char tag[9];
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(tag, sizeof tag, r, sizeof r);
  const char *name = j->o.node_name && *j->o.node_name ? j->o.node_name : "node";
  snprintf(j->node, sizeof j->node, "%.140s/%s", name, tag);
  if (fc_jobq_beat(j->q, j->node, lease_ms(j)) < 0) {
    snprintf(err, errlen, "cannot take this node's lease in Redis: %s", fc_jobq_error(j->q));
    fc_jobq_close(j->q);
    j->q = NULL;
    return -EIO;
  }
  j->next_beat = fc_mono_ms() + lease_ms(j) / 3;
  uv_timer_init(fc_loop_uv(j->loop), &j->tick);
  j->tick.data = j;
  j->tick_init = true;
  uv_timer_start(&j->tick, on_tick, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&j->tick);
  fc_log(FC_LOG_INFO, "cluster jobs", "node=%s lease_s=%u", j->node, lease_ms(j) / 1000);
  return 0;
}

void fc__cl_stop(fc_jobs_t *j) {
  if (!j->q) return;
  if (j->tick_init && !uv_is_closing((uv_handle_t *)&j->tick)) uv_close((uv_handle_t *)&j->tick, NULL);
  while (j->fwds) {
    fc__fwd_t *f = j->fwds;
    j->fwds = f->next;
    f->c->rc = -ESHUTDOWN;
    fc__jobs_finish(j, f->c);
    free(f);
  }
  /* The jobs this node runs end now, so that their followers on other nodes
   * finish (their events are committed before the store closes). */
  for (job_t *job = j->jobs; job; job = job->next) {
    if (ST_FINAL(job->status) || job->status == ST_PENDING) continue;
    char why[256];
    snprintf(why, sizeof why, "node %s stopped while the job was %s", j->node, job_status_names[job->status]);
    fc__job_finish(job, ST_FAILED, why);
  }
  if (fc_jobq_leave(j->q, j->node) < 0)
    fc_log(FC_LOG_WARN, "cannot end this node's lease", "error=\"%s\"", fc_jobq_error(j->q));
}

void fc__cl_free(fc_jobs_t *j) {
  fc_jobq_close(j->q);
  j->q = NULL;
}

/* ---- definitions ---------------------------------------------------------- */

/* A hash of a definition: its canonical JSON (sorted keys), BLAKE2b. */
static void def_hash(const wf_t *w, char out[33]) {
  char *s = json_dumps(w->def, JSON_COMPACT | JSON_SORT_KEYS);
  unsigned char h[16];
  crypto_generichash(h, sizeof h, (const unsigned char *)(s ? s : ""), s ? strlen(s) : 0, NULL, 0);
  sodium_bin2hex(out, 33, h, sizeof h);
  free(s);
}

void fc__cl_defs(fc_jobs_t *j, bool force) {
  char differ[sizeof j->defs_differ] = "";
  size_t len = 0;
  for (wf_t *w = j->wfs; w; w = w->next) {
    char mine[33], theirs[80];
    def_hash(w, mine);
    if (fc_jobq_def(j->q, w->id, mine, force, theirs, sizeof theirs) < 0 || !strcmp(mine, theirs)) continue;
    fc_log(FC_LOG_WARN, "workflow definition differs from the cluster's", "workflow=%lld file=%s node=%s",
           (long long)w->id, w->file, j->node);
    int n = snprintf(differ + len, sizeof differ - len, "%s%lld", len ? "," : "", (long long)w->id);
    if (n > 0 && (size_t)n < sizeof differ - len) len += (size_t)n;
  }
  pthread_mutex_lock(&j->defs_lock);
  memcpy(j->defs_differ, differ, sizeof differ);
  pthread_mutex_unlock(&j->defs_lock);
  if (!force) return;
  int n = fc_jobq_note_all(j->q, j->node, "{\"op\":\"reload\"}");
  if (n > 0) fc_log(FC_LOG_INFO, "workflows reload asked of the other nodes", "nodes=%d", n);
}

bool fc_jobs_health(fc_jobs_t *j, fc_buf_t *out) {
  if (!j || !j->q) return false;
  fc_buf_puts(out, ",\"node\":");
  fc_json_quote(out, j->node, strlen(j->node));
  pthread_mutex_lock(&j->defs_lock);
  fc_buf_printf(out, ",\"workflowsDiffer\":[%s]", j->defs_differ);
  bool differ = j->defs_differ[0] != '\0';
  pthread_mutex_unlock(&j->defs_lock);
  return differ;
}
