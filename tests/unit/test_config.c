/* config precedence: defaults < config file < FLOWCAST_* environment <
 * flags, as src/config/config.c applies them; which file is read; and how
 * each source's errors name it. Every test runs in an empty temporary
 * directory with no FLOWCAST_* variable set. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config/config.h"

extern char **environ;

typedef struct {
  char dir[64];
  char old_cwd[4096];
  fc_config_t cfg;
  char err[512];
} fixture_t;

static void clear_flowcast_env(void) {
  for (bool again = true; again;) {
    again = false;
    for (char **e = environ; *e; e++) {
      if (strncmp(*e, "FLOWCAST_", 9)) continue;
      char name[128];
      size_t n = strcspn(*e, "=");
      snprintf(name, sizeof name, "%.*s", (int)n, *e);
      unsetenv(name);
      again = true; /* environ changed under us: start over */
      break;
    }
  }
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/fc-test-config-XXXXXX");
  if (!mkdtemp(f->dir) || !getcwd(f->old_cwd, sizeof f->old_cwd) || chdir(f->dir) < 0) return -1;
  clear_flowcast_env();
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  fc_config_dispose(&f->cfg);
  clear_flowcast_env();
  int rc = chdir(f->old_cwd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  rc |= system(cmd);
  free(f);
  return rc;
}

static void write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

/* Loads with `argv` (NULL-terminated); returns fc_config_load's result. */
static int load(fixture_t *f, const char *const *argv) {
  int argc = 0;
  while (argv && argv[argc]) argc++;
  fc_config_dispose(&f->cfg);
  f->err[0] = '\0';
  return fc_config_load(&f->cfg, argc, (char **)argv, f->err, sizeof f->err);
}

static void defaults(void **state) {
  fixture_t *f = *state;
  assert_int_equal(load(f, NULL), 0);
  assert_string_equal(f->cfg.listen, "0.0.0.0:8000");
  assert_string_equal(f->cfg.host, "0.0.0.0");
  assert_int_equal(f->cfg.port, 8000);
  assert_string_equal(f->cfg.data_dir, "./data");
  assert_int_equal(f->cfg.retention, 100);
  assert_int_equal(f->cfg.max_body, 1024 * 1024);
  assert_true(f->cfg.io_uring);
  assert_false(f->cfg.open);
  assert_string_equal(f->cfg.storage, "sqlite");
  assert_string_equal(f->cfg.config_file, "flowcast.conf");
  assert_true(f->cfg.threads >= 1); /* 0 means the CPU count */
  assert_int_equal(f->cfg.nrules, 0);
  assert_null(f->cfg.cors_list[0]);
}

/* Each source overrides the one before it, option by option. */
static void each_source_beats_the_one_before(void **state) {
  fixture_t *f = *state;
  write_file("flowcast.conf", "# comment\n"
                              "retention = 7\n"
                              "keepalive = 21\n"
                              "log-level = \"warn\"\n"
                              "max-body = 64k\n");
  assert_int_equal(load(f, NULL), 0);
  assert_int_equal(f->cfg.retention, 7);
  assert_int_equal(f->cfg.keepalive_s, 21);
  assert_string_equal(f->cfg.log_level, "warn"); /* quotes stripped */
  assert_int_equal(f->cfg.max_body, 64 * 1024);

  setenv("FLOWCAST_RETENTION", "8", 1);
  setenv("FLOWCAST_LOG_LEVEL", "error", 1); /* dashes as underscores */
  assert_int_equal(load(f, NULL), 0);
  assert_int_equal(f->cfg.retention, 8);
  assert_string_equal(f->cfg.log_level, "error");
  assert_int_equal(f->cfg.keepalive_s, 21); /* the file's, no variable for it */

  const char *argv[] = {"--retention", "9", "--log-level=debug", NULL};
  assert_int_equal(load(f, argv), 0);
  assert_int_equal(f->cfg.retention, 9);
  assert_string_equal(f->cfg.log_level, "debug");
  assert_int_equal(f->cfg.keepalive_s, 21);
  assert_int_equal(f->cfg.max_body, 64 * 1024);
  assert_int_equal(f->cfg.port, 8000); /* no source set it: the default */
}

/* Within the flags, the last one wins; a bare boolean flag means true. */
static void flags_last_wins_and_booleans(void **state) {
  fixture_t *f = *state;
  write_file("flowcast.conf", "open = true\nio-uring = off\n");
  setenv("FLOWCAST_CORS_CREDENTIALS", "yes", 1);
  setenv("FLOWCAST_CORS_ORIGINS", "https://a.example, https://b.example", 1);
  const char *argv[] = {"--retention=1", "--retention", "2", "--open=false", "--io-uring", NULL};
  assert_int_equal(load(f, argv), 0);
  assert_int_equal(f->cfg.retention, 2);
  assert_false(f->cfg.open);
  assert_true(f->cfg.io_uring);
  assert_true(f->cfg.cors_credentials);
  assert_string_equal(f->cfg.cors_list[0], "https://a.example");
  assert_string_equal(f->cfg.cors_list[1], "https://b.example");
  assert_null(f->cfg.cors_list[2]);
}

/* An explicit file: --config beats FLOWCAST_CONFIG, which beats
 * ./flowcast.conf; an explicit file must exist, the default need not. */
static void which_file(void **state) {
  fixture_t *f = *state;
  write_file("flowcast.conf", "retention = 1\n");
  write_file("env.conf", "retention = 2\n");
  write_file("flag.conf", "retention = 3\n");
  setenv("FLOWCAST_CONFIG", "env.conf", 1);
  assert_int_equal(load(f, NULL), 0);
  assert_int_equal(f->cfg.retention, 2);
  assert_string_equal(f->cfg.config_file, "env.conf");

  const char *flag[] = {"--config", "flag.conf", NULL};
  assert_int_equal(load(f, flag), 0);
  assert_int_equal(f->cfg.retention, 3);
  const char *flag_eq[] = {"--config=flag.conf", NULL};
  assert_int_equal(load(f, flag_eq), 0);
  assert_int_equal(f->cfg.retention, 3);

  unsetenv("FLOWCAST_CONFIG");
  assert_int_equal(load(f, NULL), 0);
  assert_int_equal(f->cfg.retention, 1);

  const char *missing[] = {"--config", "missing.conf", NULL};
  assert_int_equal(load(f, missing), -ENOENT);
  assert_non_null(strstr(f->err, "cannot read config file missing.conf"));
  setenv("FLOWCAST_CONFIG", "missing.conf", 1);
  assert_int_equal(load(f, NULL), -ENOENT);
  unsetenv("FLOWCAST_CONFIG");
  assert_int_equal(unlink("flowcast.conf"), 0);
  assert_int_equal(load(f, NULL), 0); /* no default file: defaults */
  assert_int_equal(f->cfg.retention, 100);
}

/* Per-pattern rules come from the file only. A rule without a count takes
 * the final --retention, whichever source set it. */
static void rules_take_the_final_retention(void **state) {
  fixture_t *f = *state;
  write_file("flowcast.conf", "retention = 5\n"
                              "retention:orders.* = 1000\n"
                              "max-age:logs.* = 60\n");
  const char *argv[] = {"--retention", "50", NULL};
  assert_int_equal(load(f, argv), 0);
  assert_int_equal(f->cfg.nrules, 2);
  assert_string_equal(f->cfg.rules[0].pattern, "orders.*");
  assert_int_equal(f->cfg.rules[0].count, 1000);
  assert_int_equal(f->cfg.rules[0].max_age_s, 0);
  assert_string_equal(f->cfg.rules[1].pattern, "logs.*");
  assert_int_equal(f->cfg.rules[1].count, 50);
  assert_int_equal(f->cfg.rules[1].max_age_s, 60);
}

/* Each source's error names where the bad value came from. The sources are
 * read in order and the first error stops the load: a bad value in the file
 * or the environment fails even when a flag would override it. */
static void errors_name_their_source(void **state) {
  fixture_t *f = *state;
  write_file("flowcast.conf", "retention = 5\nretention = many\n");
  const char *fix[] = {"--retention", "9", NULL};
  assert_int_equal(load(f, fix), -EINVAL);
  assert_string_equal(f->err, "flowcast.conf:2: retention wants a whole number, got 'many'");

  write_file("flowcast.conf", "nonsense = 1\n");
  assert_int_equal(load(f, NULL), -EINVAL);
  assert_string_equal(f->err, "flowcast.conf:1: unknown option 'nonsense'");

  write_file("flowcast.conf", "just words\n");
  assert_int_equal(load(f, NULL), -EINVAL);
  assert_string_equal(f->err, "flowcast.conf:1: expected `name = value`");

  write_file("flowcast.conf", "");
  setenv("FLOWCAST_OPEN", "maybe", 1);
  const char *fix_open[] = {"--open=true", NULL};
  assert_int_equal(load(f, fix_open), -EINVAL);
  assert_string_equal(f->err, "FLOWCAST_OPEN: open wants true or false, got 'maybe'");
  unsetenv("FLOWCAST_OPEN");

  const char *bad_flag[] = {"--max-body", "lots", NULL};
  assert_int_equal(load(f, bad_flag), -EINVAL);
  assert_string_equal(f->err, "--max-body: max-body wants a size like 1048576, 64k or 1M, got 'lots'");
  const char *unknown[] = {"--nope", NULL};
  assert_int_equal(load(f, unknown), -EINVAL);
  assert_string_equal(f->err, "unknown option '--nope' (see flowcast serve --help)");
  const char *no_value[] = {"--retention", NULL};
  assert_int_equal(load(f, no_value), -EINVAL);
  assert_string_equal(f->err, "option --retention needs a value");
  const char *stray[] = {"serve", NULL};
  assert_int_equal(load(f, stray), -EINVAL);
  assert_string_equal(f->err, "unexpected argument 'serve' (see flowcast serve --help)");
}

/* Values are checked once every source is applied: a flag may repair what
 * the file set badly, as long as each value parses. */
static void checks_run_on_the_final_values(void **state) {
  fixture_t *f = *state;
  write_file("flowcast.conf", "storage = disk\nlisten = nowhere\n");
  assert_int_equal(load(f, NULL), -EINVAL);
  assert_non_null(strstr(f->err, "listen: expected HOST:PORT"));
  setenv("FLOWCAST_LISTEN", "127.0.0.1:9000", 1);
  assert_int_equal(load(f, NULL), -EINVAL);
  assert_string_equal(f->err, "storage: expected sqlite or memory, got 'disk'");
  const char *argv[] = {"--storage", "memory", NULL};
  assert_int_equal(load(f, argv), 0);
  assert_string_equal(f->cfg.host, "127.0.0.1");
  assert_int_equal(f->cfg.port, 9000);
  assert_string_equal(f->cfg.storage, "memory");
}

static void help_is_reported(void **state) {
  fixture_t *f = *state;
  const char *argv[] = {"--retention", "3", "--help", "--nope", NULL};
  assert_int_equal(load(f, argv), 0);
  assert_true(f->cfg.help);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(each_source_beats_the_one_before, setup, teardown),
      cmocka_unit_test_setup_teardown(flags_last_wins_and_booleans, setup, teardown),
      cmocka_unit_test_setup_teardown(which_file, setup, teardown),
      cmocka_unit_test_setup_teardown(rules_take_the_final_retention, setup, teardown),
      cmocka_unit_test_setup_teardown(errors_name_their_source, setup, teardown),
      cmocka_unit_test_setup_teardown(checks_run_on_the_final_values, setup, teardown),
      cmocka_unit_test_setup_teardown(help_is_reported, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
