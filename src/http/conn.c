/* llhttp glue: one parser per connection, limits, pipelining and timeouts. */
#include "http/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fc_http_stats_t fc_http_stats;

static fc_http_conn_t *hc_of(llhttp_t *p) { return p->data; }

/* Ends the parse with an answer to give: `msg` is a printf format that takes
 * `limit` (%zu) once, or a plain message. Returns the llhttp error to return. */
static int abort_parse(fc_http_conn_t *hc, int status, const char *code, const char *msg, size_t limit) {
  hc->h1->err_status = status;
  hc->h1->err_code = code;
  hc->h1->err_msg = msg;
  hc->h1->err_limit = limit;
  return HPE_USER;
}

static fc_req_t *req_new(fc_http_conn_t *hc) {
  fc_req_t *r = fc__req_new();
  fc__req_t *q = fc__req(r);
  q->hc = hc;
  r->http = hc->http;
  r->loop = fc_conn_loop(hc->conn);
  q->start_ms = fc_mono_ms();
  q->keep_alive = true;
  return r;
}

static int on_message_begin(llhttp_t *p) {
  fc_http_conn_t *hc = hc_of(p);
  if (!hc->req) hc->req = req_new(hc);
  hc->state = HC_HEAD;
  hc->since_ms = uv_now(fc_loop_uv(fc_conn_loop(hc->conn)));
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  fc_http_conn_t *hc = hc_of(p);
  fc_req_t *r = hc->req;
  fc__req_t *q = fc__req(r);
  size_t max = hc->http->opts.max_url_bytes;
  if (q->raw.len + n > max) return abort_parse(hc, 414, "uri_too_long", "request target longer than %zu bytes", max);
  fc_buf_append(&q->raw, at, n);
  r->url.len = q->raw.len;
  return 0;
}

static int check_head_size(fc_http_conn_t *hc) {
  size_t max = hc->http->opts.max_header_bytes;
  if (fc__req(hc->req)->raw.len > max)
    return abort_parse(hc, 431, "headers_too_large", "request head larger than %zu bytes", max);
  return 0;
}

/* Chunked trailer fields come after the head, whose url and headers point into
 * the raw bytes: they are counted against the head's limit but never kept. */
static int on_trailer(fc_http_conn_t *hc, size_t n) {
  size_t max = hc->http->opts.max_header_bytes;
  fc__req(hc->req)->trailer_bytes += n;
  if (fc__req(hc->req)->trailer_bytes > max)
    return abort_parse(hc, 431, "headers_too_large", "trailer fields larger than %zu bytes", max);
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  fc_http_conn_t *hc = hc_of(p);
  fc_req_t *r = hc->req;
  fc__req_t *q = fc__req(r);
  if (hc->state == HC_BODY) return on_trailer(hc, n);
  if (q->in_value || q->noff == 0) {
    size_t *o = fc__req_field(q);
    if (!o) return abort_parse(hc, 431, "too_many_headers", "more than %zu header fields", (size_t)FC_HTTP_MAX_HEADERS);
    q->in_value = false;
    o[0] = q->raw.len, o[1] = 0, o[2] = 0, o[3] = 0;
  }
  fc_buf_append(&q->raw, at, n);
  q->fields[q->noff - 1].off[1] += n;
  return check_head_size(hc);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  fc_http_conn_t *hc = hc_of(p);
  fc_req_t *r = hc->req;
  fc__req_t *q = fc__req(r);
  if (hc->state == HC_BODY) return on_trailer(hc, n);
  size_t *o = q->fields[q->noff - 1].off;
  if (!q->in_value) {
    /* RFC 9112 5.1: no whitespace between a field name and its colon. */
    char last = o[1] ? q->raw.data[o[0] + o[1] - 1] : ' ';
    if (last == ' ' || last == '\t')
      return abort_parse(hc, 400, "bad_request", "malformed request: whitespace before a header's colon", 0);
    q->in_value = true;
    o[2] = q->raw.len;
  }
  fc_buf_append(&q->raw, at, n);
  o[3] += n;
  return check_head_size(hc);
}

static unsigned method_bit(uint8_t m) {
  switch (m) {
    case HTTP_GET: return FC_GET;
    case HTTP_POST: return FC_POST;
    case HTTP_PUT: return FC_PUT;
    case HTTP_DELETE: return FC_DELETE;
    case HTTP_OPTIONS: return FC_OPTIONS;
    case HTTP_HEAD: return FC_HEAD;
    default: return 0;
  }
}

/* Checks what the head says about the request as a whole (RFC 9112): the
 * version, Host, and transfer codings. Returns 0 or an abort_parse() result. */
static int check_head(fc_http_conn_t *hc, llhttp_t *p) {
  fc_req_t *r = hc->req;
  if (p->http_major != 1)
    return abort_parse(hc, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported", 0);
  size_t hosts = 0;
  bool other_coding = false;
  for (size_t i = 0; i < fc__req(r)->nheaders; i++) {
    const fc_header_t *h = &fc__req(r)->fields[i].h;
    if (fc_str_ieq(h->name, "host")) hosts++;
    if (!fc_str_ieq(h->name, "transfer-encoding")) continue;
    /* llhttp has already refused a list whose last coding is not chunked,
     * and chunked twice; any other coding before it is not implemented. */
    const char *v = h->value.base, *end = v + h->value.len;
    while (v < end) {
      const char *comma = memchr(v, ',', (size_t)(end - v));
      const char *e = comma ? comma : end;
      while (v < e && (*v == ' ' || *v == '\t')) v++;
      while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
      if (e > v && !fc_str_ieq((fc_str_t){v, (size_t)(e - v)}, "chunked")) other_coding = true;
      v = comma ? comma + 1 : end;
    }
  }
  if (hosts > 1) return abort_parse(hc, 400, "bad_request", "more than one Host header", 0);
  if (hosts == 0 && p->http_minor >= 1)
    return abort_parse(hc, 400, "bad_request", "an HTTP/1.1 request needs a Host header", 0);
  if (other_coding)
    return abort_parse(hc, 501, "not_implemented", "transfer codings other than chunked are not supported", 0);
  return 0;
}

/* `Expect: 100-continue` (curl sends it with bodies over 1 MB and waits a
 * second for the answer): the body is welcome, say so now. Not while answers
 * to earlier pipelined requests are owed, which must go first (the client then
 * sends its body after its own wait). Any other expectation: 417. */
static int expect_continue(fc_http_conn_t *hc, llhttp_t *p) {
  fc_str_t e = fc_req_header(hc->req, "expect");
  if (!e.base) return 0;
  if (!fc_str_ieq(e, "100-continue"))
    return abort_parse(hc, 417, "expectation_failed", "the only expectation understood is 100-continue", 0);
  bool body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  if (body && p->http_minor >= 1 && !hc->h1->out_head) fc_conn_send_copy(hc->conn, cont, sizeof cont - 1);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  fc_http_conn_t *hc = hc_of(p);
  fc_req_t *r = hc->req;
  fc__req_t *q = fc__req(r);
  /* From here on the raw bytes do not change (on_trailer): these stay valid. */
  r->url.base = q->raw.data ? q->raw.data : "";
  fc__req_fields_done(q);
  r->method = method_bit(p->method);
  r->method_name = llhttp_method_name(p->method);
  /* An upgrade that is refused ends the connection: what follows is not HTTP. */
  q->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  hc->state = HC_BODY;
  hc->since_ms = hc->h1->body_ms = uv_now(fc_loop_uv(fc_conn_loop(hc->conn))); /* the body timeout runs from here */
  int rc = check_head(hc, p);
  if (rc) return rc;
  size_t max = hc->http->opts.max_body_bytes;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > max)
    return abort_parse(hc, 413, "body_too_large", "body larger than %zu bytes", max);
  return expect_continue(hc, p);
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  fc_http_conn_t *hc = hc_of(p);
  fc_req_t *r = hc->req;
  size_t max = hc->http->opts.max_body_bytes;
  if (r->body.len + n > max) return abort_parse(hc, 413, "body_too_large", "body larger than %zu bytes", max);
  fc_buf_append(&r->body, at, n);
  hc->h1->body_ms = uv_now(fc_loop_uv(fc_conn_loop(hc->conn)));
  return 0;
}

/* At most this many answers owed on one connection: past it, reading waits. */
#define OWED_MAX 64
/* At most this many bytes of answers unsent on one connection: past it,
 * reading waits until they are written (on_drained), so a client that
 * pipelines requests and never reads its answers costs a bounded amount. */
#define UNSENT_MAX (256 * 1024)

/* Gives a request a place at the end of the connection's answer queue. */
static fc__answer_t *owe(fc_http_conn_t *hc, fc_req_t *r) {
  fc__answer_t *a = fc_xcalloc(1, sizeof *a);
  a->req = r;
  if (r) fc__req(r)->slot = a;
  if (hc->h1->out_tail) hc->h1->out_tail->next = a;
  else hc->h1->out_head = a;
  hc->h1->out_tail = a;
  hc->h1->nout++;
  return a;
}

/* Runs a request's handler. One on an overlapping route that is still
 * unanswered afterwards takes a place in the answer queue, and reading goes
 * on past it. */
static void handle(fc_http_conn_t *hc, fc_req_t *r) {
  fc__http_dispatch(r);
  r = hc->req; /* NULL once answered or streaming */
  if (r && hc->state == HC_HANDLING && r->route && r->route->overlap && fc__req(r)->keep_alive && !fc__req(r)->serial) {
    owe(hc, r);
    hc->req = NULL;
  }
}

/* Whether parsing may go on; if so the connection is between requests again. */
static bool read_on(fc_http_conn_t *hc) {
  if (hc->state != HC_HANDLING || hc->req || hc->h1->nout >= OWED_MAX || fc_conn_queued(hc->conn) > UNSENT_MAX)
    return false;
  hc->state = HC_IDLE;
  hc->since_ms = uv_now(fc_loop_uv(fc_conn_loop(hc->conn)));
  return true;
}

static int on_message_complete(llhttp_t *p) {
  fc_http_conn_t *hc = hc_of(p);
  fc_req_t *r = hc->req;
  hc->state = HC_HANDLING;
  fc_http_stats.requests_total++;
  if (!r->body.data) fc_buf_append(&r->body, "", 0);
  int rc = fc_http_parse_target(r);
  if (rc == -E2BIG) {
    fc_http_error(r, 414, "uri_too_long", "request target has more than %d path segments", FC_HTTP_MAX_SEGMENTS);
  } else if (rc < 0) {
    fc_http_error(r, 400, "bad_request", "malformed percent-escape in the request target");
  } else {
    fc__http_route(r);
    /* Behind answers still owed, only an overlapping request is handled now:
     * any other waits for them, so it sees their effects and cannot become a
     * stream ahead of them. */
    if (hc->h1->out_head && !(r->route && r->route->overlap)) {
      hc->h1->deferred = true;
      return HPE_PAUSED;
    }
    handle(hc, r);
  }
  return read_on(hc) ? 0 : HPE_PAUSED;
}

void fc__http_init_settings(llhttp_settings_t *s);
void fc__http_init_settings(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_message_begin = on_message_begin;
  s->on_url = on_url;
  s->on_header_field = on_header_field;
  s->on_header_value = on_header_value;
  s->on_headers_complete = on_headers_complete;
  s->on_body = on_body;
  s->on_message_complete = on_message_complete;
}

/* Answers a request the parser rejected, then closes. */
static void parse_failed(fc_http_conn_t *hc, llhttp_errno_t err) {
  if (!hc->req) hc->req = req_new(hc);
  fc_req_t *r = hc->req;
  fc__req(r)->keep_alive = false;
  if (!r->method_name) r->method_name = "-";
  if (r->url.base) fc_http_parse_target(r); /* the head was complete: its target goes in the log line */
  if (hc->h1->err_status) {
    char msg[160];
    snprintf(msg, sizeof msg, hc->h1->err_msg, hc->h1->err_limit);
    fc_http_error(r, hc->h1->err_status, hc->h1->err_code, "%s", msg);
  } else {
    const char *reason = llhttp_get_error_reason(&hc->h1->parser);
    fc_http_error(r, 400, "bad_request", "malformed request: %s (%s)", reason ? reason : "-", llhttp_errno_name(err));
  }
}

/* While a request is being answered, what follows it waits in `pending`.
 * Reading goes on (stopping and restarting it costs two epoll_ctl calls per
 * request) until a pipelining client has sent PENDING_MAX bytes ahead. */
#define PENDING_MAX (64 * 1024)
static void hold_input(fc_http_conn_t *hc) {
  if (hc->h1->pending.len >= PENDING_MAX) fc_conn_read_stop(hc->conn);
}

/* An upgraded connection: what follows the request is the new protocol's. */
static void became_stream(fc_http_conn_t *hc, const char *rest, size_t n) {
  fc__http_h1_free(hc); /* no more HTTP on this connection */
  if (hc->stream->h->on_data && n) hc->stream->h->on_data(hc->stream, rest, n);
}

/* Feeds bytes to the parser; keeps what follows a pause for later. */
static void execute(fc_http_conn_t *hc, const char *p, size_t n) {
  hc->h1->in_execute = true;
  llhttp_errno_t err = llhttp_execute(&hc->h1->parser, p, n);
  hc->h1->in_execute = false;
  if (err == HPE_OK) return;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    if (hc->state == HC_HANDLING) {
      const char *pos = llhttp_get_error_pos(&hc->h1->parser);
      if (pos && pos < p + n) fc_buf_append(&hc->h1->pending, pos, (size_t)(p + n - pos));
      hold_input(hc);
    } else if (hc->state == HC_STREAM) {
      const char *pos = llhttp_get_error_pos(&hc->h1->parser);
      became_stream(hc, pos, pos && pos < p + n ? (size_t)(p + n - pos) : 0);
    }
    return; /* streaming or closing: the rest of the input is not HTTP for us */
  }
  parse_failed(hc, err);
}

/* Whether the connection may speak HTTP/2: a TLS one whose ALPN chose h2, or
 * a plain one with h2c on. */
static bool h2_allowed(fc_http_conn_t *hc) {
  const fc_http_opts_t *o = &hc->http->opts;
  const char *alpn = o->alpn ? o->alpn(hc->conn) : NULL;
  return alpn ? strcmp(alpn, "h2") == 0 : o->h2c;
}

/* A connection's first bytes: the HTTP/2 preface makes it HTTP/2; anything
 * else is HTTP/1.1. A preface split over reads waits in `pending`. Returns
 * true when the bytes were taken. */
static bool sniff(fc_http_conn_t *hc, const char *p, size_t n) {
  hc->sniffed = true;
  if (!h2_allowed(hc)) return false;
  if (!hc->h1->pending.len && n >= FC__H2_PREFACE_LEN) {
    if (memcmp(p, FC__H2_PREFACE, FC__H2_PREFACE_LEN) != 0) return false;
    fc__h2_start(hc, p, n);
    return true;
  }
  fc_buf_append(&hc->h1->pending, p, n);
  size_t k = hc->h1->pending.len < FC__H2_PREFACE_LEN ? hc->h1->pending.len : FC__H2_PREFACE_LEN;
  bool h2 = memcmp(hc->h1->pending.data, FC__H2_PREFACE, k) == 0;
  if (h2 && k < FC__H2_PREFACE_LEN) {
    hc->sniffed = false; /* not enough yet to tell */
    return true;
  }
  fc_buf_t first = hc->h1->pending;
  fc_buf_init(&hc->h1->pending);
  if (h2) fc__h2_start(hc, first.data, first.len);
  else execute(hc, first.data, first.len);
  fc_buf_dispose(&first);
  return true;
}

static void on_data(fc_conn_t *c, const char *p, size_t n) {
  fc_http_conn_t *hc = fc_conn_ud(c);
  if (!hc->sniffed && hc->state == HC_IDLE && sniff(hc, p, n)) return;
  switch (hc->state) {
    case HC_H2: fc__h2_on_data(hc, p, n); return;
    case HC_STREAM:
      if (hc->stream->h->on_data) hc->stream->h->on_data(hc->stream, p, n);
      return; /* an SSE client has nothing more to say */
    case HC_CLOSING: return;
    case HC_HANDLING:
      fc_buf_append(&hc->h1->pending, p, n);
      hold_input(hc);
      return;
    default: execute(hc, p, n);
  }
}

static void on_eof(fc_conn_t *c) {
  fc_http_conn_t *hc = fc_conn_ud(c);
  /* A half-closed client may still wait for answers: once they are out,
   * reading starts again and finds the end of input again. */
  if (hc->state == HC_HANDLING || (hc->h1 && hc->h1->out_head)) return;
  if (hc->state == HC_H2) {
    fc_conn_close(c, true);
    return;
  }
  hc->state = HC_CLOSING;
  fc_conn_close(c, hc->stream == NULL);
}

static void on_close(fc_conn_t *c) {
  fc_http_conn_t *hc = fc_conn_ud(c);
  fc_http_stats.connections--;
  if (hc->h2) fc__h2_free(hc);
  if (hc->stream) fc__stream_end(hc->stream, 0);
  for (fc__answer_t *a = hc->h1 ? hc->h1->out_head : NULL, *next; a; a = next) {
    next = a->next;
    if (a->req) { /* its handler still holds it: it will see the connection gone */
      fc__req(a->req)->hc = NULL;
      fc__req(a->req)->slot = NULL;
    }
    if (a->frame) fc_frame_unref(a->frame);
    free(a);
  }
  if (hc->req) {
    /* A handler still holds the request: it will see the connection gone. */
    if (hc->state == HC_HANDLING && !(hc->h1 && hc->h1->deferred)) fc__req(hc->req)->hc = NULL;
    else fc__req_free(hc->req);
  }
  fc__http_h1_free(hc);
  free(hc);
}

static void go_on(fc_http_conn_t *hc);

/* Everything queued is written: a stream is told; a connection whose parsing
 * waited for its answers to go out (UNSENT_MAX) reads on. */
static void on_drained(fc_conn_t *c) {
  fc_http_conn_t *hc = fc_conn_ud(c);
  if (hc->h2) {
    fc__h2_drained(hc);
  } else if (hc->stream) {
    if (hc->stream->h->on_drained) hc->stream->h->on_drained(hc->stream);
  } else {
    go_on(hc);
  }
}

static const fc_conn_handler_t http_conn_handler = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_drained = on_drained,
    .on_close = on_close,
};

void fc__http_h1_free(fc_http_conn_t *hc) {
  if (!hc->h1) return;
  fc_buf_dispose(&hc->h1->pending);
  free(hc->h1);
  hc->h1 = NULL;
}

void fc_http_accept(fc_http_t *http, fc_conn_t *c) {
  fc_http_conn_t *hc = fc_xcalloc(1, sizeof *hc);
  hc->conn = c;
  hc->http = http;
  hc->since_ms = uv_now(fc_loop_uv(fc_conn_loop(c)));
  hc->h1 = fc_xcalloc(1, sizeof *hc->h1);
  llhttp_init(&hc->h1->parser, HTTP_REQUEST, &http->settings);
  hc->h1->parser.data = hc;
  fc_conn_set_handler(c, &http_conn_handler, hc);
  fc_http_stats.connections++;
  fc_http_stats.connections_total++;
  if (fc_loop_stopping(fc_conn_loop(c))) hc->stopping = true;
}

/* Queues one answer for writing; one that does not keep the connection
 * (the last owed: parsing stopped after its request) closes it. */
static bool send_answer(fc_http_conn_t *hc, fc_frame_t *f, bool keep) {
  fc_conn_send(hc->conn, f);
  fc_frame_unref(f);
  if (keep || hc->state == HC_STREAM) return true;
  hc->state = HC_CLOSING;
  fc_conn_close_linger(hc->conn);
  return false;
}

/* Sends the answers that are ready and next in line. */
static void send_ready(fc_http_conn_t *hc) {
  while (hc->h1->out_head && hc->h1->out_head->frame) {
    fc__answer_t *a = hc->h1->out_head;
    hc->h1->out_head = a->next;
    if (!hc->h1->out_head) hc->h1->out_tail = NULL;
    hc->h1->nout--;
    fc_frame_t *f = a->frame;
    bool keep = a->keep;
    free(a);
    if (!send_answer(hc, f, keep)) return;
  }
  if (hc->h1->out_head || hc->state == HC_HANDLING || hc->state == HC_STREAM) return;
  if (hc->stopping) {
    hc->state = HC_CLOSING;
    fc_conn_close(hc->conn, true);
  } else if (hc->state != HC_CLOSING) {
    fc_conn_read_start(hc->conn); /* finds an end of input seen meanwhile */
  }
}

/* After an answer: handles a request that waited for the answers before it,
 * and resumes the parser on what arrived meanwhile. */
static void go_on(fc_http_conn_t *hc) {
  if (hc->h1->in_execute || hc->state != HC_HANDLING || fc_conn_closing(hc->conn)) return;
  if (hc->h1->deferred) {
    if (hc->h1->out_head) return;
    hc->h1->deferred = false;
    if (hc->stopping) { /* never taken: the client may send it again */
      hc->state = HC_CLOSING;
      fc_conn_close(hc->conn, true);
      return;
    }
    hc->h1->in_execute = true; /* its answer must not re-enter this */
    handle(hc, hc->req);
    hc->h1->in_execute = false;
    if (hc->state == HC_STREAM) {
      fc_buf_t rest = hc->h1->pending;
      fc_buf_init(&hc->h1->pending);
      became_stream(hc, rest.data, rest.len);
      fc_buf_dispose(&rest);
      return;
    }
  }
  if (!read_on(hc)) return;
  llhttp_resume(&hc->h1->parser);
  fc_buf_t pending = hc->h1->pending;
  fc_buf_init(&hc->h1->pending);
  if (pending.len) execute(hc, pending.data, pending.len);
  fc_buf_dispose(&pending);
  if (hc->state == HC_IDLE || hc->state == HC_HEAD || hc->state == HC_BODY) fc_conn_read_start(hc->conn);
}

void fc__http_answer(fc_http_conn_t *hc, fc_req_t *req, fc_frame_t *f, bool keep) {
  fc_log_level_t level = fc__req(req)->status >= 500 ? FC_LOG_ERROR : FC_LOG_INFO;
  if (fc_log_enabled(level)) {
    fc_buf_t line;
    fc_buf_init(&line);
    fc__http_log_fields(req, &line);
    fc_log(level, "request", "%s", line.data);
    fc_buf_dispose(&line);
  }
  fc__answer_t *a = fc__req(req)->slot;
  if (hc && hc->req == req) hc->req = NULL;
  fc__req_free(req);
  if (!hc) return;
  if (!a && !hc->h1->out_head) { /* nothing owed before it: out at once */
    send_answer(hc, f, keep);
  } else {
    if (!a) a = owe(hc, NULL);
    a->req = NULL;
    a->frame = f;
    a->keep = keep;
    if (!keep) hc->state = HC_CLOSING; /* nothing after it is read */
    send_ready(hc);
  }
  go_on(hc);
}

/* Answers 408 to the request being read and closes (the header and body
 * timeouts). */
static void timed_out(fc_http_conn_t *hc, const char *what, unsigned ms) {
  fc_http_stats.timeouts_total++;
  fc_req_t *r = hc->req;
  fc__req(r)->keep_alive = false;
  if (!r->method_name) r->method_name = "-";
  if (hc->state == HC_BODY) fc_http_parse_target(r); /* for the log line: the head is complete */
  hc->state = HC_HANDLING;                           /* the request is answered outside the parser */
  fc_http_error(r, 408, "timeout", "%s within %u ms", what, ms);
}

/* One connection's timeouts (fc_http_tick). */
static void tick_conn(fc_conn_t *c, void *arg) {
  uint64_t now = *(const uint64_t *)arg;
  fc_http_conn_t *hc = fc_conn_ud(c);
  const fc_http_opts_t *o = &hc->http->opts;
  if (hc->h2 && !(o->send_timeout_ms && fc_conn_stalled_ms(c, now) > o->send_timeout_ms)) {
    fc__h2_tick(hc, now);
    return;
  }
  if (o->send_timeout_ms && fc_conn_stalled_ms(c, now) > o->send_timeout_ms) {
    /* Whatever it is doing, a peer that reads nothing of what it is sent
     * for this long is gone or hostile: what is queued is dropped. */
    fc_log(FC_LOG_INFO, "send timeout: connection closed", "unsent_bytes=%zu send_timeout_ms=%u", fc_conn_queued(c),
           o->send_timeout_ms);
    fc_conn_close(c, false); /* the state stays: on_close needs it to know who holds hc->req */
  } else if (hc->state == HC_HEAD && now - hc->since_ms > o->header_timeout_ms) {
    timed_out(hc, "request head not received", o->header_timeout_ms);
  } else if (hc->state == HC_BODY && now - hc->since_ms > o->body_timeout_ms) {
    timed_out(hc, "request body not received", o->body_timeout_ms);
  } else if (hc->state == HC_BODY && now - hc->h1->body_ms > o->idle_timeout_ms) {
    timed_out(hc, "no request body data received", o->idle_timeout_ms); /* a stopped body is idle */
  } else if (hc->state == HC_IDLE && !hc->h1->out_head && now - hc->since_ms > o->idle_timeout_ms) {
    /* Never while answers are owed: they go out first, however slow a commit. */
    hc->state = HC_CLOSING;
    fc_conn_close(c, false);
  }
}

void fc_http_tick(fc_loop_t *l, uint64_t now) { fc_loop_each_conn(l, &http_conn_handler, tick_conn, &now); }

/* One connection's part of a graceful stop (fc_http_stop). */
static void stop_conn(fc_conn_t *c, void *arg) {
  (void)arg;
  fc_http_conn_t *hc = fc_conn_ud(c);
  hc->stopping = true;
  if (hc->h2) {
    fc__h2_stop(hc);
  } else if (hc->state == HC_STREAM) {
    if (hc->stream->h->on_stop) hc->stream->h->on_stop(hc->stream);
    else fc_conn_close(c, true);
  } else if (hc->state == HC_IDLE || hc->state == HC_HEAD || hc->state == HC_BODY) {
    /* Nothing answered is lost: a request not fully received was never
     * taken, and answers still owed go out before the close. */
    hc->state = HC_CLOSING;
    if (hc->h1->out_head) fc_conn_read_stop(c);
    else fc_conn_close(c, true);
  }
}

void fc_http_stop(fc_loop_t *l) { fc_loop_each_conn(l, &http_conn_handler, stop_conn, NULL); }

fc_http_t *fc_http_new(const fc_http_opts_t *opts) {
  fc_http_t *http = fc_xcalloc(1, sizeof *http);
  http->opts = *opts;
  fc__http_init_settings(&http->settings);
  return http;
}

void fc_http_free(fc_http_t *http) { free(http); }

const fc_http_opts_t *fc_http_opts(const fc_http_t *http) { return &http->opts; }
