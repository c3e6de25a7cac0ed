/* Jobs and task results in SQLite (the server's database, own connection,
 * loop 0 only). Every call is a no-op with --storage memory. */
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
                         " ended_ms, final_seq) VALUES(?,?,?,?,?,?,?,?,?)",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_text(st, 1, job->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, job->wf_id);
  sqlite3_bind_text(st, 3, job_status_names[job->status], -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, job->reason, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, job->input, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, job->created_ms);
  bind_opt_i64(st, 7, job->started_ms);
  bind_opt_i64(st, 8, job->ended_ms);
  sqlite3_bind_int64(st, 9, (sqlite3_int64)job->final_seq);
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

/* Loads the newest jobs, oldest first so the list ends newest first; jobs a
 * dead server left unfinished are marked Failed and get their final event. */
void fc__db_load(fc_jobs_t *j) {
  if (!j->db) return;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(j->db,
                         "SELECT * FROM (SELECT id, workflow_id, status, reason, input, created_ms, started_ms,"
                         " ended_ms, final_seq FROM jobs ORDER BY created_ms DESC LIMIT 10000) ORDER BY created_ms",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  while (sqlite3_step(st) == SQLITE_ROW) {
    job_t *job = fc__job_new(j, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
    job->status = status_of((const char *)sqlite3_column_text(st, 2));
    job->reason = dup_col(st, 3);
    job->input = dup_col(st, 4);
    job->created_ms = sqlite3_column_int64(st, 5);
    job->started_ms = sqlite3_column_int64(st, 6);
    job->ended_ms = sqlite3_column_int64(st, 7);
    job->final_seq = (uint64_t)sqlite3_column_int64(st, 8);
    wf_t *w = fc__wf_find(j, job->wf_id);
    job->name = strdup(w ? w->name : "");
    job->description = strdup(w ? w->description : "");
  }
  sqlite3_finalize(st);
  for (job_t *job = j->jobs; job; job = job->next)
    if (!ST_FINAL(job->status)) fc__job_fail_stale(job);
}
