/* The http pipelining state machine, driven through a real net loop and a
 * loopback socket: several requests in one read and split across reads,
 * overlapping routes handled ahead but answered in order, and requests that
 * wait (deferred) for the answers before them (src/http/conn.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "http/http.h"
#include "loopback.h"

#define DELAY_MS 60

/* What the handlers did, in order, and what the client read. */
static struct {
  fc_net_t *net;
  fc_http_t *http;
  uv_timer_t timer;
  bool timer_ready;
  fc_req_t *held; /* a request answered by the timer */
  char log[512];
  const char *send; /* what the client sends */
  size_t chunk;     /* in pieces of this many bytes (0: at once) */
  int want;         /* responses to read */
  char bodies[256]; /* their bodies, joined with ',' */
  int got;
} g;

static void logf_(const char *what, const char *name) {
  size_t n = strlen(g.log);
  snprintf(g.log + n, sizeof g.log - n, "%s:%s ", what, name);
}

static void respond_text(fc_req_t *req, const char *prefix) {
  char body[64];
  int n = snprintf(body, sizeof body, "%s%s", prefix, req->params[0]);
  fc_http_respond(req, 200, "text/plain", NULL, body, (size_t)n);
}

static void h_echo(fc_req_t *req) {
  logf_("h", req->params[0]);
  respond_text(req, "");
}

static void on_timer(uv_timer_t *t) {
  (void)t;
  fc_req_t *req = g.held;
  g.held = NULL;
  logf_("a", req->params[0]);
  respond_text(req, "");
}

/* Holds the request; a timer answers it. */
static void h_later(fc_req_t *req) {
  logf_("h", req->params[0]);
  if (!g.timer_ready) {
    uv_timer_init(fc_loop_uv(req->loop), &g.timer);
    g.timer_ready = true;
  }
  g.held = req;
  uv_timer_start(&g.timer, on_timer, DELAY_MS, 0);
}

static const fc_route_t routes[] = {
    {"/echo/{}", FC_GET, h_echo, "echo", 0, false},
    {"/fast/{}", FC_GET, h_echo, "fast", 0, true},
    {"/slow/{}", FC_GET, h_later, "slow", 0, true},
    {"/hold/{}", FC_GET, h_later, "hold", 0, false},
};

static void on_accept(fc_conn_t *c) { fc_http_accept(g.http, c); }
static void on_tick(fc_loop_t *l, uint64_t now) { fc_http_tick(l, now); }
static void on_stop(fc_loop_t *l) {
  fc_http_stop(l);
  if (g.timer_ready) uv_close((uv_handle_t *)&g.timer, NULL);
}

/* Takes complete responses off the front of [buf, buf+*n): appends each
 * body to g.bodies. Returns false on a malformed response. */
static bool take_responses(char *buf, size_t *n) {
  for (;;) {
    buf[*n] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end) return true;
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) return false;
    char *cl = strcasestr(buf, "Content-Length: ");
    if (!cl || cl > end) return false;
    size_t len = strtoul(cl + 16, NULL, 10), head = (size_t)(end + 4 - buf);
    if (*n < head + len) return true;
    size_t b = strlen(g.bodies);
    snprintf(g.bodies + b, sizeof g.bodies - b, "%s%.*s", g.got ? "," : "", (int)len, end + 4);
    g.got++;
    memmove(buf, buf + head + len, *n - head - len);
    *n -= head + len;
  }
}

static void *client(void *arg) {
  (void)arg;
  int fd = lb_connect(g.net, 0);
  if (fd < 0) goto out;
  size_t total = strlen(g.send), step = g.chunk ? g.chunk : total;
  for (size_t off = 0; off < total; off += step) {
    size_t n = total - off < step ? total - off : step;
    if (lb_send(fd, g.send + off, n) < 0) break;
    if (g.chunk) lb_sleep_ms(3); /* each piece is its own read */
  }
  char buf[8192];
  size_t have = 0;
  while (g.got < g.want) {
    size_t n = lb_read(fd, buf + have, sizeof buf - 1 - have, 0, 1000, NULL);
    if (n == 0) break;
    have += n;
    if (!take_responses(buf, &have)) break;
  }
  close(fd);
out:
  fc_net_stop(g.net);
  return NULL;
}

static void run(const char *send, size_t chunk, int want) {
  memset(&g, 0, sizeof g);
  g.send = send;
  g.chunk = chunk;
  g.want = want;
  fc_http_opts_t o = {.max_header_bytes = 8192,
                      .max_url_bytes = 1024,
                      .max_body_bytes = 65536,
                      .header_timeout_ms = 5000,
                      .idle_timeout_ms = 5000,
                      .body_timeout_ms = 5000,
                      .send_timeout_ms = 5000,
                      .routes = routes,
                      .nroutes = FC_ARRAY_LEN(routes)};
  g.http = fc_http_new(&o);
  g.net = lb_net((fc_net_handlers_t){.on_accept = on_accept, .on_tick = on_tick, .on_stop = on_stop});
  assert_non_null(g.net);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, client, NULL), 0);
  fc_net_run(g.net);
  pthread_join(t, NULL);
  fc_net_free(g.net);
  fc_http_free(g.http);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

static void several_in_one_read(void **state) {
  (void)state;
  run(GET("/echo/1") GET("/echo/2") GET("/echo/3"), 0, 3);
  assert_int_equal(g.got, 3);
  assert_string_equal(g.bodies, "1,2,3");
  assert_string_equal(g.log, "h:1 h:2 h:3 ");
}

static void split_across_reads(void **state) {
  (void)state;
  /* pieces of 7 bytes: cuts fall inside request lines, header names and
   * values, the blank line, and between requests */
  run(GET("/echo/1") GET("/fast/2") GET("/echo/3") GET("/echo/4"), 7, 4);
  assert_int_equal(g.got, 4);
  assert_string_equal(g.bodies, "1,2,3,4");
  assert_string_equal(g.log, "h:1 h:2 h:3 h:4 ");
}

static void overlap_answered_in_order(void **state) {
  (void)state;
  run(GET("/slow/s") GET("/fast/1") GET("/fast/2"), 0, 3);
  /* the fast ones are handled while the slow one waits for its answer ... */
  assert_string_equal(g.log, "h:s h:1 h:2 a:s ");
  /* ... and their answers still go out after it */
  assert_int_equal(g.got, 3);
  assert_string_equal(g.bodies, "s,1,2");
}

static void deferred_behind_overlap(void **state) {
  (void)state;
  /* a request on a route that does not overlap waits for every earlier answer */
  run(GET("/slow/s") GET("/fast/1") GET("/echo/e") GET("/fast/2"), 0, 4);
  assert_string_equal(g.log, "h:s h:1 a:s h:e h:2 ");
  assert_int_equal(g.got, 4);
  assert_string_equal(g.bodies, "s,1,e,2");
}

static void held_request_keeps_the_rest(void **state) {
  (void)state;
  /* parsing pauses behind a request that does not overlap: what follows it
   * waits unparsed, here split across reads */
  run(GET("/hold/h") GET("/fast/1") GET("/echo/2"), 11, 3);
  assert_string_equal(g.log, "h:h a:h h:1 h:2 ");
  assert_int_equal(g.got, 3);
  assert_string_equal(g.bodies, "h,1,2");
}

int main(void) {
  fc_log_set_level(FC_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(several_in_one_read),         cmocka_unit_test(split_across_reads),
      cmocka_unit_test(overlap_answered_in_order),   cmocka_unit_test(deferred_behind_overlap),
      cmocka_unit_test(held_request_keeps_the_rest),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
