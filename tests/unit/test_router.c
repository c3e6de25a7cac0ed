/* Request targets, percent-decoding, query strings and route matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>

#include "http/internal.h"

static void h_publish(fc_req_t *r) { (void)r; }
static void h_history(fc_req_t *r) { (void)r; }
static void h_list(fc_req_t *r) { (void)r; }

static const fc_route_t routes[] = {
    {"/api/v1/channels/{}/events", FC_POST, h_publish, "publish", 0, true},
    {"/api/v1/channels/{}/events", FC_GET, h_history, "history", 0, false},
    {"/api/v1/channels", FC_GET, h_list, "list", 0, false},
};

static fc_req_t *req_for(unsigned method, const char *url) { return fc_http_req_new(method, url, strlen(url)); }

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
    assert_int_equal(fc_http_parse_target(r), -EINVAL);
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
  assert_int_equal(fc_http_parse_target(r), -E2BIG); /* a limit, not a malformed escape */
  fc_http_req_free(r);
  r = req_for(FC_GET, "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/");
  assert_int_equal(fc_http_parse_target(r), 0); /* 16 segments and a trailing slash */
  assert_int_equal(r->nsegs, FC_HTTP_MAX_SEGMENTS);
  fc_http_req_free(r);
}

/* The one JSON error writer: whatever the message holds, the body parses as
 * JSON and gives the message back (invalid UTF-8 as U+FFFD). */
static void error_body_is_valid_json(void **state) {
  (void)state;
  const struct {
    const char *msg, *want;
  } cases[] = {
      {"plain", "plain"},
      {"quote \" back\\slash", "quote \" back\\slash"},
      {"new\nline\ttab\r\x01\x1f\x7f", "new\nline\ttab\r\x01\x1f\x7f"},
      {"\",\"x\":\"y", "\",\"x\":\"y"},
      {"caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80"},
      {"bad \xff\xc3 cut \xe2\x82", "bad \xef\xbf\xbd\xef\xbf\xbd cut \xef\xbf\xbd\xef\xbf\xbd"},
      {"surrogate \xed\xa0\x80", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    fc_buf_t b;
    fc_buf_init(&b);
    fc_json_error(&b, "c\"ode", cases[i].msg);
    json_error_t err;
    json_t *j = json_loadb(b.data, b.len, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "c\"ode");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "message")), cases[i].want);
    assert_int_equal(json_object_size(j), 1);
    json_decref(j);
    fc_buf_dispose(&b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse_and_decode),  cmocka_unit_test(malformed_escapes),
      cmocka_unit_test(match_and_params),  cmocka_unit_test(wrong_method_and_unknown),
      cmocka_unit_test(head_matches_get),  cmocka_unit_test(query_values),
      cmocka_unit_test(too_many_segments), cmocka_unit_test(error_body_is_valid_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
