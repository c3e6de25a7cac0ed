/* Glob matching, token claims and verification failures. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jwt.h>

#include "auth/auth.h"
#include "hub/hub.h"

static const uint8_t secret[32] = "0123456789abcdef0123456789abcdef";
#define NOW 1800000000

static void globs(void **state) {
  (void)state;
  assert_true(fc_glob_match("*", "anything"));
  assert_true(fc_glob_match("*", ""));
  assert_true(fc_glob_match("orders.*", "orders.eu"));
  assert_true(fc_glob_match("orders.*", "orders."));
  assert_false(fc_glob_match("orders.*", "orders"));
  assert_false(fc_glob_match("orders.*", "xorders.eu"));
  assert_true(fc_glob_match("a*b*c", "aXXbYYc"));
  assert_false(fc_glob_match("a*b*c", "aXXbYY"));
  assert_true(fc_glob_match("job.*.log", "job.42.log"));
  assert_true(fc_glob_match("exact", "exact"));
  assert_false(fc_glob_match("exact", "exact2"));
  char *list[] = {"a.*", "b", NULL};
  assert_true(fc_patterns_match(list, SIZE_MAX, "a.x"));
  assert_true(fc_patterns_match(list, 2, "b"));
  assert_false(fc_patterns_match(list, SIZE_MAX, "c"));
  assert_false(fc_patterns_match(NULL, 0, "c"));
}

static fc_auth_t *auth(void) {
  char err[128];
  fc_auth_t *a = fc_auth_new(&(fc_auth_opts_t){secret, sizeof secret, NULL}, err, sizeof err);
  assert_non_null(a);
  return a;
}

static void mint_and_verify_claims(void **state) {
  (void)state;
  fc_auth_t *a = auth();
  char *pub[] = {"orders.*"}, *sub[] = {"orders.*", "news"};
  fc_claims_t c = {.sub = "svc", .publish = pub, .npublish = 1, .subscribe = sub, .nsubscribe = 2, .admin = false};
  char *tok = fc_auth_mint(a, &c, NOW, 60);
  fc_claims_t got;
  char why[128];
  assert_int_equal(fc_auth_verify(a, tok, NOW + 1, &got, why, sizeof why), 0);
  assert_string_equal(got.sub, "svc");
  assert_int_equal(got.npublish, 1);
  assert_string_equal(got.publish[0], "orders.*");
  assert_int_equal(got.nsubscribe, 2);
  assert_string_equal(got.subscribe[1], "news");
  assert_false(got.admin);
  assert_int_equal(got.exp, NOW + 60);
  fc_claims_dispose(&got);
  /* Expired at exp. */
  assert_int_equal(fc_auth_verify(a, tok, NOW + 60, &got, why, sizeof why), -EACCES);
  assert_non_null(strstr(why, "expired"));
  free(tok);
  fc_auth_free(a);
}

/* A token signed with `key` by libjwt with `alg` and the given claims JSON. */
static char *forge(jwt_alg_t alg, const uint8_t *key, int keylen, const char *claims) {
  jwt_t *j;
  jwt_new(&j);
  jwt_add_grants_json(j, claims);
  jwt_set_alg(j, alg, key, keylen);
  char *t = jwt_encode_str(j);
  jwt_free(j);
  return t;
}

static void rejects_bad_tokens(void **state) {
  (void)state;
  fc_auth_t *a = auth();
  fc_claims_t got;
  char why[128];
  const uint8_t other[32] = "another-secret-another-secret-xx";
  char *t;
  t = forge(JWT_ALG_HS256, other, 32, "{\"sub\":\"x\",\"exp\":1900000000}");
  assert_int_equal(fc_auth_verify(a, t, NOW, &got, why, sizeof why), -EACCES); /* bad signature */
  free(t);
  t = forge(JWT_ALG_NONE, NULL, 0, "{\"sub\":\"x\",\"exp\":1900000000}");
  assert_int_equal(fc_auth_verify(a, t, NOW, &got, why, sizeof why), -EACCES); /* alg none */
  assert_non_null(strstr(why, "none"));
  free(t);
  t = forge(JWT_ALG_HS512, secret, 32, "{\"sub\":\"x\",\"exp\":1900000000}");
  assert_int_equal(fc_auth_verify(a, t, NOW, &got, why, sizeof why), -EACCES); /* other algorithm */
  free(t);
  t = forge(JWT_ALG_HS256, secret, 32, "{\"sub\":\"x\"}");
  assert_int_equal(fc_auth_verify(a, t, NOW, &got, why, sizeof why), -EINVAL); /* no exp */
  free(t);
  t = forge(JWT_ALG_HS256, secret, 32, "{\"sub\":\"x\",\"exp\":1900000000,\"nbf\":1850000000}");
  assert_int_equal(fc_auth_verify(a, t, NOW, &got, why, sizeof why), -EACCES); /* not yet valid */
  assert_non_null(strstr(why, "nbf"));
  free(t);
  const char *garbage[] = {"",
                           "abc",
                           "a.b.c",
                           "eyJhbGciOiJIUzI1NiJ9..",
                           "....",
                           "eyJ.eyJ.eyJ",
                           "eyJhbGciOiJIUzI1NiJ9..c2ln",
                           "eyJhbGciOiJIUzI1NiJ9.e30.",
                           "eyJhbGciOiJIUzI1NiJ9.e30.c2ln.x",
                           "eyJhbGciOiJIUzI1NiJ9.e3 0.c2ln"};
  for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++)
    assert_true(fc_auth_verify(a, garbage[i], NOW, &got, why, sizeof why) < 0);
  /* A good one passes, and the flowcast claim may be absent: no rights then. */
  t = forge(JWT_ALG_HS256, secret, 32, "{\"sub\":\"x\",\"exp\":1900000000}");
  assert_int_equal(fc_auth_verify(a, t, NOW, &got, why, sizeof why), 0);
  assert_int_equal(got.npublish, 0);
  assert_false(got.admin);
  fc_claims_dispose(&got);
  free(t);
  fc_auth_free(a);
}

/* exp, nbf and iat: numbers of any size or sign, compared without overflow;
 * fractions honoured; other types refused. */
static void time_claims(void **state) {
  (void)state;
  fc_auth_t *a = auth();
  struct {
    const char *claims;
    int rc; /* 0, or -1 for any refusal (its errno is not checked here) */
    int64_t exp;
  } cases[] = {
      {"{\"exp\":9007199254740992}", 0, FC_AUTH_TIME_MAX},
      {"{\"exp\":9223372036854775807}", 0, FC_AUTH_TIME_MAX},
      {"{\"exp\":1e300}", 0, FC_AUTH_TIME_MAX},
      {"{\"exp\":1800000000.25}", 0, 1800000001},
      {"{\"exp\":1800000000.5,\"nbf\":-1e300,\"iat\":1e300}", 0, 1800000001},
      {"{\"exp\":1900000000,\"nbf\":1799999999.5}", 0, 1900000000},
      {"{\"exp\":1800000000}", -1, 0}, /* expires at exp */
      {"{\"exp\":1799999999.9}", -1, 0},
      {"{\"exp\":-9223372036854775807}", -1, 0},
      {"{\"exp\":-1e300}", -1, 0},
      {"{\"exp\":\"1900000000\"}", -1, 0},
      {"{\"exp\":true}", -1, 0},
      {"{\"exp\":1900000000,\"nbf\":\"0\"}", -1, 0},
      {"{\"exp\":1900000000,\"nbf\":1800000000.5}", -1, 0},
      {"{\"exp\":1900000000,\"nbf\":1e300}", -1, 0},
      {"{\"exp\":1900000000,\"iat\":\"1800000000\"}", -1, 0},
      {"{\"exp\":1900000000,\"iat\":null}", -1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *t = forge(JWT_ALG_HS256, secret, 32, cases[i].claims);
    assert_non_null(t);
    fc_claims_t got;
    char why[128] = "";
    int rc = fc_auth_verify(a, t, NOW, &got, why, sizeof why);
    if ((rc < 0 ? -1 : rc) != cases[i].rc) fail_msg("%s: rc %d (%s)", cases[i].claims, rc, why);
    if (rc == 0) {
      assert_int_equal(got.exp, cases[i].exp);
      fc_claims_dispose(&got);
    } else {
      assert_true(why[0] != '\0');
    }
    free(t);
  }
  fc_auth_free(a);
}

/* run and send travel in the token; text that cannot be encoded mints nothing. */
static void mint_rights_and_failures(void **state) {
  (void)state;
  fc_auth_t *a = auth();
  char *run[] = {"4*", "12"};
  fc_claims_t c = {.sub = "r", .run = run, .nrun = 2, .send = true};
  char *tok = fc_auth_mint(a, &c, NOW, 60);
  assert_non_null(tok);
  fc_claims_t got;
  char why[128];
  assert_int_equal(fc_auth_verify(a, tok, NOW, &got, why, sizeof why), 0);
  assert_int_equal(got.nrun, 2);
  assert_string_equal(got.run[0], "4*");
  assert_true(got.send);
  assert_false(got.admin);
  fc_claims_dispose(&got);
  free(tok);
  char *bad[] = {"ok", "\xff\xfe"};
  c = (fc_claims_t){.sub = "r", .publish = bad, .npublish = 2};
  assert_null(fc_auth_mint(a, &c, NOW, 60));
  c = (fc_claims_t){.sub = "\xc3"};
  assert_null(fc_auth_mint(a, &c, NOW, 60));
  fc_auth_free(a);
}

static void limiter(void **state) {
  (void)state;
  fc_limiter_t *l = fc_limiter_new(3, 60);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(fc_limiter_check(l, "ip:1", 1000), 0);
    fc_limiter_fail(l, "ip:1", 1000);
  }
  assert_int_equal(fc_limiter_check(l, "ip:1", 1010), 50);
  assert_int_equal(fc_limiter_check(l, "ip:2", 1010), 0); /* other keys are free */
  assert_int_equal(fc_limiter_check(l, "ip:1", 1060), 0); /* a new window */
  fc_limiter_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(globs),       cmocka_unit_test(mint_and_verify_claims),   cmocka_unit_test(rejects_bad_tokens),
      cmocka_unit_test(time_claims), cmocka_unit_test(mint_rights_and_failures), cmocka_unit_test(limiter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
