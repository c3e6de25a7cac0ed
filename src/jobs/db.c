/* Jobs and task results in SQLite (the server's database, own connection,
 * loop 0 only). Every call is a no-op with --storage memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/internal.h"

static void bind_opt_i64(sqlite3_stmt *st, int i, int64_t v) {
  if (v)
    sqlite3_bind_int64(st, i, v);
  else
    sqlite3_bind_null(st, i);
}

void fc__db_save_job(fc_jobs_t *j, const job_t *job) {
  if (!j->db) return;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(j->db,
                         "INSERT OR REPLACE INTO jobs(id, workflow_id, status, reason, input, created_ms, started_ms,"
                         " ended_ms, final_seq, started_by) VALUES(?,?,?,?,?,?,?,?,?,?)",
                         -1, &st, NULL) != SQLITE_OK) {
    fc_log(FC_LOG_WARN, "cannot save job", "job=%s error=\"%s\"", job->id, sqlite3_errmsg(j->db));
    return;
  }
  sqlite3_bind_text(st, 1, job->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, job->wf_id);
  sqlite3_bind_text(st, 3, job_status_names[job->status], -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, job->reason, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, job->input, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, job->created_ms);
  bind_opt_i64(st, 7, job->started_ms);
  bind_opt_i64(st, 8, job->ended_ms);
  sqlite3_bind_int64(st, 9, (sqlite3_int64)job->final_seq);
  sqlite3_bind_text(st, 10, job->starter, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) fc_log(FC_LOG_WARN, "cannot save job", "job=%s error=\"%s\"", job->id, sqlite3_errmsg(j->db));
  sqlite3_finalize(st);
}

void fc__db_save_task(fc_jobs_t *j, const job_t *job, const char *type, const char *status, int64_t code,
                      int64_t started, int64_t ended) {
  if (!j->db) return;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(j->db, "INSERT OR REPLACE INTO job_tasks VALUES(?,?,?,?,?,?,?)", -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_text(st, 1, job->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)job->task);
  sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, status, -1, SQLITE_STATIC);
  if (!strcmp(type, "exec"))
    sqlite3_bind_int64(st, 5, code);
  else
    sqlite3_bind_null(st, 5);
  sqlite3_bind_int64(st, 6, started);
  sqlite3_bind_int64(st, 7, ended);
  sqlite3_step(st);
  sqlite3_finalize(st);
}

static job_status_t status_of(const char *s) {
  for (int i = 0; i <= ST_REJECTED; i++)
    if (s && !strcmp(s, job_status_names[i])) return (job_status_t)i;
  return ST_FAILED;
}

static char *dup_col(sqlite3_stmt *st, int i) {
  const char *s = (const char *)sqlite3_column_text(st, i);
  return s ? strdup(s) : NULL;
}

static int exec(fc_jobs_t *j, const char *sql) { return sqlite3_exec(j->db, sql, NULL, NULL, NULL); }

void fc__db_defer_save(fc_jobs_t *j, job_t *job) {
  if (!j->db) return;
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
  bool tx = exec(j, "BEGIN IMMEDIATE") == SQLITE_OK;
  for (job_t *job = j->saves, *next; job; job = next) {
    next = job->snext;
    job->snext = NULL;
    job->save_queued = false;
    fc__db_save_job(j, job);
  }
  j->saves = NULL;
  if (tx && exec(j, "COMMIT") != SQLITE_OK) {
    fc_log(FC_LOG_WARN, "cannot save jobs", "error=\"%s\"", sqlite3_errmsg(j->db));
    exec(j, "ROLLBACK");
  }
}

int fc__db_upgrade(fc_jobs_t *j, char *err, size_t errlen) {
  if (!j->db) return 0;
  sqlite3_stmt *st;
  bool has = false;
  if (sqlite3_prepare_v2(j->db, "SELECT 1 FROM pragma_table_info('jobs') WHERE name='started_by'", -1, &st, NULL) ==
      SQLITE_OK) {
    has = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
  }
  if (has) return 0;
  if (exec(j, "ALTER TABLE jobs ADD COLUMN started_by TEXT") != SQLITE_OK) {
    snprintf(err, errlen, "cannot add jobs.started_by to the database: %s", sqlite3_errmsg(j->db));
    return -1;
  }
  fc_log(FC_LOG_INFO, "schema upgraded", "table=jobs column=started_by");
  return 0;
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
  size_t failed;     /* rows marked Failed */
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

/* Marks the unfinished rows Failed, in one transaction. */
static void fail_stale_rows(sqlite3 *db, fc__db_rows_t *r) {
  sqlite3_stmt *st;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "UPDATE jobs SET status='Failed', reason=?, ended_ms=? WHERE id=?", -1, &st, NULL) !=
          SQLITE_OK) {
    snprintf(r->err, sizeof r->err, "%s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return;
  }
  int64_t now = fc_now_ms();
  for (size_t i = 0; i < r->n; i++) {
    row_t *w = &r->rows[i];
    if (ST_FINAL(status_of(w->status))) continue;
    char why[96];
    snprintf(why, sizeof why, "the server stopped while the job was %s", w->status ? w->status : "?");
    free(w->reason);
    free(w->status);
    w->reason = strdup(why);
    w->status = strdup("Failed");
    w->ended_ms = now;
    w->stale = true;
    sqlite3_bind_text(st, 1, w->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, w->id, -1, SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_reset(st);
    r->failed++;
  }
  sqlite3_finalize(st);
  if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(r->err, sizeof r->err, "%s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  }
}

void fc__db_read_rows(fc__db_rows_t *r) {
  sqlite3 *db = fc_store_open_db(r->dir, r->err, sizeof r->err);
  if (!db) return;
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "SELECT * FROM (SELECT id, workflow_id, status, reason, input, created_ms, started_ms,"
                         " ended_ms, final_seq, started_by FROM jobs WHERE created_ms < ?"
                         " ORDER BY created_ms DESC LIMIT 10000) ORDER BY created_ms",
                         -1, &st, NULL) != SQLITE_OK) {
    snprintf(r->err, sizeof r->err, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return;
  }
  sqlite3_bind_int64(st, 1, r->before_ms);
  size_t cap = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (r->n == cap) r->rows = fc_xrealloc(r->rows, (cap = cap ? 2 * cap : 256) * sizeof *r->rows);
    row_t *w = &r->rows[r->n++];
    *w = (row_t){0};
    w->id = dup_col(st, 0);
    w->wf = sqlite3_column_int64(st, 1);
    w->status = dup_col(st, 2);
    w->reason = dup_col(st, 3);
    w->input = dup_col(st, 4);
    w->created_ms = sqlite3_column_int64(st, 5);
    w->started_ms = sqlite3_column_int64(st, 6);
    w->ended_ms = sqlite3_column_int64(st, 7);
    w->final_seq = (uint64_t)sqlite3_column_int64(st, 8);
    w->starter = dup_col(st, 9);
  }
  sqlite3_finalize(st);
  fail_stale_rows(db, r);
  sqlite3_close(db);
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
    job->status = status_of(w->status);
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
