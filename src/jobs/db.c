/* Jobs and task results in the store's records (the server's database, own
 * connection, loop 0 only). Every call is a no-op with --storage memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/internal.h"

void fc__db_save_job(fc_jobs_t *j, const job_t *job) {
  if (j->q) {
    fc__cl_save(j, job);
    return;
  }
  if (!j->db) return;
  fc_job_row_t row = {
      .id = job->id,
      .workflow_id = job->wf_id,
      .status = job_status_names[job->status],
      .reason = job->reason,
      .input = job->input,
      .started_by = job->starter,
      .created_ms = job->created_ms,
      .started_ms = job->started_ms,
      .ended_ms = job->ended_ms,
      .final_seq = job->final_seq,
  };
  if (fc_records_job_save(j->db, &row) < 0)
    fc_log(FC_LOG_WARN, "cannot save job", "job=%s error=\"%s\"", job->id, fc_records_error(j->db));
}

void fc__db_save_task(fc_jobs_t *j, const job_t *job, const char *type, const char *status, int64_t code,
                      int64_t started, int64_t ended) {
  if (!j->db) return;
  fc_task_row_t t = {
      .job_id = job->id,
      .idx = job->task,
      .type = type,
      .status = status,
      .has_exit_code = !strcmp(type, "exec"),
      .exit_code = code,
      .started_ms = started,
      .ended_ms = ended,
  };
  fc_records_task_save(j->db, &t);
}

job_status_t fc__job_status_of(const char *s) {
  for (int i = 0; i <= ST_REJECTED; i++)
    if (s && !strcmp(s, job_status_names[i])) return (job_status_t)i;
  return ST_FAILED;
}

void fc__db_defer_save(fc_jobs_t *j, job_t *job) {
  if (!j->db && !j->q) return;
  if (j->stopping) { /* the loop's idle work no longer runs */
    fc__db_save_job(j, job);
    return;
  }
  if (job->save_queued) return;
  job->save_queued = true;
  job->snext = j->saves;
  j->saves = job;
  fc__jobs_kick(j);
}

void fc__db_flush(fc_jobs_t *j) {
  if (!j->saves) return;
  bool batch = j->db && fc_records_batch_begin(j->db) == 0;
  for (job_t *job = j->saves, *next; job; job = next) {
    next = job->snext;
    job->snext = NULL;
    job->save_queued = false;
    fc__db_save_job(j, job);
  }
  j->saves = NULL;
  if (batch && fc_records_batch_end(j->db) < 0)
    fc_log(FC_LOG_WARN, "cannot save jobs", "error=\"%s\"", fc_records_error(j->db));
}

int fc__db_upgrade(fc_jobs_t *j, char *err, size_t errlen) {
  return j->db ? fc_records_jobs_prepare(j->db, err, errlen) : 0;
}

/* A jobs row as read by the start-up load, on a worker thread. */
typedef struct {
  char *id, *status, *reason, *input, *starter;
  int64_t wf, created_ms, started_ms, ended_ms;
  uint64_t final_seq;
  bool stale; /* marked Failed by this load: its final events are to publish */
} row_t;

struct fc__db_rows {
  char *dir;
  int64_t before_ms; /* rows of jobs created before this start only */
  row_t *rows;       /* oldest first */
  size_t n;
  size_t failed; /* rows marked Failed */
  char err[256];
};

fc__db_rows_t *fc__db_rows_new(const char *dir, int64_t before_ms) {
  fc__db_rows_t *r = fc_xcalloc(1, sizeof *r);
  r->dir = strdup(dir);
  r->before_ms = before_ms;
  return r;
}

void fc__db_rows_free(fc__db_rows_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n; i++) {
    row_t *w = &r->rows[i];
    free(w->id), free(w->status), free(w->reason), free(w->input), free(w->starter);
  }
  free(r->rows);
  free(r->dir);
  free(r);
}

/* Marks the unfinished rows Failed, in one batch. */
static void fail_stale_rows(fc_records_t *rec, fc__db_rows_t *r) {
  if (fc_records_batch_begin(rec) < 0) {
    snprintf(r->err, sizeof r->err, "%s", fc_records_error(rec));
    return;
  }
  int64_t now = fc_now_ms();
  for (size_t i = 0; i < r->n; i++) {
    row_t *w = &r->rows[i];
    if (ST_FINAL(fc__job_status_of(w->status))) continue;
    char why[96];
    snprintf(why, sizeof why, "the server stopped while the job was %s", w->status ? w->status : "?");
    free(w->reason);
    free(w->status);
    w->reason = strdup(why);
    w->status = strdup("Failed");
    w->ended_ms = now;
    w->stale = true;
    fc_records_job_end(rec, w->id, w->status, w->reason, now);
    r->failed++;
  }
  if (fc_records_batch_end(rec) < 0) snprintf(r->err, sizeof r->err, "%s", fc_records_error(rec));
}

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

void fc__db_read_rows(fc__db_rows_t *r) {
  fc_records_t *rec = fc_records_open(r->dir, r->err, sizeof r->err);
  if (!rec) return;
  fc_job_rows_t rows;
  if (fc_records_jobs_load(rec, r->before_ms, 10000, &rows) < 0) {
    snprintf(r->err, sizeof r->err, "%s", fc_records_error(rec));
    fc_records_close(rec);
    return;
  }
  r->rows = fc_xcalloc(rows.n ? rows.n : 1, sizeof *r->rows);
  for (size_t i = 0; i < rows.n; i++) {
    const fc_job_row_t *f = &rows.rows[i];
    r->rows[r->n++] = (row_t){
        .id = dup_str(f->id),
        .status = dup_str(f->status),
        .reason = dup_str(f->reason),
        .input = dup_str(f->input),
        .starter = dup_str(f->started_by),
        .wf = f->workflow_id,
        .created_ms = f->created_ms,
        .started_ms = f->started_ms,
        .ended_ms = f->ended_ms,
        .final_seq = f->final_seq,
    };
  }
  fc_job_rows_dispose(&rows);
  fail_stale_rows(rec, r);
  fc_records_close(rec);
}

void fc__db_adopt_rows(fc_jobs_t *j, fc__db_rows_t *r) {
  if (*r->err) fc_log(FC_LOG_WARN, "cannot load jobs", "error=\"%s\"", r->err);
  job_t *fresh = j->jobs, *list = NULL, **rtail = &j->recover; /* jobs made during the load */
  while (*rtail) rtail = &(*rtail)->rnext;
  for (size_t i = 0; i < r->n; i++) { /* oldest first: `list` ends newest first */
    row_t *w = &r->rows[i];
    bool dup = !w->id;
    for (job_t *f = fresh; f && !dup; f = f->next) dup = !strcmp(f->id, w->id);
    if (dup) continue;
    job_t *job = fc__job_new(j, w->id, w->wf);
    job->status = fc__job_status_of(w->status);
    job->reason = w->reason, w->reason = NULL;
    job->input = w->input, w->input = NULL;
    job->starter = w->starter, w->starter = NULL;
    job->created_ms = w->created_ms;
    job->started_ms = w->started_ms;
    job->ended_ms = w->ended_ms;
    job->final_seq = w->final_seq;
    wf_t *wf = fc__wf_find(j, job->wf_id);
    job->name = strdup(wf ? wf->name : "");
    job->description = strdup(wf ? wf->description : "");
    job->next = list;
    list = job;
    if (w->stale) {
      *rtail = job;
      rtail = &job->rnext;
    }
  }
  job_t **tail = &j->jobs; /* the loaded jobs are older than those made meanwhile */
  while (*tail) tail = &(*tail)->next;
  *tail = list;
  if (r->failed) fc_log(FC_LOG_INFO, "jobs recovered", "failed=%zu loaded=%zu", r->failed, r->n);
}
