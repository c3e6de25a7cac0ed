/* Connection caps: the per-address table, its keys, the derived global cap
 * and the log rate limit (src/net/peers.c, src/net/accept.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "net/internal.h"

static void key4(const char *ip, uint8_t key[16]) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, ip, &a.sin_addr);
  fc__peer_key((struct sockaddr *)&a, key);
}

static void key6(const char *ip, uint8_t key[16]) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6};
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  fc__peer_key((struct sockaddr *)&a, key);
}

static void per_address_limit(void **state) {
  (void)state;
  fc__peers_t p;
  fc__peers_init(&p, 3);
  uint8_t a[16], b[16];
  key4("127.0.0.1", a);
  key4("127.0.0.2", b);
  fc__peer_t *taken[3];
  for (int i = 0; i < 3; i++) assert_non_null(taken[i] = fc__peers_take(&p, a));
  assert_null(fc__peers_take(&p, a)); /* the fourth from one address */
  assert_int_equal(fc__peers_count(&p, a), 3);
  fc__peer_t *other = fc__peers_take(&p, b); /* another address has its own count */
  assert_non_null(other);
  assert_int_equal(p.npeers, 2);
  fc__peers_release(&p, taken[0]);
  assert_int_equal(fc__peers_count(&p, a), 2);
  assert_non_null(taken[0] = fc__peers_take(&p, a)); /* a freed slot is reusable */
  for (int i = 0; i < 3; i++) fc__peers_release(&p, taken[i]);
  fc__peers_release(&p, other);
  assert_int_equal(p.npeers, 0); /* entries go at zero: nothing grows with addresses seen */
  assert_int_equal(fc__peers_count(&p, a), 0);
  fc__peers_dispose(&p);
}

static void many_addresses(void **state) {
  (void)state;
  fc__peers_t p;
  fc__peers_init(&p, 1);
  enum { N = 10000 };
  static fc__peer_t *e[N];
  for (int i = 0; i < N; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
    uint8_t k[16];
    key4(ip, k);
    assert_non_null(e[i] = fc__peers_take(&p, k));
    assert_null(fc__peers_take(&p, k));
  }
  assert_int_equal(p.npeers, N);
  for (int i = N - 1; i >= 0; i -= 2) fc__peers_release(&p, e[i]);
  assert_int_equal(p.npeers, N / 2);
  fc__peers_dispose(&p); /* frees what is left */
}

static void keys(void **state) {
  (void)state;
  uint8_t a[16], b[16];
  key6("2001:db8:1:2::1", a);
  key6("2001:db8:1:2:ffff::9", b);
  assert_memory_equal(a, b, 16); /* one /64, one address */
  key6("2001:db8:1:3::1", b);
  assert_memory_not_equal(a, b, 16);
  key4("192.0.2.7", a);
  key6("::ffff:192.0.2.7", b); /* v4-mapped counts as the IPv4 address */
  assert_memory_equal(a, b, 16);
  key6("::", b);
  assert_memory_not_equal(a, b, 16);
}

static void derived_cap(void **state) {
  (void)state;
  /* 20,000 descriptors, the default 16 jobs (reserve 64 + 4 x 16), 2 loops. */
  assert_int_equal(fc__net_derive_max(20000, 128, 2), 20000 - 128 - 2 * FC__LOOP_FDS - FC__PROCESS_FDS);
  assert_int_equal(fc__net_derive_max(1024, 128, 2), 1024 - 160);
  assert_true(fc__net_derive_max(256, 128, 2) < 256);
  assert_true(fc__net_derive_max(256, 128, 2) > 0);
  /* Too few for the reserve: a quarter, never 0. */
  assert_int_equal(fc__net_derive_max(100, 128, 8), 25);
  assert_int_equal(fc__net_derive_max(4, 128, 8), 1);
}

static void rate_limited_log(void **state) {
  (void)state;
  fc__ratelog_t r;
  fc__ratelog_init(&r);
  uint64_t sup = 99;
  assert_true(fc__ratelog_allow(&r, 5000, 1000, &sup));
  assert_int_equal(sup, 0);
  for (int i = 0; i < 1000; i++) assert_false(fc__ratelog_allow(&r, 5000 + (uint64_t)i, 1000, &sup));
  assert_true(fc__ratelog_allow(&r, 6000, 1000, &sup));
  assert_int_equal(sup, 1000); /* the next line says how many were left out */
  assert_false(fc__ratelog_allow(&r, 6500, 1000, &sup));
  fc__ratelog_dispose(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(per_address_limit), cmocka_unit_test(many_addresses),   cmocka_unit_test(keys),
      cmocka_unit_test(derived_cap),       cmocka_unit_test(rate_limited_log),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
