/* Responses: status line and headers, JSON bodies and errors, CORS, streams,
 * and the request log line. */
#include "http/internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *fc_http_reason(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

/* The Date header value, cached per thread and second. */
static void log_head(fc_req_t *req, fc_buf_t *out);

static const char *http_date(void) {
  static _Thread_local time_t cached_at;
  static _Thread_local char cached[40];
  time_t now = time(NULL);
  if (now != cached_at) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_at = now;
  }
  return cached;
}

void fc__http_cors_headers(fc_req_t *req, fc_buf_t *out) {
  const fc_http_opts_t *o = &req->http->opts;
  fc_str_t origin = fc_req_header(req, "origin");
  if (!origin.base || !o->cors_origins) return;
  for (const char *const *p = o->cors_origins; *p; p++) {
    if (strcmp(*p, "*") == 0) {
      fc_buf_puts(out, "Access-Control-Allow-Origin: *\r\n");
      return;
    }
    if (fc_str_eq(origin, *p)) {
      fc_buf_puts(out, "Access-Control-Allow-Origin: ");
      fc_buf_append(out, origin.base, origin.len);
      fc_buf_puts(out, "\r\nVary: Origin\r\n");
      if (o->cors_credentials) fc_buf_puts(out, "Access-Control-Allow-Credentials: true\r\n");
      return;
    }
  }
}

void fc__http_head_lines(fc_buf_t *b, fc_req_t *req, const char *extra) {
  fc_buf_printf(b, "Date: %s\r\nServer: flowcast\r\n", http_date());
  fc__http_cors_headers(req, b);
  if (extra) fc_buf_puts(b, extra);
}

static void head_into(fc_buf_t *b, fc_req_t *req, int status, const char *extra) {
  fc_buf_printf(b, "HTTP/1.1 %d %s\r\n", status, fc_http_reason(status));
  fc__http_head_lines(b, req, extra);
}

/* An HTTP/2 answer: the same header lines, as the stream's HEADERS. */
static void answer_h2(fc_req_t *req, int status, const char *content_type, const char *extra, const void *body,
                      size_t len, bool has_length) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc__http_head_lines(&b, req, extra);
  if (content_type) fc_buf_printf(&b, "Content-Type: %s\r\n", content_type);
  if (req->method == FC_HEAD || status == 204) len = 0;
  fc__h2_answer(req, status, &b, body, len, has_length && status != 204 && status != 304);
  fc_buf_dispose(&b);
}

/* Builds and sends an answer, ends the request. `has_length`: a
 * Content-Length is sent (not for the head of a close-delimited stream). */
static void answer(fc_req_t *req, int status, const char *content_type, const char *extra, const void *body, size_t len,
                   bool has_length) {
  fc__req_t *q = fc__req(req);
  if (q->answered) return;
  q->answered = true;
  q->status = status;
  if (status >= 500) fc_http_stats.responses_5xx++;
  else if (status >= 400) fc_http_stats.responses_4xx++;
  if (q->h2s) {
    answer_h2(req, status, content_type, extra, body, len, has_length);
    return;
  }
  fc_http_conn_t *hc = q->hc;
  fc_frame_t *f = NULL;
  bool keep = false;
  if (hc) {
    /* Stopping closes the connection after the last answer it owes (one
     * without a place in the queue goes last). */
    bool last = !q->slot || !q->slot->next;
    keep = q->keep_alive && !(hc->stopping && last);
    fc_buf_t b;
    fc_buf_init(&b);
    head_into(&b, req, status, extra);
    if (content_type) fc_buf_printf(&b, "Content-Type: %s\r\n", content_type);
    if (has_length && status != 204 && status != 304) fc_buf_printf(&b, "Content-Length: %zu\r\n", len);
    fc_buf_puts(&b, keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    if (req->method != FC_HEAD && status != 204) fc_buf_append(&b, body, len);
    q->out_bytes = b.len;
    size_t n;
    char *bytes = fc_buf_take(&b, &n);
    f = fc_frame_take(bytes, n);
  }
  fc__http_answer(hc, req, f, keep);
}

void fc_http_respond(fc_req_t *req, int status, const char *content_type, const char *extra, const void *body,
                     size_t len) {
  answer(req, status, content_type, extra, body, len, true);
}

void fc_http_respond_json(fc_req_t *req, int status, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(j);
  if (!s) {
    fc_http_error(req, 500, "internal", "the answer could not be encoded");
    return;
  }
  fc_http_respond(req, status, "application/json", NULL, s, strlen(s));
  free(s);
}

static void error_json(fc_req_t *req, int status, const char *code, const char *extra, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap); /* a cut multi-byte character becomes U+FFFD */
  fc_buf_t b;
  fc_buf_init(&b);
  fc_json_error(&b, code, msg);
  fc_http_respond(req, status, "application/json", extra, b.data, b.len);
  fc_buf_dispose(&b);
}

void fc_http_error(fc_req_t *req, int status, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_json(req, status, code, NULL, fmt, ap);
  va_end(ap);
}

fc_stream_t *fc_http_stream(fc_req_t *req, int status, const char *extra_headers, const fc_stream_handler_t *h,
                            void *ud) {
  fc__req_t *q = fc__req(req);
  if (req->method == FC_HEAD && status != 101) {
    /* The head alone, as GET would send it: close-delimited, so no length. */
    answer(req, status, NULL, extra_headers, "", 0, false);
    return NULL;
  }
  fc_http_conn_t *hc = q->hc;
  q->answered = true;
  q->status = status;
  if (q->h2s) {
    fc_buf_t lines;
    fc_buf_init(&lines);
    fc__http_head_lines(&lines, req, extra_headers);
    fc_stream_t *s = fc__h2_stream(req, status, &lines, h, ud);
    fc_buf_dispose(&lines);
    return s;
  }
  /* Requests that may become streams never overlap others (fc_route_t). */
  assert(hc->h1->out_head == NULL);
  fc_buf_t b;
  fc_buf_init(&b);
  head_into(&b, req, status, extra_headers);
  fc_buf_puts(&b, status == 101 ? "\r\n" : "Connection: close\r\n\r\n");
  fc_conn_send_copy(hc->conn, b.data, b.len);
  fc_buf_dispose(&b);
  fc_stream_t *s = fc__stream_new(req, hc->conn, h, ud);
  hc->stream = s;
  hc->state = HC_STREAM;
  hc->req = NULL;
  fc__req_free(req);
  /* Inside the parser, it ends the parse and frees this; a handler that
   * answered later (after a read, say) leaves nothing to parse. */
  if (!hc->h1->in_execute && !hc->h1->pending.len) fc__http_h1_free(hc);
  return s;
}

/* What a stream's log line says of it, kept from its start to its end. */
struct fc__stream_log {
  uint64_t start_ms;
  uint64_t bytes; /* HTTP/1.1: the connection's bytes written before it; HTTP/2: its bytes sent */
  char text[];    /* "method=.. target=.. status=.. in_bytes=N", a NUL, then the peer */
};

fc_stream_t *fc__stream_new(fc_req_t *req, fc_conn_t *conn, const fc_stream_handler_t *h, void *ud) {
  fc_stream_t *s = fc_xcalloc(1, sizeof *s);
  s->conn = conn;
  s->loop = fc_conn_loop(conn);
  s->h = h;
  s->ud = ud;
  s->h2s = fc__req(req)->h2s;
  if (!fc_log_enabled(FC_LOG_INFO)) return s;
  fc_buf_t text;
  fc_buf_init(&text);
  log_head(req, &text);
  fc_buf_printf(&text, " in_bytes=%zu", req->body.len);
  char peer[64] = "-";
  fc_conn_peer(conn, peer, sizeof peer);
  fc_buf_append(&text, "", 1);
  fc_buf_puts(&text, peer);
  s->log = fc_xmalloc(sizeof *s->log + text.len + 1);
  s->log->start_ms = fc_mono_ms();
  s->log->bytes = s->h2s ? 0 : fc_conn_written(conn);
  memcpy(s->log->text, text.data, text.len + 1);
  fc_buf_dispose(&text);
  return s;
}

void fc__stream_sent(fc_stream_t *s, size_t n) {
  if (s->log) s->log->bytes += n;
}

void fc__stream_end(fc_stream_t *s, int h2_id) {
  if (s->h->on_close) s->h->on_close(s);
  struct fc__stream_log *l = s->log;
  if (l) {
    const char *peer = l->text + strlen(l->text) + 1;
    uint64_t sent = s->h2s ? l->bytes : fc_conn_written(s->conn) - l->bytes;
    char id[32] = "";
    if (h2_id) snprintf(id, sizeof id, " h2_stream=%d", h2_id);
    fc_log(FC_LOG_INFO, "stream", "%s bytes=%llu ms=%llu peer=%s%s", l->text, (unsigned long long)sent,
           (unsigned long long)(fc_mono_ms() - l->start_ms), peer, id);
    free(l);
  }
  free(s);
}

void fc_stream_close(fc_stream_t *s, bool flush) {
  if (s->h2s) fc__h2s_close(s->h2s, flush);
  else fc_conn_close(s->conn, flush);
}

int fc_stream_send(fc_stream_t *s, fc_frame_t *f) {
  return s->h2s ? fc__h2s_send(s->h2s, f, true) : fc_conn_send(s->conn, f);
}

int fc_stream_send_copy(fc_stream_t *s, const void *p, size_t n) {
  if (!s->h2s) return fc_conn_send_copy(s->conn, p, n);
  fc_frame_t *f = fc_frame_copy(p, n);
  int rc = fc__h2s_send(s->h2s, f, true);
  fc_frame_unref(f);
  return rc;
}

size_t fc_stream_queued(const fc_stream_t *s) { return s->h2s ? fc__h2s_queued(s->h2s) : fc_conn_queued(s->conn); }

void fc_stream_set_bound(fc_stream_t *s, size_t bytes) {
  if (s->h2s) fc__h2s_set_bound(s->h2s, bytes);
  else fc_conn_set_bound(s->conn, bytes);
}

size_t fc_stream_bound(const fc_stream_t *s) { return s->h2s ? fc__h2s_bound(s->h2s) : fc_conn_bound(s->conn); }

/* HTTP/2 streams share their connection: its writes are never held. */
void fc_stream_set_bulk(fc_stream_t *s, bool bulk) {
  if (!s->h2s) fc_conn_set_bulk(s->conn, bulk);
}

/* Appends the target with token-bearing query values replaced. */
static void redacted_target(fc_req_t *req, fc_buf_t *out) {
  fc_buf_append(out, req->path.base, req->path.len);
  if (!req->query.len) return;
  fc_buf_append(out, "?", 1);
  const char *p = req->query.base, *end = p + req->query.len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    if (!amp) amp = end;
    const char *eq = memchr(p, '=', (size_t)(amp - p));
    size_t klen = eq ? (size_t)(eq - p) : (size_t)(amp - p);
    bool secret = (klen == 12 && memcmp(p, "access_token", 12) == 0) || (klen == 5 && memcmp(p, "token", 5) == 0) ||
                  (klen == 8 && memcmp(p, "password", 8) == 0);
    if (secret && eq) {
      fc_buf_append(out, p, klen);
      fc_buf_puts(out, "=REDACTED");
    } else {
      fc_buf_append(out, p, (size_t)(amp - p));
    }
    if (amp < end) fc_buf_append(out, "&", 1);
    p = amp + 1;
  }
}

static void log_head(fc_req_t *req, fc_buf_t *out) {
  fc_buf_t target;
  fc_buf_init(&target);
  if (req->path.base) redacted_target(req, &target);
  else fc_buf_puts(&target, "-");
  fc_buf_printf(out, "method=%s target=", req->method_name ? req->method_name : "-");
  fc_log_quote(out, target.data, target.len);
  fc_buf_printf(out, " status=%d", fc__req(req)->status);
  fc_buf_dispose(&target);
}

void fc__http_log_fields(fc_req_t *req, fc_buf_t *out) {
  fc__req_t *q = fc__req(req);
  char peer[64] = "-";
  if (q->hc) fc_conn_peer(q->hc->conn, peer, sizeof peer);
  log_head(req, out);
  fc_buf_printf(out, " bytes=%zu in_bytes=%zu ms=%llu peer=%s", q->out_bytes, req->body.len,
                (unsigned long long)(fc_mono_ms() - q->start_ms), peer);
}

void fc_http_error_with(fc_req_t *req, int status, const char *extra, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_json(req, status, code, extra, fmt, ap);
  va_end(ap);
}
