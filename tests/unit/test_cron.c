/* Cron parsing and next-run times, with the clock given as a parameter. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "jobs/cron.h"

/* Seconds since the epoch for a UTC date and time. */
static int64_t at(int y, int mo, int d, int h, int mi) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
  return (int64_t)timegm(&tm);
}

static int64_t next(const char *expr, int64_t after) {
  fc_cron_t c;
  char why[200];
  assert_int_equal(fc_cron_parse(expr, &c, why, sizeof why), 0);
  return fc_cron_next(&c, after);
}

static void every_five_minutes(void **state) {
  (void)state;
  assert_int_equal(next("*/5 * * * *", at(2026, 11, 23, 10, 2)), at(2026, 11, 23, 10, 5));
  /* Strictly after: at 10:05:00 the next is 10:10. */
  assert_int_equal(next("*/5 * * * *", at(2026, 11, 23, 10, 5)), at(2026, 11, 23, 10, 10));
  assert_int_equal(next("*/5 * * * *", at(2026, 11, 23, 23, 58)), at(2026, 11, 24, 0, 0));
}

static void fixed_times_and_ranges(void **state) {
  (void)state;
  assert_int_equal(next("30 9 * * *", at(2026, 11, 23, 10, 0)), at(2026, 11, 24, 9, 30));
  assert_int_equal(next("0 9-17/4 * * *", at(2026, 11, 23, 10, 0)), at(2026, 11, 23, 13, 0));
  assert_int_equal(next("0 0 1 1 *", at(2026, 11, 23, 10, 0)), at(2027, 1, 1, 0, 0));
  assert_int_equal(next("15,45 * * * *", at(2026, 11, 23, 10, 20)), at(2026, 11, 23, 10, 45));
}

static void weekdays(void **state) {
  (void)state;
  /* 2026-11-23 is a Monday. Friday 17:00: */
  assert_int_equal(next("0 17 * * 5", at(2026, 11, 23, 10, 0)), at(2026, 11, 27, 17, 0));
  /* 0 and 7 are both Sunday. */
  assert_int_equal(next("0 0 * * 7", at(2026, 11, 23, 10, 0)), at(2026, 11, 29, 0, 0));
  assert_int_equal(next("0 0 * * 0", at(2026, 11, 23, 10, 0)), at(2026, 11, 29, 0, 0));
  /* Both day fields restricted: either matches (the 1st, or a Friday). */
  assert_int_equal(next("0 0 1 * 5", at(2026, 11, 23, 10, 0)), at(2026, 11, 27, 0, 0));
  assert_int_equal(next("0 0 1 * 5", at(2026, 11, 28, 0, 0)), at(2026, 12, 1, 0, 0));
}

static void leap_day_and_never(void **state) {
  (void)state;
  assert_int_equal(next("0 0 29 2 *", at(2026, 11, 23, 10, 0)), at(2028, 2, 29, 0, 0));
  assert_int_equal(next("0 0 30 2 *", at(2026, 11, 23, 10, 0)), -ENOENT);
}

static void bad_expressions(void **state) {
  (void)state;
  const char *bad[] = {"",           "* * * *",   "* * * * * *", "60 * * * *",  "* 24 * * *", "* * 0 * *",
                       "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *",  "1,,2 * * * *x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    fc_cron_t c;
    char why[200] = "";
    assert_int_equal(fc_cron_parse(bad[i], &c, why, sizeof why), -EINVAL);
    assert_true(strlen(why) > 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_five_minutes), cmocka_unit_test(fixed_times_and_ranges), cmocka_unit_test(weekdays),
      cmocka_unit_test(leap_day_and_never), cmocka_unit_test(bad_expressions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
