/* Event id parsing (Last-Event-ID, ?after=). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "sse/sse.h"

static int parse(const char *s, uint64_t *out) { return fc_sse_parse_id(s, strlen(s), out); }

static void valid_ids(void **state) {
  (void)state;
  uint64_t v = 99;
  assert_int_equal(parse("0", &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(parse("42", &v), 0);
  assert_int_equal(v, 42);
  assert_int_equal(parse("0042", &v), 0);
  assert_int_equal(v, 42);
  assert_int_equal(parse("18446744073709551615", &v), 0);
  assert_true(v == UINT64_MAX);
}

static void malformed_ids(void **state) {
  (void)state;
  const char *bad[] = {"",
                       "-1",
                       "+1",
                       " 1",
                       "1 ",
                       "1a",
                       "0x10",
                       "1.5",
                       "abc",
                       "18446744073709551616", /* overflow by one */
                       "99999999999999999999", /* overflow, 20 digits */
                       "123456789012345678901" /* 21 digits */};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    uint64_t v = 7;
    assert_int_not_equal(parse(bad[i], &v), 0);
    assert_int_equal(v, 7); /* untouched on error */
  }
}

static void embedded_nul(void **state) {
  (void)state;
  uint64_t v;
  assert_int_not_equal(fc_sse_parse_id("12\0"
                                       "3",
                                       4, &v),
                       0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(valid_ids),
      cmocka_unit_test(malformed_ids),
      cmocka_unit_test(embedded_nul),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
