/* Following an SSE stream across reconnections, for subscribe and start. */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli/internal.h"

static int feed(void *ud, const char *p, size_t n) {
  fc__follow_t *f = ud;
  int rc = fc_sse_feed(&f->parser, p, n);
  if (rc < 0)
    fprintf(stderr, "flowcast %s: the server sent an event past %zu bytes; dropping the connection\n", f->cmd,
            f->parser.max_event);
  return rc != 0 || f->done;
}

static void on_status(void *ud, int status) {
  fc__follow_t *f = ud;
  f->status = status;
  if (f->on_connect) f->on_connect(f->ud, status);
}

/* The base of the backoff: the server's `retry:` when sane, else the default. */
static unsigned base_ms(const fc__follow_t *f) {
  if (f->parser.retry_set && f->parser.retry_ms > 0 && f->parser.retry_ms <= f->max_backoff_ms)
    return (unsigned)f->parser.retry_ms;
  return f->default_retry_ms;
}

/* Waits `ms`, or less when cancel_fd becomes readable. */
static void wait_ms(const fc__follow_t *f, unsigned ms) {
  if (f->cancel_fd > 0) {
    struct pollfd pf = {.fd = f->cancel_fd, .events = POLLIN};
    poll(&pf, 1, (int)ms);
    return;
  }
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0) {}
}

static uint32_t random32(void) {
  uint32_t r = 0;
  if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint32_t)time(NULL) * 2654435761u;
  return r;
}

/* Says on stderr why and when the follow reconnects. */
static void notice(const fc__follow_t *f, bool worked, int status, const char *err, unsigned delay, unsigned failures) {
  const char *after = *f->parser.last_id ? f->parser.last_id : NULL;
  if (worked)
    fprintf(stderr, "flowcast %s: the stream ended; reconnecting in %.1f s%s%s\n", f->cmd, delay / 1000.0,
            after ? ", resuming after id " : "", after ? after : "");
  else if (status < 0)
    fprintf(stderr, "flowcast %s: %s; retrying in %.1f s (attempt %u)\n", f->cmd, err, delay / 1000.0, failures);
  else
    fprintf(stderr, "flowcast %s: the server answered %d; retrying in %.1f s (attempt %u)\n", f->cmd, status,
            delay / 1000.0, failures);
}

/* A 4xx that no retry will change. */
static bool final_status(int status) {
  return status == 204 || (status >= 400 && status < 500 && status != 408 && status != 429);
}

int fc__follow(fc__follow_t *f, fc_buf_t *body, char *err, size_t errlen) {
  unsigned attempt = 0, failures = 0;
  for (;;) {
    if (f->done) return 200;
    fc_sse_parser_reset(&f->parser);
    fc_buf_dispose(body);
    f->status = 0;
    int status = fc_http_call(&f->client->url,
                              &(fc_http_call_t){.method = "GET",
                                                .path = f->path,
                                                .token = f->client->token,
                                                .last_event_id = f->parser.last_id,
                                                .on_body = feed,
                                                .on_status = on_status,
                                                .ud = f,
                                                .cancel_fd = f->cancel_fd},
                              body, err, errlen);
    if (f->done) return 200;
    if (status == FC_HTTP_CUT && f->cancel_fd > 0) {
      struct pollfd pf = {.fd = f->cancel_fd, .events = POLLIN};
      if (poll(&pf, 1, 0) > 0) return 200; /* stopped from outside */
    }
    if (final_status(status)) return status;
    bool worked = status >= 200 && status < 300;
    if (worked) attempt = 0, failures = 0; /* the stream was up: start again from the base delay */
    else failures++;
    if (f->max_failures && failures >= f->max_failures) return status;
    unsigned delay = fc_cli_backoff_ms(base_ms(f), attempt++, f->max_backoff_ms, random32());
    if (!f->quiet) notice(f, worked, status, err, delay, failures);
    wait_ms(f, delay);
  }
}
