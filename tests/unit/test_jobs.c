/* Jobs: the run right over workflow ids, and the start-up read of job rows
 * (unfinished jobs of a dead server become Failed, jobs made since are not
 * touched). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "jobs/internal.h"

static void run_patterns(void **state) {
  (void)state;
  char *pats[] = {"41", "5*"};
  fc_jobs_actor_t a = {.sub = "alice", .run = pats, .nrun = 2};
  assert_true(fc_jobs_may_run(&a, 41));
  assert_false(fc_jobs_may_run(&a, 410));
  assert_false(fc_jobs_may_run(&a, 4));
  assert_true(fc_jobs_may_run(&a, 5));
  assert_true(fc_jobs_may_run(&a, 5123));
  assert_false(fc_jobs_may_run(&a, 15));
  fc_jobs_actor_t none = {.sub = "svc"};
  assert_false(fc_jobs_may_run(&none, 41));
  char *star[] = {"*"};
  fc_jobs_actor_t any = {.run = star, .nrun = 1};
  assert_true(fc_jobs_may_run(&any, 0));
  assert_true(fc_jobs_may_run(&any, 9007199254740993LL));
  fc_jobs_actor_t admin = {.all = true};
  assert_true(fc_jobs_may_run(&admin, 7));
}

/* The row of `id` in `rows`, or a failure. */
static const fc_job_row_t *row_of(const fc_job_rows_t *rows, const char *id) {
  for (size_t i = 0; i < rows->n; i++)
    if (!strcmp(rows->rows[i].id, id)) return &rows->rows[i];
  fail_msg("no row %s", id);
  return NULL;
}

static void read_rows_fails_stale_jobs_only(void **state) {
  (void)state;
  char dir[] = "/tmp/fc-test-jobs-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char err[256];
  fc_records_t *rec = fc_records_open(dir, err, sizeof err);
  assert_non_null(rec);
  assert_int_equal(fc_records_jobs_prepare(rec, err, sizeof err), 0);
  const fc_job_row_t in[] = {
      {.id = "a", .workflow_id = 1, .status = "Running", .created_ms = 1000, .started_by = "alice"},
      {.id = "b", .workflow_id = 1, .status = "Pending", .created_ms = 2000},
      {.id = "c", .workflow_id = 1, .status = "Done", .created_ms = 3000, .started_by = "bob"},
      {.id = "d", .workflow_id = 2, .status = "Waiting", .created_ms = 4000, .started_by = "carol"},
      {.id = "new", .workflow_id = 1, .status = "Pending", .created_ms = 9000, .started_by = "dave"},
  };
  for (size_t i = 0; i < FC_ARRAY_LEN(in); i++) assert_int_equal(fc_records_job_save(rec, &in[i]), 0);
  fc__db_rows_t *r = fc__db_rows_new(dir, 5000); /* 'new' was made after this start began */
  fc__db_read_rows(r);
  fc__db_rows_free(r);
  fc_job_rows_t rows;
  assert_int_equal(fc_records_jobs_load(rec, 10000, 100, &rows), 0);
  assert_int_equal(rows.n, 5);
  const char *expect[][2] = {{"a", "Failed"}, {"b", "Failed"}, {"c", "Done"}, {"d", "Failed"}, {"new", "Pending"}};
  size_t ended = 0;
  for (size_t i = 0; i < 5; i++) {
    assert_string_equal(row_of(&rows, expect[i][0])->status, expect[i][1]);
    ended += row_of(&rows, expect[i][0])->ended_ms != 0;
  }
  assert_int_equal(ended, 3);
  assert_string_equal(row_of(&rows, "d")->reason, "the server stopped while the job was Waiting");
  assert_string_equal(row_of(&rows, "a")->started_by, "alice");
  fc_job_rows_dispose(&rows);
  fc_records_close(rec);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(run_patterns),
      cmocka_unit_test(read_rows_fails_stale_jobs_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
