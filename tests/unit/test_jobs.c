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

static void exec_sql(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) fail_msg("%s: %s", sql, err);
}

static char *text_of(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  char *out = NULL;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    out = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return out;
}

static void read_rows_fails_stale_jobs_only(void **state) {
  (void)state;
  char dir[] = "/tmp/fc-test-jobs-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char err[256];
  sqlite3 *db = fc_store_open_db(dir, err, sizeof err);
  assert_non_null(db);
  exec_sql(db, "ALTER TABLE jobs ADD COLUMN started_by TEXT");
  exec_sql(db, "INSERT INTO jobs(id, workflow_id, status, created_ms, started_by) VALUES"
               "('a', 1, 'Running', 1000, 'alice'), ('b', 1, 'Pending', 2000, NULL),"
               "('c', 1, 'Done', 3000, 'bob'), ('d', 2, 'Waiting', 4000, 'carol'),"
               "('new', 1, 'Pending', 9000, 'dave')");
  fc__db_rows_t *r = fc__db_rows_new(dir, 5000); /* 'new' was made after this start began */
  fc__db_read_rows(r);
  fc__db_rows_free(r);
  char *s;
  const char *expect[][2] = {{"a", "Failed"}, {"b", "Failed"}, {"c", "Done"}, {"d", "Failed"}, {"new", "Pending"}};
  for (size_t i = 0; i < 5; i++) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT status FROM jobs WHERE id='%s'", expect[i][0]);
    s = text_of(db, sql);
    assert_string_equal(s, expect[i][1]);
    free(s);
  }
  s = text_of(db, "SELECT reason FROM jobs WHERE id='d'");
  assert_string_equal(s, "the server stopped while the job was Waiting");
  free(s);
  s = text_of(db, "SELECT started_by FROM jobs WHERE id='a'");
  assert_string_equal(s, "alice");
  free(s);
  s = text_of(db, "SELECT count(*) FROM jobs WHERE ended_ms IS NOT NULL");
  assert_string_equal(s, "3");
  free(s);
  sqlite3_close(db);
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
