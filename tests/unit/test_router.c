/* Request targets, percent-decoding, query strings and route matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/http.h"

static void h_publish(fc_req_t *r) { (void)r; }
static void h_history(fc_req_t *r) { (void)r; }
static void h_list(fc_req_t *r) { (void)r; }

static const fc_route_t routes[] = {
    {"/api/v1/channels/{}/events", FC_POST, h_publish, "publish", 0, true},
    {"/api/v1/channels/{}/events", FC_GET, h_history, "history", 0, false},
    {"/api/v1/channels", FC_GET, h_list, "list", 0, false},
};

static fc_req_t *req_for(unsigned method, const char *url) {
  fc_req_t *r = calloc(1, sizeof *r);
  r->method = method;
  fc_buf_append(&r->raw, url, strlen(url));
  r->url = (fc_str_t){r->raw.data, r->raw.len};
  return r;
}

static void parse_and_decode(void **state) {
  (void)state;
  fc_req_t *r = req_for(FC_GET, "/api/v1/channels/a%2Eb/events?after=3&x=1");
  assert_int_equal(fc_http_parse_target(r), 0);
  assert_int_equal(r->nsegs, 5);
  assert_string_equal(r->segs[3], "a.b");
  assert_true(fc_str_eq(r->path, "/api/v1/channels/a%2Eb/events"));
  assert_true(fc_str_eq(r->query, "after=3&x=1"));
  fc_http_req_free(r);
}

static void malformed_escapes(void **state) {
  (void)state;
  const char *bad[] = {"/a%2", "/a%zz/b", "/%", "/a%G1", "/nul%00byte"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    fc_req_t *r = req_for(FC_GET, bad[i]);
    assert_int_equal(fc_http_parse_target(r), -1);
    fc_http_req_free(r);
  }
}

static void match_and_params(void **state) {
  (void)state;
  unsigned allowed;
  fc_req_t *r = req_for(FC_POST, "/api/v1/channels/news/events");
  fc_http_parse_target(r);
  const fc_route_t *rt = fc_http_match(routes, 3, r, &allowed);
  assert_non_null(rt);
  assert_ptr_equal(rt->handler, h_publish);
  assert_string_equal(r->params[0], "news");
  fc_http_req_free(r);

  r = req_for(FC_GET, "/api/v1/channels/");
  fc_http_parse_target(r);
  rt = fc_http_match(routes, 3, r, &allowed);
  assert_non_null(rt); /* a trailing slash names the same resource */
  assert_ptr_equal(rt->handler, h_list);
  fc_http_req_free(r);
}

static void wrong_method_and_unknown(void **state) {
  (void)state;
  unsigned allowed;
  fc_req_t *r = req_for(FC_DELETE, "/api/v1/channels/news/events");
  fc_http_parse_target(r);
  assert_null(fc_http_match(routes, 3, r, &allowed));
  assert_int_equal(allowed, FC_GET | FC_POST); /* -> 405 with Allow */
  fc_http_req_free(r);

  r = req_for(FC_GET, "/api/v1/nothing/here");
  fc_http_parse_target(r);
  assert_null(fc_http_match(routes, 3, r, &allowed));
  assert_int_equal(allowed, 0); /* -> 404 */
  fc_http_req_free(r);

  r = req_for(FC_GET, "/api/v1/channels/a/events/extra");
  fc_http_parse_target(r);
  assert_null(fc_http_match(routes, 3, r, &allowed));
  assert_int_equal(allowed, 0);
  fc_http_req_free(r);
}

static void head_matches_get(void **state) {
  (void)state;
  unsigned allowed;
  fc_req_t *r = req_for(FC_HEAD, "/api/v1/channels");
  fc_http_parse_target(r);
  assert_non_null(fc_http_match(routes, 3, r, &allowed));
  fc_http_req_free(r);
}

static void query_values(void **state) {
  (void)state;
  fc_req_t *r = req_for(FC_GET, "/sse?channel=a&channel=b%2Ec&q=x+y&empty=&flag&bad=%zz");
  fc_http_parse_target(r);
  bool bad = false;
  assert_string_equal(fc_req_query(r, "channel", 0, &bad), "a");
  assert_string_equal(fc_req_query(r, "channel", 1, &bad), "b.c");
  assert_null(fc_req_query(r, "channel", 2, &bad));
  assert_string_equal(fc_req_query(r, "q", 0, &bad), "x y");
  assert_string_equal(fc_req_query(r, "empty", 0, &bad), "");
  assert_string_equal(fc_req_query(r, "flag", 0, &bad), "");
  assert_null(fc_req_query(r, "missing", 0, &bad));
  assert_false(bad);
  assert_null(fc_req_query(r, "bad", 0, &bad));
  assert_true(bad);
  fc_http_req_free(r);
}

static void too_many_segments(void **state) {
  (void)state;
  fc_req_t *r = req_for(FC_GET, "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r");
  assert_int_equal(fc_http_parse_target(r), -1);
  fc_http_req_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse_and_decode), cmocka_unit_test(malformed_escapes),
      cmocka_unit_test(match_and_params), cmocka_unit_test(wrong_method_and_unknown),
      cmocka_unit_test(head_matches_get), cmocka_unit_test(query_values),
      cmocka_unit_test(too_many_segments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
