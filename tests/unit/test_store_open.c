/* store: opening a data directory. Each bad one is refused with a message
 * naming it, a missing one is created, and a second open of a directory is
 * refused while the first holds it (src/store/sqlite.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "store/store.h"

static fc_store_t *try_open(const char *dir, char *err, size_t len) {
  err[0] = '\0';
  return fc_store_sqlite_open(&(fc_store_sqlite_opts_t){.dir = dir}, err, len);
}

static void write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  for (int i = 0; i < 512; i++) fputs(text, fp);
  fclose(fp);
}

/* Each bad data directory is refused with a message naming it; a missing one
 * is created; a second open of one directory is refused while the first
 * holds it. */
static void open_errors(void **state) {
  (void)state;
  char dir[64] = "/tmp/fc-test-store-open-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], err[512];

  snprintf(path, sizeof path, "%s/file", dir);
  write_file(path, "plain text, ");
  assert_null(try_open(path, err, sizeof err)); /* a regular file */
  assert_non_null(strstr(err, "not a directory"));
  assert_non_null(strstr(err, path));
  snprintf(path, sizeof path, "%s/file/sub", dir);
  assert_null(try_open(path, err, sizeof err)); /* under a regular file */
  assert_non_null(strstr(err, "cannot create the data directory"));
  assert_non_null(strstr(err, path));

  snprintf(path, sizeof path, "%s/bad", dir);
  assert_int_equal(mkdir(path, 0700), 0);
  char db[300];
  snprintf(db, sizeof db, "%s/flowcast.db", path);
  write_file(db, "not a database, ");
  assert_null(try_open(path, err, sizeof err));
  assert_non_null(strstr(err, db));
  assert_non_null(strstr(err, "not a database"));

  if (geteuid() != 0) { /* root may write anywhere */
    snprintf(path, sizeof path, "%s/ro", dir);
    assert_int_equal(mkdir(path, 0500), 0);
    assert_null(try_open(path, err, sizeof err));
    assert_non_null(strstr(err, "not writable"));
  }

  snprintf(path, sizeof path, "%s/new/deeper", dir);
  fc_store_t *s = try_open(path, err, sizeof err);
  assert_non_null(s);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);

  assert_null(try_open(path, err, sizeof err));
  assert_non_null(strstr(err, "in use by another flowcast"));
  char pid[32];
  snprintf(pid, sizeof pid, "(pid %d)", (int)getpid());
  assert_non_null(strstr(err, pid));
  fc_store_close(s);
  s = try_open(path, err, sizeof err); /* free again */
  assert_non_null(s);
  fc_store_close(s);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "chmod -R u+rwx %s; rm -rf %s", dir, dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(open_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
