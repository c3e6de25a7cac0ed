/* records in SQLite: the users, jobs and job_tasks tables of flowcast.db.
 * Statements are prepared on first use and kept for the handle's life. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/internal.h"
#include "store/records.h"
#include "store/records_redis.h"

typedef enum {
  S_BEGIN,
  S_COMMIT,
  S_USERS_COUNT,
  S_USER_ADD,
  S_USER_SET_HASH,
  S_USER_DELETE,
  S_USERS_LIST,
  S_USER_GET,
  S_JOB_SAVE,
  S_TASK_SAVE,
  S_JOB_END,
  S_JOBS_LOAD,
  S_COUNT
} stmt_id_t;

static const char *const sql_of[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_USERS_COUNT] = "SELECT count(*) FROM users",
    [S_USER_ADD] = "INSERT INTO users(name, hash, admin, created_ms) VALUES(?,?,?,?)",
    [S_USER_SET_HASH] = "UPDATE users SET hash=? WHERE name=?",
    [S_USER_DELETE] = "DELETE FROM users WHERE name=?",
    [S_USERS_LIST] = "SELECT name, admin, created_ms FROM users ORDER BY name",
    [S_USER_GET] = "SELECT hash, admin FROM users WHERE name=?",
    [S_JOB_SAVE] = "INSERT OR REPLACE INTO jobs(id, workflow_id, status, reason, input, created_ms, started_ms,"
                   " ended_ms, final_seq, started_by) VALUES(?,?,?,?,?,?,?,?,?,?)",
    [S_TASK_SAVE] = "INSERT OR REPLACE INTO job_tasks VALUES(?,?,?,?,?,?,?)",
    [S_JOB_END] = "UPDATE jobs SET status=?, reason=?, ended_ms=? WHERE id=?",
    [S_JOBS_LOAD] = "SELECT * FROM (SELECT id, workflow_id, status, reason, input, created_ms, started_ms,"
                    " ended_ms, final_seq, started_by FROM jobs WHERE created_ms < ?"
                    " ORDER BY created_ms DESC LIMIT ?) ORDER BY created_ms",
};

struct fc_records {
  fc__rrec_t *redis; /* cluster mode: users in Redis (no jobs); else NULL */
  sqlite3 *db;
  sqlite3_stmt *st[S_COUNT]; /* prepared on first use */
  bool in_batch;
  char error[256]; /* the last failure's message */
};

const char *fc_store_sqlite_version(void) { return sqlite3_libversion(); }

/* Keeps the connection's message for fc_records_error; returns -EIO. */
static int failed(fc_records_t *r) {
  snprintf(r->error, sizeof r->error, "%s", sqlite3_errmsg(r->db));
  return -EIO;
}

/* The statement `id`, reset and unbound, or NULL (the error kept). */
static sqlite3_stmt *stmt(fc_records_t *r, stmt_id_t id) {
  if (!r->st[id] &&
      sqlite3_prepare_v3(r->db, sql_of[id], -1, SQLITE_PREPARE_PERSISTENT, &r->st[id], NULL) != SQLITE_OK) {
    failed(r);
    return NULL;
  }
  return r->st[id];
}

/* Ends a statement's use: the step's result becomes 0 or -EIO (the error kept
 * before the reset). */
static int finish(fc_records_t *r, sqlite3_stmt *st, int rc) {
  int out = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : failed(r);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return out;
}

/* Runs a statement without rows. */
static int run(fc_records_t *r, sqlite3_stmt *st) { return finish(r, st, sqlite3_step(st)); }

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
  if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else sqlite3_bind_null(st, i);
}

/* 0 is stored as none. */
static void bind_opt_i64(sqlite3_stmt *st, int i, int64_t v) {
  if (v) sqlite3_bind_int64(st, i, v);
  else sqlite3_bind_null(st, i);
}

fc_records_t *fc_records_open(const char *dir, char *err, size_t errlen) {
  sqlite3 *db = fc__store_open_db(dir, err, errlen);
  if (!db) return NULL;
  fc_records_t *r = fc_xcalloc(1, sizeof *r);
  r->db = db;
  return r;
}

fc_records_t *fc_records_open_redis(const char *url, char *err, size_t errlen) {
  fc_records_t *r = fc_xcalloc(1, sizeof *r);
  r->redis = fc_xcalloc(1, sizeof *r->redis);
  if (fc__rrec_open(r->redis, url, err, errlen) < 0) {
    fc_records_close(r);
    return NULL;
  }
  return r;
}

void fc_records_close(fc_records_t *r) {
  if (!r) return;
  if (r->redis) {
    fc__rrec_close(r->redis);
    free(r->redis);
    free(r);
    return;
  }
  if (r->in_batch) sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
  for (size_t i = 0; i < S_COUNT; i++) sqlite3_finalize(r->st[i]);
  sqlite3_close(r->db);
  free(r);
}

const char *fc_records_error(const fc_records_t *r) { return r->redis ? r->redis->error : r->error; }

int fc_records_set_durability(fc_records_t *r, bool power) {
  if (r->redis) return 0; /* Redis' own persistence settings decide */
  const char *sql = power ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  return sqlite3_exec(r->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : failed(r);
}

int fc_records_batch_begin(fc_records_t *r) {
  if (r->redis) return -EIO; /* no batch: each write stands alone */
  sqlite3_stmt *st = stmt(r, S_BEGIN);
  if (!st || run(r, st) < 0) return -EIO;
  r->in_batch = true;
  return 0;
}

int fc_records_batch_end(fc_records_t *r) {
  if (r->redis) return 0;
  sqlite3_stmt *st = stmt(r, S_COMMIT);
  int rc = st ? run(r, st) : -EIO;
  if (rc < 0) { /* the message is the commit's, not the rollback's */
    sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
  }
  r->in_batch = false;
  return rc;
}

int fc_records_users_count(fc_records_t *r) {
  if (r->redis) return fc__rrec_users_count(r->redis);
  sqlite3_stmt *st = stmt(r, S_USERS_COUNT);
  if (!st) return -EIO;
  int rc = sqlite3_step(st), n = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  return finish(r, st, rc) < 0 ? -EIO : n;
}

int fc_records_user_add(fc_records_t *r, const char *name, const char *hash, bool admin, int64_t created_ms) {
  if (r->redis) return fc__rrec_user_add(r->redis, name, hash, admin, created_ms);
  sqlite3_stmt *st = stmt(r, S_USER_ADD);
  if (!st) return -EIO;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 3, admin);
  sqlite3_bind_int64(st, 4, created_ms);
  int rc = sqlite3_step(st);
  return finish(r, st, rc) == 0 ? 0 : rc == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
}

/* Runs a one-row change keyed by name: 0, -ENOENT when no row changed, -EIO. */
static int change_user(fc_records_t *r, sqlite3_stmt *st) {
  if (run(r, st) < 0) return -EIO;
  return sqlite3_changes(r->db) ? 0 : -ENOENT;
}

int fc_records_user_set_hash(fc_records_t *r, const char *name, const char *hash) {
  if (r->redis) return fc__rrec_user_set_hash(r->redis, name, hash);
  sqlite3_stmt *st = stmt(r, S_USER_SET_HASH);
  if (!st) return -EIO;
  sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
  return change_user(r, st);
}

int fc_records_user_delete(fc_records_t *r, const char *name) {
  if (r->redis) return fc__rrec_user_delete(r->redis, name);
  sqlite3_stmt *st = stmt(r, S_USER_DELETE);
  if (!st) return -EIO;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  return change_user(r, st);
}

int fc_records_users_list(fc_records_t *r, fc_records_user_cb *each, void *ud) {
  if (r->redis) return fc__rrec_users_list(r->redis, each, ud);
  sqlite3_stmt *st = stmt(r, S_USERS_LIST);
  if (!st) return -EIO;
  /* A read that fails part-way ends the list early; it is not reported. */
  while (sqlite3_step(st) == SQLITE_ROW)
    each(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1) != 0, sqlite3_column_int64(st, 2));
  return finish(r, st, SQLITE_DONE);
}

int fc_records_window_hit(fc_records_t *r, const char *key, unsigned window_s) {
  return r->redis ? fc__rrec_window_hit(r->redis, key, window_s) : -ENOTSUP;
}

int fc_records_window_get(fc_records_t *r, const char *key, unsigned *ttl_s) {
  return r->redis ? fc__rrec_window_get(r->redis, key, ttl_s) : -ENOTSUP;
}

int fc_records_user_get(fc_records_t *r, const char *name, char *hash, size_t hashlen, bool *admin) {
  if (r->redis) return fc__rrec_user_get(r->redis, name, hash, hashlen, admin);
  sqlite3_stmt *st = stmt(r, S_USER_GET);
  if (!st) return -EIO;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st), out = -ENOENT;
  if (rc == SQLITE_ROW) {
    const unsigned char *text = sqlite3_column_text(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    if (n >= hashlen) {
      out = -ENAMETOOLONG;
    } else if (text) {
      memcpy(hash, text, n + 1);
      *admin = sqlite3_column_int(st, 1) != 0;
      out = 0;
    }
  }
  return finish(r, st, rc) < 0 ? -EIO : out;
}

int fc_records_jobs_prepare(fc_records_t *r, char *err, size_t errlen) {
  sqlite3_stmt *st;
  bool has = false;
  if (sqlite3_prepare_v2(r->db, "SELECT 1 FROM pragma_table_info('jobs') WHERE name='started_by'", -1, &st, NULL) ==
      SQLITE_OK) {
    has = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
  }
  if (has) return 0;
  if (sqlite3_exec(r->db, "ALTER TABLE jobs ADD COLUMN started_by TEXT", NULL, NULL, NULL) != SQLITE_OK) {
    failed(r);
    snprintf(err, errlen, "cannot add jobs.started_by to the database: %s", r->error);
    return -EIO;
  }
  fc_log(FC_LOG_INFO, "schema upgraded", "table=jobs column=started_by");
  return 0;
}

int fc_records_job_save(fc_records_t *r, const fc_job_row_t *job) {
  sqlite3_stmt *st = stmt(r, S_JOB_SAVE);
  if (!st) return -EIO;
  bind_text(st, 1, job->id);
  sqlite3_bind_int64(st, 2, job->workflow_id);
  bind_text(st, 3, job->status);
  bind_text(st, 4, job->reason);
  bind_text(st, 5, job->input);
  sqlite3_bind_int64(st, 6, job->created_ms);
  bind_opt_i64(st, 7, job->started_ms);
  bind_opt_i64(st, 8, job->ended_ms);
  sqlite3_bind_int64(st, 9, (sqlite3_int64)job->final_seq);
  bind_text(st, 10, job->started_by);
  return run(r, st);
}

int fc_records_task_save(fc_records_t *r, const fc_task_row_t *t) {
  sqlite3_stmt *st = stmt(r, S_TASK_SAVE);
  if (!st) return -EIO;
  bind_text(st, 1, t->job_id);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)t->idx);
  bind_text(st, 3, t->type);
  bind_text(st, 4, t->status);
  if (t->has_exit_code) sqlite3_bind_int64(st, 5, t->exit_code);
  else sqlite3_bind_null(st, 5);
  sqlite3_bind_int64(st, 6, t->started_ms);
  sqlite3_bind_int64(st, 7, t->ended_ms);
  return run(r, st);
}

int fc_records_job_end(fc_records_t *r, const char *id, const char *status, const char *reason, int64_t ended_ms) {
  sqlite3_stmt *st = stmt(r, S_JOB_END);
  if (!st) return -EIO;
  bind_text(st, 1, status);
  bind_text(st, 2, reason);
  sqlite3_bind_int64(st, 3, ended_ms);
  bind_text(st, 4, id);
  return run(r, st);
}

static const char *dup_col(sqlite3_stmt *st, int i) {
  const char *s = (const char *)sqlite3_column_text(st, i);
  return s ? fc_xstrndup(s, strlen(s)) : NULL;
}

int fc_records_jobs_load(fc_records_t *r, int64_t before_ms, unsigned limit, fc_job_rows_t *out) {
  *out = (fc_job_rows_t){0};
  sqlite3_stmt *st = stmt(r, S_JOBS_LOAD);
  if (!st) return -EIO;
  sqlite3_bind_int64(st, 1, before_ms);
  sqlite3_bind_int64(st, 2, limit);
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (out->n == cap) out->rows = fc_xrealloc(out->rows, (cap = cap ? 2 * cap : 256) * sizeof *out->rows);
    out->rows[out->n++] = (fc_job_row_t){
        .id = dup_col(st, 0),
        .workflow_id = sqlite3_column_int64(st, 1),
        .status = dup_col(st, 2),
        .reason = dup_col(st, 3),
        .input = dup_col(st, 4),
        .created_ms = sqlite3_column_int64(st, 5),
        .started_ms = sqlite3_column_int64(st, 6),
        .ended_ms = sqlite3_column_int64(st, 7),
        .final_seq = (uint64_t)sqlite3_column_int64(st, 8),
        .started_by = dup_col(st, 9),
    };
  }
  if (finish(r, st, rc) < 0) {
    fc_job_rows_dispose(out);
    return -EIO;
  }
  return 0;
}

void fc_job_rows_dispose(fc_job_rows_t *rows) {
  for (size_t i = 0; i < rows->n; i++) {
    fc_job_row_t *w = &rows->rows[i];
    free((char *)w->id), free((char *)w->status), free((char *)w->reason), free((char *)w->input);
    free((char *)w->started_by);
  }
  free(rows->rows);
  *rows = (fc_job_rows_t){0};
}
