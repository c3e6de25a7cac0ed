/* The CLI's SSE parser against the WHATWG examples and rules, fed whole and in
 * every split into two reads. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/sseparse.h"

/* Each dispatched event as "type|id|data\n". */
typedef struct {
  fc_buf_t log;
  int stop_after; /* 0: never stop */
  int seen;
} rec_t;

static bool record(void *ud, const fc_sse_event_t *ev) {
  rec_t *r = ud;
  fc_buf_printf(&r->log, "%s|%s|", ev->event, ev->id);
  fc_buf_append(&r->log, ev->data, ev->data_len);
  fc_buf_puts(&r->log, "\n");
  return r->stop_after && ++r->seen >= r->stop_after;
}

/* Parses `in` (n bytes) split at `cut`; returns the log (free it) and the final last id in *last. */
static char *parse_split(const char *in, size_t n, size_t cut, char **last) {
  rec_t r = {0};
  fc_buf_init(&r.log);
  fc_sse_parser_t p;
  fc_sse_parser_init(&p, record, &r, NULL, 0);
  assert_int_equal(fc_sse_feed(&p, in, cut), 0);
  assert_int_equal(fc_sse_feed(&p, in + cut, n - cut), 0);
  *last = strdup(p.last_id);
  fc_sse_parser_dispose(&p);
  fc_buf_puts(&r.log, "");
  return fc_buf_take(&r.log, NULL);
}

/* Checks `in` gives `want` (and last id `want_last`) for every split point. */
static void expect(const char *in, size_t n, const char *want, const char *want_last) {
  for (size_t cut = 0; cut <= n; cut++) {
    char *last;
    char *got = parse_split(in, n, cut, &last);
    if (strcmp(got, want) || strcmp(last, want_last)) {
      fprintf(stderr, "cut %zu: got [%s] last [%s]\nwant [%s] last [%s]\n", cut, got, last, want, want_last);
      fail();
    }
    free(got);
    free(last);
  }
}
#define EXPECT(lit, want, last) expect(lit, sizeof(lit) - 1, want, last)

static void spec_examples(void **state) {
  (void)state;
  /* "data: YHOO / +2 / 10" is one event with three lines. */
  EXPECT("data: YHOO\ndata: +2\ndata: 10\n\n", "message||YHOO\n+2\n10\n", "");
  /* Comments, an id, and a block without data that still moves the last id. */
  EXPECT(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
         "message|1|first event\nmessage||second event\nmessage|| third event\n", "");
  /* Two empty-data events and a trailing incomplete one that is dropped. */
  EXPECT("data\n\ndata\ndata\n\ndata:", "message||\nmessage||\n\n", "");
  /* Space after the colon is optional and only one is removed. */
  EXPECT("data:test\n\ndata: test\n\n", "message||test\nmessage||test\n", "");
}

static void line_endings_and_bom(void **state) {
  (void)state;
  EXPECT("data: a\r\n\r\ndata: b\r\rdata: c\n\n", "message||a\nmessage||b\nmessage||c\n", "");
  EXPECT("\xEF\xBB\xBF"
         "data: x\n\n",
         "message||x\n", "");
  /* Only one BOM is removed: a second one is part of the first line's field name. */
  EXPECT("\xEF\xBB\xBF\xEF\xBB\xBF"
         "data: x\n\n",
         "", "");
}

static void fields(void **state) {
  (void)state;
  EXPECT("event: add\ndata: 1\nid: 7\n\ndata: 2\n\n", "add|7|1\nmessage|7|2\n", "7");
  /* An id-only block moves the last id without an event. */
  EXPECT("id: 9\n\n", "", "9");
  /* An id holding NUL is ignored. */
  EXPECT("id: 3\n\nid: a\0b\ndata: x\n\n", "message|3|x\n", "3");
  /* An empty id resets the last id. */
  EXPECT("id: 3\ndata: a\n\nid\ndata: b\n\n", "message|3|a\nmessage||b\n", "");
  /* Unknown fields are ignored; a name without a colon has an empty value. */
  EXPECT("foo: bar\ndata\n\n", "message||\n", "");
}

static void retry_digits_only(void **state) {
  (void)state;
  fc_sse_parser_t p;
  fc_sse_parser_init(&p, NULL, NULL, "5", 0);
  assert_string_equal(p.last_id, "5");
  assert_int_equal(fc_sse_feed(&p, "retry: 1500\n", 12), 0);
  assert_true(p.retry_set);
  assert_int_equal(p.retry_ms, 1500);
  assert_int_equal(fc_sse_feed(&p, "retry: 15x\nretry: -1\nretry:\nretry: 1 \n", 39), 0);
  assert_int_equal(p.retry_ms, 1500);
  fc_sse_parser_dispose(&p);
}

static void stop_and_limits(void **state) {
  (void)state;
  rec_t r = {.stop_after = 1};
  fc_buf_init(&r.log);
  fc_sse_parser_t p;
  fc_sse_parser_init(&p, record, &r, NULL, 16);
  assert_int_equal(fc_sse_feed(&p, "data: a\n\ndata: b\n\n", 18), 1);
  assert_string_equal(r.log.data, "message||a\n");
  /* A line past the bound fails instead of growing. */
  assert_int_equal(fc_sse_feed(&p, "data: 0123456789abcdef\n", 23), -EMSGSIZE);
  /* A new connection drops the partial line and event but keeps the last id. */
  fc_sse_parser_reset(&p);
  assert_int_equal(fc_sse_feed(&p, "id: 4\ndata: c\n\n", 15), 1);
  assert_string_equal(p.last_id, "4");
  fc_sse_parser_dispose(&p);
  fc_buf_dispose(&r.log);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(spec_examples),     cmocka_unit_test(line_endings_and_bom), cmocka_unit_test(fields),
      cmocka_unit_test(retry_digits_only), cmocka_unit_test(stop_and_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
