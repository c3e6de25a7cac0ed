/* store, cluster mode: the --redis URL and the bus messages the commit
 * script writes (src/store/redis_conf.c, redis_read.c, redis_lua.h). No Redis
 * needed: these are the parsers; the e2e cluster tests run a real one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store/redis.h"

static void url_ok(const char *url, const char *host, int port, unsigned db, const char *user, const char *pw) {
  fc__redis_url_t u;
  char err[256] = "";
  assert_int_equal(fc__redis_url_parse(url, &u, err, sizeof err), 0);
  assert_string_equal(u.host, host);
  assert_int_equal(u.port, port);
  assert_int_equal(u.db, db);
  assert_string_equal(u.user, user);
  assert_string_equal(u.password, pw);
}

static void url_bad(const char *url, const char *says) {
  fc__redis_url_t u;
  char err[256] = "";
  assert_int_equal(fc__redis_url_parse(url, &u, err, sizeof err), -EINVAL);
  if (!strstr(err, says)) fail_msg("'%s': expected '%s' in: %s", url, says, err);
}

static void urls(void **state) {
  (void)state;
  url_ok("redis://127.0.0.1", "127.0.0.1", 6379, 0, "", "");
  url_ok("redis://cache.internal:6380/3", "cache.internal", 6380, 3, "", "");
  url_ok("redis://:s3cret@10.0.0.5:6379/0", "10.0.0.5", 6379, 0, "", "s3cret");
  url_ok("redis://app:p%40ss%3Aw@h:1/", "h", 1, 0, "app", "p@ss:w"); /* percent-encoded */
  url_ok("redis://pw-only@h", "h", 6379, 0, "", "pw-only");
  url_bad("http://127.0.0.1:6379", "not a redis:// URL");
  url_bad("rediss://127.0.0.1:6379", "TLS");
  url_bad("redis://127.0.0.1:notaport", "bad port");
  url_bad("redis://127.0.0.1:0", "bad port");
  url_bad("redis://127.0.0.1:65536", "bad port");
  url_bad("redis://:6379", "no host");
  url_bad("redis://h/x", "bad database");
  url_bad("redis://:bad%zz@h", "malformed");
}

/* What the append script publishes for two events (see redis_lua.h). */
static void bus_events(void **state) {
  (void)state;
  static const char msg[] = "E 41 7 1700000000123 2 6 orders"
                            " 0 7 0 1 {\"a\":1}"
                            " 4 5 4 0 paidhellocn-1";
  fc_bus_msg_t m;
  fc_store_event_t *evs = NULL;
  size_t cap = 0;
  assert_int_equal(fc__redis_parse_bus(msg, sizeof msg - 1, &m, &evs, &cap), 0);
  assert_int_equal(m.kind, FC_BUS_EVENTS);
  assert_int_equal(m.channel.len, 6);
  assert_memory_equal(m.channel.base, "orders", 6);
  assert_int_equal(m.n, 2);
  assert_int_equal(m.events[0].seq, 41);
  assert_int_equal(m.events[1].seq, 42);
  assert_int_equal(m.events[0].n, 7);
  assert_int_equal(m.events[1].n, 8);
  assert_int_equal(m.events[1].time_ms, 1700000000123);
  assert_int_equal(m.events[0].name.len, 0);
  assert_memory_equal(m.events[0].data.base, "{\"a\":1}", 7);
  assert_true(m.events[0].is_json);
  assert_memory_equal(m.events[1].name.base, "paid", 4);
  assert_memory_equal(m.events[1].data.base, "hello", 5);
  assert_memory_equal(m.events[1].from.base, "cn-1", 4);
  assert_false(m.events[1].is_json);
  free(evs);
}

static void bus_purge_and_garbage(void **state) {
  (void)state;
  fc_bus_msg_t m;
  fc_store_event_t *evs = NULL;
  size_t cap = 0;
  static const char purge[] = "P 99 6 orders";
  assert_int_equal(fc__redis_parse_bus(purge, sizeof purge - 1, &m, &evs, &cap), 0);
  assert_int_equal(m.kind, FC_BUS_PURGE);
  assert_int_equal(m.upto, 99);
  assert_memory_equal(m.channel.base, "orders", 6);
  /* Anything flowcast did not write is refused, never read past its end. */
  static const char *bad[] = {
      "",
      "X 1 1 1 1 1 a 0 0 0 0 ",
      "E 1 1 1 1 6 orders",                   /* an event announced, none there */
      "E 1 1 1 1 6 orders 0 9 0 0 short",     /* data shorter than said */
      "E 1 1 1 0 6 orders",                   /* no events */
      "E 1 1 1 1 60 orders 0 0 0 0 ",         /* the channel runs past the end */
      "E 1 1 1 1 6 orders 0 1 0 0 xtrailing", /* bytes after the last event */
      "P x 6 orders",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (fc__redis_parse_bus(bad[i], strlen(bad[i]), &m, &evs, &cap) != -EINVAL) fail_msg("accepted: '%s'", bad[i]);
  free(evs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(urls),
      cmocka_unit_test(bus_events),
      cmocka_unit_test(bus_purge_and_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
