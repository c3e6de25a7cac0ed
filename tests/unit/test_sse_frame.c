/* SSE framing and UTF-8 checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "hub/hub.h"

static void expect_frame(uint64_t id, const char *name, const char *data, const char *want) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc_sse_frame_build(&b, id, (fc_str_t){name, strlen(name)}, (fc_str_t){data, strlen(data)});
  assert_string_equal(b.data, want);
  fc_buf_dispose(&b);
}

static void single_line(void **state) {
  (void)state;
  expect_frame(7, "", "{\"a\":1}", "id: 7\ndata: {\"a\":1}\n\n");
}

static void named_event(void **state) {
  (void)state;
  expect_frame(8, "progress", "50", "id: 8\nevent: progress\ndata: 50\n\n");
}

static void multi_line_lf(void **state) {
  (void)state;
  expect_frame(1, "", "a\nb\nc", "id: 1\ndata: a\ndata: b\ndata: c\n\n");
}

static void crlf_and_cr_split_lines(void **state) {
  (void)state;
  /* CRLF is one terminator; a lone CR is one too. None may leak into a line. */
  expect_frame(2, "", "a\r\nb\rc", "id: 2\ndata: a\ndata: b\ndata: c\n\n");
  expect_frame(3, "", "x\r\n\r\ny", "id: 3\ndata: x\ndata: \ndata: y\n\n");
}

static void trailing_newline_keeps_empty_line(void **state) {
  (void)state;
  /* The client joins data lines with LF, so "a\n" must come back as "a\n". */
  expect_frame(4, "", "a\n", "id: 4\ndata: a\ndata: \n\n");
}

static void empty_data(void **state) {
  (void)state;
  expect_frame(5, "", "", "id: 5\ndata: \n\n");
}

static void utf8_passes_through(void **state) {
  (void)state;
  expect_frame(6, "", "h\xc3\xa9llo \xf0\x9f\x98\x80", "id: 6\ndata: h\xc3\xa9llo \xf0\x9f\x98\x80\n\n");
}

static void utf8_validation(void **state) {
  (void)state;
  const char *good[] = {"", "ascii", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) assert_true(fc_utf8_valid(good[i], strlen(good[i])));
  const char *bad[] = {
      "\xff",             /* never valid */
      "\xc3",             /* truncated */
      "\xc0\xaf",         /* overlong '/' */
      "\xe0\x80\xaf",     /* overlong */
      "\xed\xa0\x80",     /* surrogate U+D800 */
      "\xf4\x90\x80\x80", /* above U+10FFFF */
      "\x80",             /* lone continuation */
      "\xe2\x82",         /* truncated 3-byte */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_false(fc_utf8_valid(bad[i], strlen(bad[i])));
  assert_false(fc_utf8_valid("a\0b", 3)); /* NUL is refused */
}

static void names(void **state) {
  (void)state;
  assert_true(fc_channel_name_valid("orders.eu-1:new_x", 17));
  assert_false(fc_channel_name_valid("", 0));
  assert_false(fc_channel_name_valid("a b", 3));
  assert_false(fc_channel_name_valid("a/b", 3));
  char long_name[130];
  memset(long_name, 'a', sizeof long_name);
  assert_true(fc_channel_name_valid(long_name, 128));
  assert_false(fc_channel_name_valid(long_name, 129));
  assert_false(fc_event_name_valid("bad\nname", 8));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(single_line),
      cmocka_unit_test(named_event),
      cmocka_unit_test(multi_line_lf),
      cmocka_unit_test(crlf_and_cr_split_lines),
      cmocka_unit_test(trailing_newline_keeps_empty_line),
      cmocka_unit_test(empty_data),
      cmocka_unit_test(utf8_passes_through),
      cmocka_unit_test(utf8_validation),
      cmocka_unit_test(names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
