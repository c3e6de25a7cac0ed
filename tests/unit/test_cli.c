/* The CLI's shared pieces: the exit status table, channel names, URL escaping,
 * the reconnection backoff and the --json event lines (envelope included). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/internal.h"

static void exit_statuses(void **state) {
  (void)state;
  assert_int_equal(fc_cli_exit_for(200), 0);
  assert_int_equal(fc_cli_exit_for(201), 0);
  assert_int_equal(fc_cli_exit_for(400), 1);
  assert_int_equal(fc_cli_exit_for(401), 3);
  assert_int_equal(fc_cli_exit_for(403), 3);
  assert_int_equal(fc_cli_exit_for(404), 4);
  assert_int_equal(fc_cli_exit_for(409), 1);
  assert_int_equal(fc_cli_exit_for(500), 1);
  assert_int_equal(fc_cli_exit_for(503), 5);
  assert_int_equal(fc_cli_exit_for(FC_HTTP_UNREACHABLE), 5);
  assert_int_equal(fc_cli_exit_for(FC_HTTP_CUT), 5);
  assert_int_equal(fc_cli_exit_for(FC_HTTP_MALFORMED), 5);
}

static void channel_names(void **state) {
  (void)state;
  assert_true(fc_cli_channel_valid("orders.eu"));
  assert_true(fc_cli_channel_valid("a:b-c_d.E9"));
  assert_false(fc_cli_channel_valid(""));
  assert_false(fc_cli_channel_valid("bad channel!"));
  assert_false(fc_cli_channel_valid("a/b"));
  assert_false(fc_cli_channel_valid("bad$chan"));
  char name[130];
  memset(name, 'a', 128);
  name[128] = '\0';
  assert_true(fc_cli_channel_valid(name));
  name[128] = 'a', name[129] = '\0';
  assert_false(fc_cli_channel_valid(name));
}

static void escaping(void **state) {
  (void)state;
  fc_buf_t b;
  fc_buf_init(&b);
  fc_url_escape(&b, "a b/c?d&e=f%~.-_\xc3\xa9");
  assert_string_equal(b.data, "a%20b%2Fc%3Fd%26e%3Df%25~.-_%C3%A9");
  fc_buf_dispose(&b);
}

static void backoff(void **state) {
  (void)state;
  /* Equal jitter: within [d/2, d] for d = base * 2^attempt, capped. */
  for (uint32_t rnd = 0; rnd < 5000; rnd += 7) {
    unsigned d0 = fc_cli_backoff_ms(3000, 0, 30000, rnd * 2654435761u);
    assert_in_range(d0, 1500, 3000);
    unsigned d2 = fc_cli_backoff_ms(3000, 2, 30000, rnd * 2654435761u);
    assert_in_range(d2, 6000, 12000);
    unsigned d9 = fc_cli_backoff_ms(3000, 9, 30000, rnd * 2654435761u);
    assert_in_range(d9, 15000, 30000);
    assert_in_range(fc_cli_backoff_ms(3000, 4000000000u, 30000, rnd), 15000, 30000);
  }
  /* The jitter spreads: not every pick is the same. */
  assert_int_not_equal(fc_cli_backoff_ms(1000, 1, 30000, 1), fc_cli_backoff_ms(1000, 1, 30000, 999));
}

static fc_sse_event_t ev(const char *id, const char *event, const char *data) {
  return (fc_sse_event_t){.id = id, .event = event, .data = data, .data_len = strlen(data)};
}

static void json_lines(void **state) {
  (void)state;
  fc_sse_event_t e = ev("12", "message", "{\"n\":1}");
  char *s = fc__event_json(&e, "orders", false);
  assert_string_equal(s, "{\"channel\":\"orders\",\"id\":\"12\",\"event\":null,\"data\":\"{\\\"n\\\":1}\"}");
  free(s);
  e = ev("13", "tick", "text");
  s = fc__event_json(&e, NULL, false);
  assert_string_equal(s, "{\"id\":\"13\",\"event\":\"tick\",\"data\":\"text\"}");
  free(s);
  e = ev("13", "flowcast.gap", "{\"lost\":2}"); /* a notice: no id of its own */
  s = fc__event_json(&e, "c", false);
  assert_string_equal(s, "{\"channel\":\"c\",\"id\":null,\"event\":\"flowcast.gap\",\"data\":\"{\\\"lost\\\":2}\"}");
  free(s);
}

static void envelopes(void **state) {
  (void)state;
  fc_sse_event_t e = ev("5", "message", "{\"channel\":\"b\",\"data\":{\"n\":1},\"time\":\"2026-12-04T10:00:00.000Z\"}");
  char *s = fc__event_json(&e, NULL, true);
  assert_string_equal(s, "{\"channel\":\"b\",\"id\":\"5\",\"event\":null,\"data\":\"{\\\"n\\\":1}\","
                         "\"time\":\"2026-12-04T10:00:00.000Z\"}");
  free(s);
  e = ev("6", "message", "{\"channel\":\"b\",\"data\":\"plain\"}");
  s = fc__event_json(&e, "a", true);
  assert_string_equal(s, "{\"channel\":\"b\",\"id\":\"6\",\"event\":null,\"data\":\"plain\"}");
  free(s);
  /* Not an envelope: printed as it came. */
  e = ev("7", "message", "{\"n\":1}");
  s = fc__event_json(&e, "a", true);
  assert_string_equal(s, "{\"channel\":\"a\",\"id\":\"7\",\"event\":null,\"data\":\"{\\\"n\\\":1}\"}");
  free(s);
  /* Without envelope mode an envelope-shaped payload is just data. */
  e = ev("8", "message", "{\"channel\":\"b\",\"data\":1}");
  s = fc__event_json(&e, "a", false);
  assert_string_equal(
      s, "{\"channel\":\"a\",\"id\":\"8\",\"event\":null,\"data\":\"{\\\"channel\\\":\\\"b\\\",\\\"data\\\":1}\"}");
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exit_statuses), cmocka_unit_test(channel_names), cmocka_unit_test(escaping),
      cmocka_unit_test(backoff),       cmocka_unit_test(json_lines),    cmocka_unit_test(envelopes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
