/* store records: users and jobs round trips through store/records.h in a
 * temporary data directory, batches, and the errors of a bad directory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/core.h"
#include "store/records.h"
#include "store/store.h"

typedef struct {
  char dir[64];
  fc_records_t *rec;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/fc-test-records-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  char err[256];
  f->rec = fc_records_open(f->dir, err, sizeof err);
  if (!f->rec) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  fc_records_close(f->rec);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  int rc = system(cmd);
  free(f);
  return rc;
}

/* --- users ------------------------------------------------------------- */

typedef struct {
  char names[8][16];
  bool admin[8];
  int64_t created[8];
  size_t n;
} seen_t;

static void collect(void *ud, const char *name, bool admin, int64_t created_ms) {
  seen_t *s = ud;
  if (s->n == 8) return;
  snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
  s->admin[s->n] = admin;
  s->created[s->n++] = created_ms;
}

static void users_round_trip(void **state) {
  fixture_t *f = *state;
  fc_records_t *r = f->rec;
  assert_string_equal(fc_records_error(r), "");
  assert_int_equal(fc_records_users_count(r), 0);
  assert_int_equal(fc_records_user_add(r, "zoe", "$hash-z", false, 2000), 0);
  assert_int_equal(fc_records_user_add(r, "alice", "$hash-a", true, 1000), 0);
  assert_int_equal(fc_records_user_add(r, "alice", "$other", false, 3000), -EEXIST);
  assert_int_equal(fc_records_users_count(r), 2);

  seen_t seen = {0};
  assert_int_equal(fc_records_users_list(r, collect, &seen), 0);
  assert_int_equal(seen.n, 2);
  assert_string_equal(seen.names[0], "alice"); /* name order */
  assert_true(seen.admin[0]);
  assert_int_equal(seen.created[0], 1000);
  assert_string_equal(seen.names[1], "zoe");
  assert_false(seen.admin[1]);
  assert_int_equal(seen.created[1], 2000);

  char hash[64];
  bool admin = false;
  assert_int_equal(fc_records_user_get(r, "alice", hash, sizeof hash, &admin), 0);
  assert_string_equal(hash, "$hash-a"); /* the refused second add changed nothing */
  assert_true(admin);
  assert_int_equal(fc_records_user_get(r, "nobody", hash, sizeof hash, &admin), -ENOENT);
  assert_int_equal(fc_records_user_get(r, "alice", hash, 7, &admin), -ENAMETOOLONG); /* 7 bytes + NUL */
  assert_int_equal(fc_records_user_get(r, "alice", hash, 8, &admin), 0);

  assert_int_equal(fc_records_user_set_hash(r, "zoe", "$new"), 0);
  assert_int_equal(fc_records_user_get(r, "zoe", hash, sizeof hash, &admin), 0);
  assert_string_equal(hash, "$new");
  assert_false(admin);
  assert_int_equal(fc_records_user_set_hash(r, "nobody", "$x"), -ENOENT);

  assert_int_equal(fc_records_user_delete(r, "zoe"), 0);
  assert_int_equal(fc_records_user_delete(r, "zoe"), -ENOENT);
  assert_int_equal(fc_records_user_get(r, "zoe", hash, sizeof hash, &admin), -ENOENT);
  assert_int_equal(fc_records_users_count(r), 1);
}

static void users_survive_reopen(void **state) {
  fixture_t *f = *state;
  assert_int_equal(fc_records_user_add(f->rec, "bob", "$b", false, 5), 0);
  fc_records_close(f->rec);
  char err[256];
  f->rec = fc_records_open(f->dir, err, sizeof err);
  assert_non_null(f->rec);
  char hash[16];
  bool admin = true;
  assert_int_equal(fc_records_user_get(f->rec, "bob", hash, sizeof hash, &admin), 0);
  assert_string_equal(hash, "$b");
  assert_false(admin);
}

/* --- jobs -------------------------------------------------------------- */

static void assert_rows_equal(const fc_job_row_t *a, const fc_job_row_t *b) {
#define SAME_TEXT(f)                                                                                                   \
  if (!a->f || !b->f) assert_ptr_equal(a->f, b->f);                                                                    \
  else assert_string_equal(a->f, b->f);
  SAME_TEXT(id)
  SAME_TEXT(status)
  SAME_TEXT(reason)
  SAME_TEXT(input)
  SAME_TEXT(started_by)
#undef SAME_TEXT
  assert_int_equal(a->workflow_id, b->workflow_id);
  assert_int_equal(a->created_ms, b->created_ms);
  assert_int_equal(a->started_ms, b->started_ms);
  assert_int_equal(a->ended_ms, b->ended_ms);
  assert_int_equal(a->final_seq, b->final_seq);
}

static void jobs_round_trip(void **state) {
  fixture_t *f = *state;
  fc_records_t *r = f->rec;
  char err[256] = "";
  assert_int_equal(fc_records_jobs_prepare(r, err, sizeof err), 0);
  assert_int_equal(fc_records_jobs_prepare(r, err, sizeof err), 0); /* once is enough */
  const fc_job_row_t full = {
      .id = "j1",
      .workflow_id = 9007199254740993LL,
      .status = "Done",
      .reason = "why \"quoted\"",
      .input = "{\"k\":1}\n\xc3\xa9",
      .started_by = "alice",
      .created_ms = 100,
      .started_ms = 110,
      .ended_ms = 120,
      .final_seq = UINT64_C(1) << 62,
  };
  const fc_job_row_t bare = {.id = "j2", .workflow_id = 3, .status = "Pending", .created_ms = 200};
  assert_int_equal(fc_records_job_save(r, &full), 0);
  assert_int_equal(fc_records_job_save(r, &bare), 0);

  fc_job_rows_t rows;
  assert_int_equal(fc_records_jobs_load(r, 1000, 100, &rows), 0);
  assert_int_equal(rows.n, 2);
  assert_rows_equal(&rows.rows[0], &full); /* oldest first */
  assert_rows_equal(&rows.rows[1], &bare); /* NULLs and zeros come back as they went */
  fc_job_rows_dispose(&rows);
  assert_int_equal(rows.n, 0);

  /* A save replaces the row with its id. */
  fc_job_row_t running = bare;
  running.status = "Running";
  running.started_ms = 210;
  assert_int_equal(fc_records_job_save(r, &running), 0);
  assert_int_equal(fc_records_job_end(r, "j2", "Failed", "stopped", 250), 0);
  assert_int_equal(fc_records_job_end(r, "nope", "Failed", "stopped", 250), 0);
  assert_int_equal(fc_records_jobs_load(r, 1000, 100, &rows), 0);
  assert_int_equal(rows.n, 2);
  fc_job_row_t ended = running;
  ended.status = "Failed", ended.reason = "stopped", ended.ended_ms = 250;
  assert_rows_equal(&rows.rows[1], &ended);
  fc_job_rows_dispose(&rows);

  fc_task_row_t t = {.job_id = "j1",
                     .idx = 0,
                     .type = "exec",
                     .status = "Done",
                     .has_exit_code = true,
                     .exit_code = 3,
                     .started_ms = 110,
                     .ended_ms = 115};
  assert_int_equal(fc_records_task_save(r, &t), 0);
  t.status = "Failed";
  assert_int_equal(fc_records_task_save(r, &t), 0); /* replaces */
  t.idx = 1, t.type = "wait", t.has_exit_code = false;
  assert_int_equal(fc_records_task_save(r, &t), 0);
}

/* The newest `limit` rows created before the cut, returned oldest first. */
static void jobs_load_window(void **state) {
  fixture_t *f = *state;
  fc_records_t *r = f->rec;
  char err[256];
  assert_int_equal(fc_records_jobs_prepare(r, err, sizeof err), 0);
  for (int i = 1; i <= 6; i++) {
    char id[8];
    snprintf(id, sizeof id, "j%d", i);
    fc_job_row_t row = {.id = id, .workflow_id = 1, .status = "Done", .created_ms = 7000 - i * 1000};
    assert_int_equal(fc_records_job_save(r, &row), 0); /* j1 is the newest */
  }
  fc_job_rows_t rows;
  assert_int_equal(fc_records_jobs_load(r, 5500, 3, &rows), 0); /* j1 (6000) is past the cut */
  assert_int_equal(rows.n, 3);
  assert_string_equal(rows.rows[0].id, "j4");
  assert_string_equal(rows.rows[1].id, "j3");
  assert_string_equal(rows.rows[2].id, "j2");
  fc_job_rows_dispose(&rows);
  assert_int_equal(fc_records_jobs_load(r, 0, 10, &rows), 0);
  assert_int_equal(rows.n, 0);
  fc_job_rows_dispose(&rows);
}

static size_t count_jobs(fc_records_t *r) {
  fc_job_rows_t rows;
  assert_int_equal(fc_records_jobs_load(r, INT64_MAX, 1000, &rows), 0);
  size_t n = rows.n;
  fc_job_rows_dispose(&rows);
  return n;
}

static void batches(void **state) {
  fixture_t *f = *state;
  fc_records_t *r = f->rec;
  char err[256];
  assert_int_equal(fc_records_jobs_prepare(r, err, sizeof err), 0);
  assert_int_equal(fc_records_set_durability(r, true), 0);
  assert_int_equal(fc_records_set_durability(r, false), 0);

  /* Committed together. */
  assert_int_equal(fc_records_batch_begin(r), 0);
  fc_job_row_t a = {.id = "a", .workflow_id = 1, .status = "Done", .created_ms = 1};
  fc_job_row_t b = {.id = "b", .workflow_id = 1, .status = "Done", .created_ms = 2};
  assert_int_equal(fc_records_job_save(r, &a), 0);
  assert_int_equal(fc_records_job_save(r, &b), 0);
  assert_int_equal(fc_records_batch_end(r), 0);
  assert_int_equal(count_jobs(r), 2);

  /* A batch never ended is undone when the handle closes. */
  assert_int_equal(fc_records_batch_begin(r), 0);
  fc_job_row_t c = {.id = "c", .workflow_id = 1, .status = "Done", .created_ms = 3};
  assert_int_equal(fc_records_job_save(r, &c), 0);
  fc_records_close(f->rec);
  f->rec = fc_records_open(f->dir, err, sizeof err);
  assert_non_null(f->rec);
  r = f->rec;
  assert_int_equal(count_jobs(r), 2);

  /* Ending a batch that was never begun fails, and says why. */
  assert_int_equal(fc_records_batch_end(r), -EIO);
  assert_string_not_equal(fc_records_error(r), "");
  /* Nested begins: the second fails; the first batch still commits. */
  assert_int_equal(fc_records_batch_begin(r), 0);
  assert_int_equal(fc_records_batch_begin(r), -EIO);
  assert_int_equal(fc_records_job_save(r, &c), 0);
  assert_int_equal(fc_records_batch_end(r), 0);
  assert_int_equal(count_jobs(r), 3);
}

/* --- errors ------------------------------------------------------------ */

static void open_errors(void **state) {
  fixture_t *f = *state;
  char path[128], err[256];

  snprintf(path, sizeof path, "%s/file", f->dir);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fclose(fp);
  err[0] = '\0';
  assert_null(fc_records_open(path, err, sizeof err)); /* a file where the directory should be */
  assert_non_null(strstr(err, "is not a directory"));

  snprintf(path, sizeof path, "%s/junk", f->dir);
  assert_int_equal(mkdir(path, 0700), 0);
  char db[160];
  snprintf(db, sizeof db, "%s/flowcast.db", path);
  fp = fopen(db, "w");
  assert_non_null(fp);
  for (int i = 0; i < 512; i++) fputs("not a database, ", fp);
  fclose(fp);
  err[0] = '\0';
  assert_null(fc_records_open(path, err, sizeof err));
  assert_non_null(strstr(err, "flowcast.db"));
}

static void sqlite_version(void **state) {
  (void)state;
  const char *v = fc_store_sqlite_version();
  assert_non_null(v);
  assert_int_equal(v[0], '3');
  assert_int_equal(v[1], '.');
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(users_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(users_survive_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(jobs_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(jobs_load_window, setup, teardown),
      cmocka_unit_test_setup_teardown(batches, setup, teardown),
      cmocka_unit_test_setup_teardown(open_errors, setup, teardown),
      cmocka_unit_test(sqlite_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
