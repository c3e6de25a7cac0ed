/* HTTP/2 with nghttp2: each stream is a request that goes through the same
 * routes, limits, authorization and logging as an HTTP/1.1 one; answers and
 * transport streams (SSE) are the stream's own queue of shared frames, which
 * nghttp2 pulls as DATA when the stream's flow-control window allows. A
 * stalled stream stops only itself; what it leaves queued counts against its
 * bound, as an HTTP/1.1 subscriber's connection queue does. */
#include <ctype.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"

/* While the connection has this much unsent, nghttp2 keeps its frames: a
 * peer that reads nothing fills the streams' queues, which are bounded. */
#define CONN_HIGH (256 * 1024)
/* Per connection and second, past these the peer is flooding: GOAWAY
 * ENHANCE_YOUR_CALM and close (rapid reset, SETTINGS and PING floods). */
#define RESETS_PER_S 100
#define SETTINGS_PER_S 50
#define PINGS_PER_S 50
/* Decoded header bytes of one request past this many times the head limit:
 * a decompression bomb, the connection ends (below it: 431 and go on). */
#define BOMB_FACTOR 4
#define ANSWER_FIELDS 40
#define SUBMIT_BATCH 64 /* DATA sources submitted at once (submit_some) */

struct fc__h2s {
  fc__h2_t *h;
  fc__h2s_t *prev, *next; /* in h->streams */
  fc_req_t *req;          /* being received, or handled (dispatched); NULL once answered */
  fc_stream_t *stream;    /* once a transport's (fc_http_stream) */
  union {
    fc_frame_t *one;   /* qcap 1: the one frame queued, held in place */
    fc_frame_t **ring; /* qcap 4 and more: a ring on the heap, oldest first */
  } q;                 /* frames to send; qcap 0: none */
  size_t queued;       /* bytes in q not yet handed to nghttp2 */
  size_t bound;        /* fc__h2s_send refuses past this (0: none) */
  uint32_t qhead, qlen, qcap, qoff;
  int32_t id;
  uint32_t opened_ms;  /* loop time it opened (truncated), to tell a rapid reset */
  uint32_t head_bytes; /* its header lists' bytes, trailers too (bounded by its limits) */
  bool dispatched;
  bool eof;         /* END_STREAM after the queue */
  bool data_on;     /* nghttp2 holds a DATA source of the stream (an outbound item) */
  bool data_ending; /* that source gave its last bytes without END_STREAM: it ends once they are sent */
  bool reset;       /* RST_STREAM submitted */
};

struct fc__h2 {
  fc_http_conn_t *hc;
  nghttp2_session *ng;
  uv_idle_t idle; /* runs flush() outside whatever callback asked for it */
  fc__h2s_t *streams;
  fc__h2s_t *cursor; /* where submit_some goes on; NULL: the head */
  unsigned nstreams;
  int depth;         /* inside nghttp2: sending waits */
  bool scheduled;    /* idle is active */
  bool goaway;       /* shutdown: close once the last stream ends */
  bool ping_out;     /* a keepalive PING waits for its ACK */
  const char *abuse; /* a flood seen while receiving: the connection ends */
  bool resubmit;     /* a stream has data or its end to send and no DATA source (submit_some) */
  uint64_t last_recv_ms, last_active_ms, window_ms;
  unsigned resets, settings, pings; /* in the current second */
};

static fc_loop_t *loop_of(fc__h2_t *h) { return fc_conn_loop(h->hc->conn); }
static uint64_t now_of(fc__h2_t *h) { return uv_now(fc_loop_uv(loop_of(h))); }

/* The queue's i-th frame, oldest first. */
static fc_frame_t **at(fc__h2s_t *s, uint32_t i) {
  return s->qcap == 1 ? &s->q.one : &s->q.ring[(s->qhead + i) % s->qcap];
}

/* The queue is empty: an idle stream holds no ring. */
static void ring_free(fc__h2s_t *s) {
  if (s->qcap > 1) free(s->q.ring);
  s->q.ring = NULL;
  s->qcap = s->qhead = 0;
}

static void queue_clear(fc__h2s_t *s) {
  for (; s->qlen; s->qlen--, s->qhead = (s->qhead + 1) % s->qcap) fc_frame_unref(*at(s, 0));
  ring_free(s);
  s->qoff = 0;
  s->queued = 0;
}

static void flush(fc__h2_t *h);

static void on_idle(uv_idle_t *t) {
  fc__h2_t *h = t->data;
  uv_idle_stop(t);
  h->scheduled = false;
  flush(h);
}

/* Frames go out at the next loop turn: whatever asked (a hub delivery, a
 * handler) is never re-entered by a stream that ends while sending. */
static void schedule(fc__h2_t *h) {
  if (h->scheduled || fc_conn_closing(h->hc->conn)) return;
  h->scheduled = true;
  uv_idle_start(&h->idle, on_idle);
}

/* The stream is gone (closed, reset, or its connection closed): its transport
 * and request learn it, its memory goes. */
static void stream_gone(fc__h2s_t *s) {
  fc__h2_t *h = s->h;
  if (s->prev) s->prev->next = s->next;
  else h->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  if (h->cursor == s) h->cursor = s->next;
  h->nstreams--;
  h->last_active_ms = now_of(h);
  if (s->stream) fc__stream_end(s->stream, s->id);
  if (s->req) {
    fc__req_t *q = fc__req(s->req);
    if (s->dispatched) { /* its handler still holds it: it will see the stream gone */
      q->h2s = NULL;
      q->hc = NULL;
    } else {
      fc__req_free(s->req);
    }
  }
  queue_clear(s);
  free(s);
}

static ssize_t read_data(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud) {
  (void)ng, (void)id, (void)ud;
  fc__h2s_t *s = src->ptr;
  size_t n = 0;
  while (n < len && s->qlen) {
    fc_frame_t *f = *at(s, 0);
    size_t k = f->len - s->qoff < len - n ? f->len - s->qoff : len - n;
    memcpy(buf + n, f->bytes + s->qoff, k);
    n += k;
    s->qoff += (uint32_t)k;
    if (s->qoff == f->len) {
      fc_frame_unref(f);
      s->qoff = 0;
      s->qhead = (s->qhead + 1) % s->qcap;
      s->qlen--;
    }
  }
  s->queued -= n;
  if (s->stream) fc__stream_sent(s->stream, n);
  if (s->qlen) return (ssize_t)n;
  ring_free(s);
  /* The queue is empty: the source ends (nghttp2 frees its item) and the
   * next frame queued submits a new one, so an idle stream holds none. */
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!s->eof) {
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    s->data_ending = true;
  }
  if (n && s->stream && s->stream->h->on_drained) s->stream->h->on_drained(s->stream);
  return (ssize_t)n;
}

/* Response header lines ("Name: value\r\n", edited in place: names in lower
 * case) as HTTP/2 fields, the connection-specific ones left out. */
static size_t head_fields(char *p, size_t len, nghttp2_nv *nv, size_t max) {
  static const char *const skip[] = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"};
  char *end = p + len;
  size_t n = 0;
  while (p < end && n < max) {
    char *eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol) eol = end;
    char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon) {
      char *v = colon + 1;
      while (v < eol && *v == ' ') v++;
      for (char *c = p; c < colon; c++) *c = (char)tolower((unsigned char)*c);
      bool keep = true;
      for (size_t i = 0; i < FC_ARRAY_LEN(skip); i++)
        if ((size_t)(colon - p) == strlen(skip[i]) && memcmp(p, skip[i], (size_t)(colon - p)) == 0) keep = false;
      if (keep)
        nv[n++] =
            (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p), (size_t)(eol - v), NGHTTP2_NV_FLAG_NONE};
    }
    p = eol + 2;
  }
  return n;
}

/* The stream has frames to send: flush() gives it a DATA source (submit_some). */
static void need_data(fc__h2s_t *s) {
  if (s->data_on || s->reset) return;
  s->h->resubmit = true;
  schedule(s->h);
}

/* Gives nghttp2 a DATA source pulling from the stream's queue, when it has
 * none. */
static void want_data(fc__h2s_t *s) {
  if (s->data_on || s->reset) return;
  nghttp2_data_provider prov = {.source.ptr = s, .read_callback = read_data};
  int rc = nghttp2_submit_data(s->h->ng, NGHTTP2_FLAG_END_STREAM, s->id, &prov);
  if (rc == 0) s->data_on = true;
  else if (rc == NGHTTP2_ERR_DATA_EXIST) s->h->resubmit = true; /* the last one is not let go yet */
  schedule(s->h);
}

enum { HEAD_ONLY, HEAD_END, HEAD_DATA }; /* a stream's head; an answer without, or with, a body */

/* Submits the stream's HEADERS: `how` says whether the stream ends with them,
 * goes on with a DATA source pulling from its queue, or stays open (a
 * transport's stream, whose DATA sources come as it queues frames). */
static int submit_head(fc__h2s_t *s, int status, const fc_buf_t *head, const char *length, int how) {
  char st[8];
  snprintf(st, sizeof st, "%d", status);
  char *lines = fc_xstrndup(head->data ? head->data : "", head->len);
  nghttp2_nv nv[ANSWER_FIELDS + 2];
  size_t n = 0;
  nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE};
  n += head_fields(lines, head->len, nv + n, ANSWER_FIELDS);
  if (length) nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)length, 14, strlen(length), 0};
  nghttp2_data_provider prov = {.source.ptr = s, .read_callback = read_data};
  int rc;
  if (how == HEAD_ONLY) {
    rc = nghttp2_submit_headers(s->h->ng, NGHTTP2_FLAG_NONE, s->id, NULL, nv, n, NULL);
  } else {
    rc = nghttp2_submit_response(s->h->ng, s->id, nv, n, how == HEAD_DATA ? &prov : NULL);
    s->data_on = how == HEAD_DATA;
  }
  free(lines);
  schedule(s->h);
  return rc;
}

/* Queues a frame: the first in place (a keepalive to every stream allocates
 * nothing), more in a ring. */
static void push(fc__h2s_t *s, fc_frame_t *f) {
  if (s->qlen == s->qcap && s->qcap == 0) {
    s->qcap = 1;
  } else if (s->qlen == s->qcap) {
    uint32_t cap = s->qcap == 1 ? 4 : s->qcap * 2;
    fc_frame_t **q = fc_xmalloc(cap * sizeof *q);
    for (uint32_t i = 0; i < s->qlen; i++) q[i] = *at(s, i);
    if (s->qcap > 1) free(s->q.ring);
    s->q.ring = q;
    s->qhead = 0;
    s->qcap = cap;
  }
  *at(s, s->qlen++) = fc_frame_ref(f);
  s->queued += f->len;
}

void fc__h2_answer(fc_req_t *req, int status, const fc_buf_t *head, const void *body, size_t len, bool has_length) {
  fc__req_t *q = fc__req(req);
  fc__h2s_t *s = q->h2s;
  char length[24];
  snprintf(length, sizeof length, "%zu", len);
  if (len) {
    fc_frame_t *f = fc_frame_copy(body, len);
    push(s, f);
    fc_frame_unref(f);
  }
  s->eof = true;
  q->out_bytes = head->len + len;
  if (submit_head(s, status, head, has_length ? length : NULL, len ? HEAD_DATA : HEAD_END) != 0)
    fc__h2s_close(s, false);
  s->req = NULL;
  fc__http_answer(NULL, req, NULL, false); /* the log line, and the request is freed */
}

fc_stream_t *fc__h2_stream(fc_req_t *req, int status, const fc_buf_t *head, const fc_stream_handler_t *h, void *ud) {
  fc__req_t *q = fc__req(req);
  fc__h2s_t *s = q->h2s;
  fc_stream_t *st = fc__stream_new(req, s->h->hc->conn, h, ud);
  s->stream = st;
  s->req = NULL;
  fc__req_free(req);
  if (submit_head(s, status == 101 ? 400 : status, head, NULL, HEAD_ONLY) != 0) fc__h2s_close(s, false);
  return st;
}

int fc__h2s_send(fc__h2s_t *s, fc_frame_t *f, bool bounded) {
  if (s->eof || s->reset) return -EPIPE;
  if (bounded && s->bound && s->queued + f->len > s->bound) return -ENOBUFS;
  if (!f->len) return 0;
  push(s, f);
  need_data(s);
  return 0;
}

size_t fc__h2s_queued(const fc__h2s_t *s) { return s->queued; }
void fc__h2s_set_bound(fc__h2s_t *s, size_t bytes) { s->bound = bytes; }
size_t fc__h2s_bound(const fc__h2s_t *s) { return s->bound; }

void fc__h2s_close(fc__h2s_t *s, bool flush_first) {
  if (s->reset || (s->eof && flush_first)) return;
  if (flush_first) {
    s->eof = true;
    need_data(s);
  } else {
    s->reset = true;
    queue_clear(s); /* what it held is freed now, not when the peer reads */
    nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
  }
  schedule(s->h);
}

/* DATA sources for streams that have frames (or their end) to send and none:
 * SUBMIT_BATCH at a time, each batch sent (and its items freed) before the
 * next, so an event or keepalive to 1,000 streams never holds 1,000 of
 * nghttp2's items at once. Returns whether any was submitted. */
static bool submit_some(fc__h2_t *h) {
  h->resubmit = false;
  unsigned n = 0;
  /* From where the last batch stopped, once round the list: a round to
   * 1,000 streams looks at each once, not once per batch. */
  fc__h2s_t *s = h->cursor ? h->cursor : h->streams;
  h->cursor = NULL;
  for (unsigned seen = 0; s && seen < h->nstreams; seen++, s = s->next ? s->next : h->streams) {
    if (!s->stream || s->data_on || s->reset || !(s->qlen || s->eof)) continue;
    if (n == SUBMIT_BATCH) {
      h->resubmit = true;
      h->cursor = s;
      break;
    }
    want_data(s);
    n += s->data_on;
  }
  return n > 0;
}

/* Sends what nghttp2 has ready, as one frame, while the connection's queue is
 * under CONN_HIGH; closes the connection once the session is done. */
static void flush(fc__h2_t *h) {
  fc_conn_t *c = h->hc->conn;
  if (h->depth || fc_conn_closing(c)) return;
  fc_buf_t out;
  fc_buf_init(&out);
  h->depth++;
  ssize_t n = 0;
  while (fc_conn_queued(c) + out.len < CONN_HIGH) {
    const uint8_t *d;
    n = nghttp2_session_mem_send(h->ng, &d);
    if (n < 0) break;
    if (n == 0 && !(h->resubmit && submit_some(h))) break;
    if (n > 0) fc_buf_append(&out, d, (size_t)n);
  }
  h->depth--;
  if (out.len) {
    size_t len;
    char *bytes = fc_buf_take(&out, &len);
    fc_frame_t *f = fc_frame_take(bytes, len);
    fc_conn_send(c, f);
    fc_frame_unref(f);
  }
  fc_buf_dispose(&out);
  bool done = !nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng);
  if (n < 0 || done || (h->goaway && h->nstreams == 0)) fc_conn_close(c, true);
}

static fc__h2s_t *stream_of(fc__h2_t *h, int32_t id) { return nghttp2_session_get_stream_user_data(h->ng, id); }

static unsigned method_bit(const char *m) {
  static const struct {
    const char *name;
    unsigned bit;
  } methods[] = {{"GET", FC_GET},       {"POST", FC_POST},       {"PUT", FC_PUT},
                 {"DELETE", FC_DELETE}, {"OPTIONS", FC_OPTIONS}, {"HEAD", FC_HEAD}};
  for (size_t i = 0; i < FC_ARRAY_LEN(methods); i++)
    if (strcmp(m, methods[i].name) == 0) return methods[i].bit;
  return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *fr, void *ud) {
  fc__h2_t *h = ud;
  if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  fc__h2s_t *s = fc_xcalloc(1, sizeof *s);
  s->h = h;
  s->id = fr->hd.stream_id;
  s->opened_ms = (uint32_t)now_of(h);
  s->next = h->streams;
  if (s->next) s->next->prev = s;
  h->streams = s;
  h->nstreams++;
  fc_http_stats.h2_streams_total++;
  fc_req_t *r = fc__req_new();
  fc__req_t *q = fc__req(r);
  q->hc = h->hc;
  q->h2s = s;
  r->http = h->hc->http;
  r->loop = loop_of(h);
  q->start_ms = fc_mono_ms();
  q->keep_alive = true;
  s->req = r;
  nghttp2_session_set_stream_user_data(ng, s->id, s);
  if (s->id == INT32_MAX && !h->goaway) { /* no id is left: the client must reconnect, say so */
    h->goaway = true;
    nghttp2_submit_goaway(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR, NULL, 0);
  }
  return 0;
}

/* Keeps a field of the request's head: pseudo-fields give the method and
 * target (and :authority the Host), the rest go to the header table. */
static int keep_field(fc__h2s_t *s, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
  fc_req_t *r = s->req;
  fc__req_t *q = fc__req(r);
  if (nlen && name[0] == ':') {
    if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
      r->method_name = fc_req_strndup(r, (const char *)value, vlen);
      r->method = method_bit(r->method_name);
    } else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
      if (vlen > r->http->opts.max_url_bytes) {
        q->h2_err_status = 414;
        return 0;
      }
      q->h2_url_off = (uint32_t)q->raw.len;
      q->h2_url_len = (uint32_t)vlen;
      q->h2_has_url = true;
      fc_buf_append(&q->raw, value, vlen);
    } else if (nlen == 10 && memcmp(name, ":authority", 10) == 0) {
      name = (const uint8_t *)"host", nlen = 4;
    } else {
      return 0;
    }
    if (nlen != 4) return 0;
  }
  size_t *o = fc__req_field(q);
  if (!o) {
    q->h2_err_status = 431;
    return 0;
  }
  o[0] = q->raw.len, o[1] = nlen;
  fc_buf_append(&q->raw, name, nlen);
  o[2] = q->raw.len, o[3] = vlen;
  fc_buf_append(&q->raw, value, vlen);
  return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
  (void)ng, (void)flags;
  fc__h2_t *h = ud;
  fc__h2s_t *s = stream_of(h, fr->hd.stream_id);
  if (!s) return 0;
  size_t max = h->hc->http->opts.max_header_bytes;
  s->head_bytes += (uint32_t)(nlen + vlen + 32); /* as SETTINGS_MAX_HEADER_LIST_SIZE counts */
  if (s->head_bytes > BOMB_FACTOR * max) {
    h->abuse = "header list flood (HPACK bomb or CONTINUATION flood)";
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  if (!s->req || s->dispatched || fr->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* trailers: counted, not kept */
  fc__req_t *q = fc__req(s->req);
  if (s->head_bytes > max) q->h2_err_status = 431;
  if (q->h2_err_status) return 0;
  return keep_field(s, name, nlen, value, vlen);
}

/* The head is in: the table points into the raw bytes, which no longer move. */
static void head_done(fc__h2s_t *s) {
  fc_req_t *r = s->req;
  fc__req_t *q = fc__req(r);
  r->url = q->h2_has_url ? (fc_str_t){q->raw.data + q->h2_url_off, q->h2_url_len} : (fc_str_t){"", 0};
  fc__req_fields_done(q);
  if (!r->method_name) r->method_name = "-";
  fc_str_t cl = fc_req_header(r, "content-length");
  uint64_t len;
  if (!q->h2_err_status && cl.base && fc_parse_u64(cl.base, cl.len, &len) == 0 && len > r->http->opts.max_body_bytes)
    q->h2_err_status = 413;
}

/* Answers a request refused by a limit, with HTTP/1.1's codes and messages. */
static void refuse(fc__h2s_t *s) {
  fc_req_t *r = s->req;
  fc__req_t *q = fc__req(r);
  const fc_http_opts_t *o = &r->http->opts;
  s->dispatched = true;
  if (q->h2_has_url) fc_http_parse_target(r); /* for the log line */
  if (q->h2_err_status == 413) fc_http_error(r, 413, "body_too_large", "body larger than %zu bytes", o->max_body_bytes);
  else if (q->h2_err_status == 414)
    fc_http_error(r, 414, "uri_too_long", "request target longer than %zu bytes", o->max_url_bytes);
  else fc_http_error(r, 431, "headers_too_large", "request head larger than %zu bytes", o->max_header_bytes);
}

/* The whole request is in: route and handle it as HTTP/1.1 does. */
static void complete(fc__h2s_t *s) {
  fc_req_t *r = s->req;
  s->dispatched = true;
  fc_http_stats.requests_total++;
  if (!r->body.data) fc_buf_append(&r->body, "", 0);
  int rc = fc__req(r)->h2_has_url ? fc_http_parse_target(r) : -EINVAL;
  if (rc == -E2BIG) {
    fc_http_error(r, 414, "uri_too_long", "request target has more than %d path segments", FC_HTTP_MAX_SEGMENTS);
  } else if (rc < 0) {
    fc_http_error(r, 400, "bad_request", "malformed or missing request target");
  } else {
    fc__http_route(r);
    fc__http_dispatch(r);
  }
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud) {
  (void)ng, (void)flags;
  fc__h2s_t *s = stream_of(ud, id);
  if (!s || !s->req || s->dispatched) return 0;
  fc_req_t *r = s->req;
  if (r->body.len + len > r->http->opts.max_body_bytes) {
    fc__req(r)->h2_err_status = 413;
    refuse(s);
    return 0;
  }
  fc_buf_append(&r->body, data, len);
  return 0;
}

/* Counts a frame of a kind a flood is made of; past `max` this second the
 * connection ends. Returns 0 or NGHTTP2_ERR_CALLBACK_FAILURE. */
static int count(fc__h2_t *h, unsigned *n, unsigned max, const char *what) {
  uint64_t now = now_of(h);
  if (now - h->window_ms >= 1000) {
    h->window_ms = now;
    h->resets = h->settings = h->pings = 0;
  }
  if (++*n <= max) return 0;
  h->abuse = what;
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *fr, void *ud) {
  (void)ng;
  fc__h2_t *h = ud;
  h->last_recv_ms = h->last_active_ms = now_of(h);
  fc__h2s_t *s = fr->hd.stream_id ? stream_of(h, fr->hd.stream_id) : NULL;
  switch (fr->hd.type) {
    case NGHTTP2_RST_STREAM: /* a stream reset within a second of its opening: the rapid-reset pattern */
      if (s && (uint32_t)h->last_recv_ms - s->opened_ms >= 1000) return 0;
      return count(h, &h->resets, RESETS_PER_S, "rapid reset");
    case NGHTTP2_SETTINGS:
      return fr->hd.flags & NGHTTP2_FLAG_ACK ? 0 : count(h, &h->settings, SETTINGS_PER_S, "SETTINGS flood");
    case NGHTTP2_PING:
      if (fr->hd.flags & NGHTTP2_FLAG_ACK) {
        h->ping_out = false;
        return 0;
      }
      return count(h, &h->pings, PINGS_PER_S, "PING flood");
    case NGHTTP2_HEADERS:
      if (!s || !s->req || s->dispatched || fr->headers.cat != NGHTTP2_HCAT_REQUEST) break;
      head_done(s);
      if (fc__req(s->req)->h2_err_status) {
        refuse(s);
        return 0;
      }
      break;
    case NGHTTP2_DATA: break;
    default: return 0;
  }
  if (s && s->req && !s->dispatched && (fr->hd.flags & NGHTTP2_FLAG_END_STREAM)) complete(s);
  return 0;
}

/* The last frame of a DATA source that ended without END_STREAM is out: the
 * stream has no source now. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *fr, void *ud) {
  (void)ng;
  fc__h2_t *h = ud;
  fc__h2s_t *s = fr->hd.type == NGHTTP2_DATA ? stream_of(h, fr->hd.stream_id) : NULL;
  if (!s || !s->data_ending) return 0;
  s->data_ending = false;
  s->data_on = false;
  if (s->qlen || s->eof) h->resubmit = true;
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t err, void *ud) {
  (void)err;
  fc__h2s_t *s = stream_of(ud, id);
  if (!s) return 0;
  nghttp2_session_set_stream_user_data(ng, id, NULL);
  stream_gone(s);
  return 0;
}

static nghttp2_session_callbacks *callbacks_new(void) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs) != 0) abort();
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  return cbs;
}

/* The session's limits: the flood protections nghttp2 has, and ours. */
static nghttp2_session *session_new(fc__h2_t *h) {
  nghttp2_session_callbacks *cbs = callbacks_new();
  nghttp2_option *opt;
  if (nghttp2_option_new(&opt) != 0) abort();
  nghttp2_option_set_max_settings(opt, 32);      /* entries in one SETTINGS frame */
  nghttp2_option_set_max_outbound_ack(opt, 100); /* SETTINGS/PING ACKs a peer leaves unread */
  nghttp2_option_set_max_continuations(opt, 8);  /* CONTINUATION frames after one HEADERS */
  nghttp2_option_set_stream_reset_rate_limit(opt, 2 * RESETS_PER_S, RESETS_PER_S);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  nghttp2_session *ng = NULL;
  if (nghttp2_session_server_new2(&ng, cbs, h, opt) != 0) abort();
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  const fc_http_opts_t *o = &h->hc->http->opts;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->h2_max_streams ? o->h2_max_streams : 1000},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)o->max_header_bytes},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv, FC_ARRAY_LEN(iv));
  return ng;
}

void fc__h2_start(fc_http_conn_t *hc, const char *p, size_t n) {
  fc__h2_t *h = fc_xcalloc(1, sizeof *h);
  h->hc = hc;
  hc->h2 = h;
  hc->state = HC_H2;
  fc__http_h1_free(hc);
  uv_idle_init(fc_loop_uv(loop_of(h)), &h->idle);
  h->idle.data = h;
  h->ng = session_new(h);
  h->last_recv_ms = h->last_active_ms = h->window_ms = now_of(h);
  fc_http_stats.h2_connections_total++;
  if (hc->stopping) fc__h2_stop(hc);
  fc__h2_on_data(hc, p, n);
}

/* A peer that broke the protocol or flooded: GOAWAY, then close. */
static void end_session(fc__h2_t *h, int rc) {
  char peer[64];
  fc_conn_peer(h->hc->conn, peer, sizeof peer);
  uint32_t code = h->abuse ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR;
  if (h->abuse) fc_http_stats.h2_goaway_abuse++;
  fc_log(h->abuse ? FC_LOG_WARN : FC_LOG_DEBUG, "http2 connection ended", "peer=%s reason=\"%s\"", peer,
         h->abuse ? h->abuse : nghttp2_strerror(rc));
  if (rc == NGHTTP2_ERR_FLOODED) { /* it reads nothing: no goodbye */
    fc_conn_close(h->hc->conn, false);
    return;
  }
  nghttp2_session_terminate_session(h->ng, code);
  h->goaway = true;
  flush(h);
  fc_conn_close(h->hc->conn, true);
}

/* Input is fed to nghttp2 a slice at a time, with a flush after each: a
 * client that opens a thousand streams in one write has their answers' heads
 * and first bytes sent (and freed) a few dozen at a time, so the memory they
 * needed meanwhile is reused instead of left as holes among the streams that
 * stay (130 to 200 bytes of RSS per idle stream with h2load's 1,000 streams a
 * connection). */
#define RECV_SLICE 1024

void fc__h2_on_data(fc_http_conn_t *hc, const char *p, size_t n) {
  fc__h2_t *h = hc->h2;
  while (n > 0 && !fc_conn_closing(hc->conn)) {
    size_t k = n < RECV_SLICE ? n : RECV_SLICE;
    h->depth++;
    ssize_t rc = nghttp2_session_mem_recv(h->ng, (const uint8_t *)p, k);
    h->depth--;
    if (rc < 0 || h->abuse) {
      end_session(h, (int)rc);
      return;
    }
    flush(h);
    p += k;
    n -= k;
  }
}

void fc__h2_drained(fc_http_conn_t *hc) { schedule(hc->h2); }

/* Requests still arriving past the head and body timeouts are reset: a
 * stream that never ends its request holds a request object. */
static void expire_requests(fc__h2_t *h, uint64_t now) {
  const fc_http_opts_t *o = &h->hc->http->opts;
  uint32_t limit = o->header_timeout_ms + o->body_timeout_ms;
  for (fc__h2s_t *s = h->streams; s; s = s->next) {
    if (!s->req || s->dispatched || s->reset || (uint32_t)now - s->opened_ms <= limit) continue;
    fc_http_stats.timeouts_total++;
    fc__req_free(s->req);
    s->req = NULL;
    fc__h2s_close(s, false);
  }
}

void fc__h2_tick(fc_http_conn_t *hc, uint64_t now) {
  fc__h2_t *h = hc->h2;
  unsigned idle = hc->http->opts.idle_timeout_ms;
  expire_requests(h, now);
  if (h->nstreams == 0 && now - h->last_active_ms > idle) { /* nothing open: goodbye */
    h->goaway = true;
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR,
                          NULL, 0);
    flush(h);
  } else if (h->ping_out && now - h->last_recv_ms > idle) { /* the peer is gone */
    fc_conn_close(hc->conn, false);
  } else if (!h->ping_out && now - h->last_recv_ms > idle / 2) {
    h->ping_out = true;
    nghttp2_submit_ping(h->ng, NGHTTP2_FLAG_NONE, NULL);
    flush(h);
  }
}

void fc__h2_stop(fc_http_conn_t *hc) {
  fc__h2_t *h = hc->h2;
  if (h->goaway) return;
  h->goaway = true;
  nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR,
                        NULL, 0);
  for (fc__h2s_t *s = h->streams, *next; s; s = next) {
    next = s->next;
    if (!s->stream) continue; /* requests in flight are answered */
    if (s->stream->h->on_stop) s->stream->h->on_stop(s->stream);
    else fc__h2s_close(s, true);
  }
  schedule(h);
}

static void on_idle_closed(uv_handle_t *t) { free(t->data); }

void fc__h2_free(fc_http_conn_t *hc) {
  fc__h2_t *h = hc->h2;
  while (h->streams) stream_gone(h->streams);
  nghttp2_session_del(h->ng);
  hc->h2 = NULL;
  uv_close((uv_handle_t *)&h->idle, on_idle_closed);
}
