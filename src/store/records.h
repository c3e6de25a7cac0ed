/* records: what flowcast keeps beside its events — user accounts and workflow
 * jobs — as typed calls, so that no module outside store knows how they are
 * stored. Today they live in DIR/flowcast.db (records_sql.c, the schema that
 * store/sqlite.c creates and upgrades), or, in cluster mode, users in Redis
 * (records_redis.c).
 *
 * A handle is one connection. It is not thread-safe: one thread at a time
 * uses it (the caller serializes), and separate threads open separate handles.
 * Every call returns 0 (or a count) or a negative errno; after a failure,
 * fc_records_error says why. Strings passed in are borrowed for the call. */
#ifndef FC_STORE_RECORDS_H
#define FC_STORE_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fc_records fc_records_t;

/* Opens the records of data directory DIR, creating the directory and the
 * database and upgrading its schema as the store does, without the server's
 * directory lock (the command line uses it beside a running server). Returns
 * NULL with a message for the user in `err` (unwritable directory, corrupt or
 * newer database). Free with fc_records_close. Any thread. */
fc_records_t *fc_records_open(const char *dir, char *err, size_t errlen);
/* Cluster mode: the records in the Redis at `url` (redis.c's URL form), where
 * only the users calls work (jobs stay in each node's database: do not call
 * the jobs calls on this handle); batches are not supported (begin fails and
 * each write stands alone). NULL with `err` when the URL is bad or Redis
 * cannot be reached. */
fc_records_t *fc_records_open_redis(const char *url, char *err, size_t errlen);
/* Closes the handle (NULL: nothing). An open batch is rolled back. */
void fc_records_close(fc_records_t *r);

/* Why the last failed call on `r` failed, for logs: a message owned by `r`,
 * valid until its next failure. "" when nothing failed. */
const char *fc_records_error(const fc_records_t *r);

/* How durable this handle's writes are: with `power` each commit is synced to
 * disk (survives power loss), else it survives a killed process. Handles
 * opened without this call keep the engine's default. Returns 0 or -EIO. */
int fc_records_set_durability(fc_records_t *r, bool power);

/* A batch: the writes between begin and end are committed together or not at
 * all. fc_records_batch_begin returns 0, or -EIO (no batch: later writes
 * commit one by one). fc_records_batch_end commits: 0, or -EIO with every
 * write of the batch undone. */
int fc_records_batch_begin(fc_records_t *r);
int fc_records_batch_end(fc_records_t *r);

/* --- users ------------------------------------------------------------- */

/* How many users there are, or -EIO. */
int fc_records_users_count(fc_records_t *r);
/* Adds a user with a password hash (an opaque string). Returns 0, -EEXIST
 * when the name is taken, or -EIO. */
int fc_records_user_add(fc_records_t *r, const char *name, const char *hash, bool admin, int64_t created_ms);
/* Replaces a user's password hash. Returns 0, -ENOENT, or -EIO. */
int fc_records_user_set_hash(fc_records_t *r, const char *name, const char *hash);
/* Deletes a user. Returns 0, -ENOENT, or -EIO. */
int fc_records_user_delete(fc_records_t *r, const char *name);
/* Calls `each` for every user in name order (bytewise); the name is borrowed
 * for the call. Returns 0, or -EIO when the list cannot be read. */
typedef void fc_records_user_cb(void *ud, const char *name, bool admin, int64_t created_ms);
int fc_records_users_list(fc_records_t *r, fc_records_user_cb *each, void *ud);
/* Copies user `name`'s hash into `hash` (NUL-terminated) and sets `*admin`.
 * Returns 0; -ENOENT for no such user; -ENAMETOOLONG when the stored hash
 * does not fit in `hashlen` (nothing copied); or -EIO. */
int fc_records_user_get(fc_records_t *r, const char *name, char *hash, size_t hashlen, bool *admin);

/* --- shared counters (cluster mode) --------------------------------------- */

/* Counts one more hit on `key` in a fixed window of `window_s` seconds that
 * starts with its first hit. Returns the hits in the window, -EIO, or
 * -ENOTSUP for a handle that is not Redis (counters are then the caller's). */
int fc_records_window_hit(fc_records_t *r, const char *key, unsigned window_s);
/* The hits of `key`'s current window (0 when none) and the seconds it has
 * left in `*ttl_s`; -EIO or -ENOTSUP as above. */
int fc_records_window_get(fc_records_t *r, const char *key, unsigned *ttl_s);

/* --- workflow jobs ------------------------------------------------------ */

/* A job's row. Saved rows are borrowed; loaded rows are owned by their
 * fc_job_rows_t. */
typedef struct {
  const char *id;
  int64_t workflow_id;
  const char *status;     /* the jobs module's name for it */
  const char *reason;     /* why it failed; NULL: none */
  const char *input;      /* NULL: none */
  const char *started_by; /* NULL: a trigger */
  int64_t created_ms;
  int64_t started_ms, ended_ms; /* 0: not yet */
  uint64_t final_seq;           /* id of its final event, 0 before it */
} fc_job_row_t;

/* One task's result within a job. */
typedef struct {
  const char *job_id;
  uint64_t idx; /* the task's index in its workflow */
  const char *type, *status;
  bool has_exit_code; /* false: the exit code is stored as none */
  int64_t exit_code;
  int64_t started_ms, ended_ms;
} fc_task_row_t;

/* Rows read by fc_records_jobs_load, oldest first. */
typedef struct {
  fc_job_row_t *rows;
  size_t n;
} fc_job_rows_t;

/* Readies the jobs records for this version: adds what older databases lack
 * (the started_by column, logged). Returns 0, or -EIO with a message for the
 * user in `err`. */
int fc_records_jobs_prepare(fc_records_t *r, char *err, size_t errlen);
/* Saves a job's row, replacing the one with its id. Returns 0 or -EIO. */
int fc_records_job_save(fc_records_t *r, const fc_job_row_t *job);
/* Saves a task's result, replacing the one with its job and index. Returns 0
 * or -EIO. */
int fc_records_task_save(fc_records_t *r, const fc_task_row_t *task);
/* Sets a job's status, reason and end time. Returns 0 (also when there is no
 * such job) or -EIO. */
int fc_records_job_end(fc_records_t *r, const char *id, const char *status, const char *reason, int64_t ended_ms);
/* Reads the newest `limit` jobs created before `before_ms`, into `out`
 * oldest first (by creation time). Returns 0, or -EIO with `out` empty; in
 * both cases release `out` with fc_job_rows_dispose. */
int fc_records_jobs_load(fc_records_t *r, int64_t before_ms, unsigned limit, fc_job_rows_t *out);
void fc_job_rows_dispose(fc_job_rows_t *rows);

#endif
