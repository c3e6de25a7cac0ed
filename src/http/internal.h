#ifndef FC_HTTP_INTERNAL_H
#define FC_HTTP_INTERNAL_H

#include <stddef.h>

#include "http/http.h"

struct fc_http {
  fc_http_opts_t opts;
  llhttp_settings_t settings;
};

typedef enum {
  HC_IDLE,     /* between requests */
  HC_HEAD,     /* reading a request's line and headers */
  HC_BODY,     /* reading its body */
  HC_HANDLING, /* parsing is paused: a handler answers later, a request waits
                  for the answers before it, or too many are unanswered */
  HC_STREAM,   /* a transport owns the connection */
  HC_CLOSING,
  HC_H2, /* HTTP/2: the connection's requests are streams of an nghttp2 session (h2.c) */
} fc__hc_state_t;

typedef struct fc__h2 fc__h2_t;
typedef struct fc__h2s fc__h2s_t;

/* A place in a connection's answer queue: pipelined answers go out in the
 * order of their requests, whatever order they are ready in. */
typedef struct fc__answer {
  struct fc__answer *next;
  fc_req_t *req;     /* the request, until answered */
  fc_frame_t *frame; /* the answer, once ready */
  bool keep;         /* the connection stays open after it */
} fc__answer_t;

/* A header field of a request: its offsets into the raw bytes while the head
 * is parsed (name offset, name length, value offset, value length), then,
 * once the head is complete, its name and value in the same place. */
typedef union {
  size_t off[4];
  fc_header_t h;
} fc__field_t;

/* A request with the parser's private part. Every fc_req_t is the `pub` of
 * one of these (fc__req_new), reached with fc__req(). */
typedef struct fc__req {
  fc_req_t pub;
  /* Cleared for each request, as pub is (but pub.body). */
  fc_http_conn_t *hc;      /* NULL once the connection is gone */
  fc__h2s_t *h2s;          /* its HTTP/2 stream; NULL on HTTP/1.1, or once the stream is gone */
  struct fc__answer *slot; /* its place in the connection's answer queue, if any */
  bool keep_alive;
  bool answered;
  bool serial;      /* what follows waits for its answer, whatever its route (fc_req_serial) */
  unsigned allowed; /* methods of every route whose path matches (for 405) */
  uint64_t start_ms;
  int status; /* for the log */
  size_t out_bytes;
  size_t nheaders;      /* headers[] entries, set once the head is complete */
  bool in_value;        /* parsing a header's value */
  size_t noff;          /* fields entries so far */
  size_t trailer_bytes; /* chunked trailer fields seen (counted, never kept) */
  void *mem;            /* fc_req_alloc blocks past the arena, freed with the request */
  size_t arena_used;
  /* HTTP/2: while its head arrives (h2.c). */
  uint32_t h2_url_off, h2_url_len; /* :path in raw, once has_url */
  int h2_err_status;               /* refused with this once its head is in; 0: not */
  bool h2_has_url;
  /* Not cleared (a request object is reused, see fc__req_new): the buffers
   * keep their room, the tables are filled as a request is parsed.
   * url and header bytes: pub.url and headers[] point into it once the head is
   * complete, so nothing may be appended after that (trailers are not kept):
   * an append may move it. */
  fc_buf_t raw;
  _Alignas(max_align_t) char arena[384]; /* fc_req_alloc's first bytes */
  fc__field_t *fields;                   /* [fields_cap], grown as heads need (fc__req_field) */
  size_t fields_cap;
} fc__req_t;

/* The private request around a public one. */
#define fc__req(r) ((fc__req_t *)((char *)(r)-offsetof(fc__req_t, pub)))

/* An HTTP/1.1 connection's parsing state: freed once the connection becomes a
 * stream or HTTP/2, so an idle subscriber holds none of it. */
typedef struct {
  llhttp_t parser;
  fc_buf_t pending;                  /* input that arrived while parsing was paused */
  fc__answer_t *out_head, *out_tail; /* answers owed, oldest first */
  unsigned nout;
  bool deferred;    /* req waits for every earlier answer before it is handled */
  bool in_execute;  /* inside llhttp_execute: answers must not re-enter it */
  uint64_t body_ms; /* HC_BODY: when body bytes last arrived (loop time) */
  int err_status;   /* set by a callback that aborts the parse */
  const char *err_code;
  const char *err_msg; /* its message: a printf format taking err_limit (%zu), or none */
  size_t err_limit;
} fc__h1_t;

struct fc_http_conn {
  fc_conn_t *conn;
  fc_http_t *http;
  fc_req_t *req;       /* the request being read or handled */
  fc_stream_t *stream; /* once streaming */
  uint64_t since_ms;   /* when the current state began (loop time) */
  fc__hc_state_t state;
  bool stopping; /* close after the current response */
  bool sniffed;  /* the first bytes were checked for the HTTP/2 preface */
  fc__h1_t *h1;  /* HTTP/1.1 parsing; NULL once a stream or HTTP/2 */
  fc__h2_t *h2;  /* HC_H2: the session */
};

/* Frees the HTTP/1.1 parsing state (and input held in it): the connection
 * is a stream, HTTP/2, or closed. */
void fc__http_h1_free(fc_http_conn_t *hc);

/* Runs a complete request that fc__http_route matched (router.c). */
void fc__http_dispatch(fc_req_t *req);
/* The next header field's offsets (noff grows by one), or NULL when the
 * request has FC_HTTP_MAX_HEADERS already. The table grows as a head needs:
 * a request waiting for its handler holds only what its head used. */
size_t *fc__req_field(fc__req_t *q);
/* Turns the fields' offsets into names and values (the raw bytes no longer
 * move); an empty value points to "". */
void fc__req_fields_done(fc__req_t *q);
/* A cleared request, reused from the thread's spares when it has one. */
fc_req_t *fc__req_new(void);
/* Frees a request and everything it allocated (keeping it as a spare). */
void fc__req_free(fc_req_t *req);
/* Called by fc_http_respond with the answer's bytes: sends them now or once
 * the answers before them are out, logs and frees the request, and goes on
 * with pipelined input (conn.c). */
void fc__http_answer(fc_http_conn_t *hc, fc_req_t *req, fc_frame_t *f, bool keep);
/* Matches a parsed request against the routes; sets req->route and allowed. */
void fc__http_route(fc_req_t *req);
/* Appends the CORS headers the request's Origin earns. */
void fc__http_cors_headers(fc_req_t *req, fc_buf_t *out);
/* Writes the request's log line fields (redacting tokens) into `out`. */
void fc__http_log_fields(fc_req_t *req, fc_buf_t *out);

/* A stream for `req`, whose answer head has gone or is going out on `conn`.
 * The request's log line is written when the stream ends (fc__stream_end),
 * with its bytes and duration; what it is about is kept until then, and only
 * when info lines are written: an idle stream holds 48 bytes otherwise. */
fc_stream_t *fc__stream_new(fc_req_t *req, fc_conn_t *conn, const fc_stream_handler_t *h, void *ud);
/* An HTTP/2 stream handed `n` DATA bytes to nghttp2 (for its log line; on
 * HTTP/1.1 they are the connection's). */
void fc__stream_sent(fc_stream_t *s, size_t n);
/* Ends a stream: its on_close, its log line (`h2_id` > 0 names its HTTP/2
 * stream), and its memory. */
void fc__stream_end(fc_stream_t *s, int h2_id);
/* The header lines (each "Name: value\r\n") an answer carries besides its
 * status: Date, Server, CORS, then `extra`. */
void fc__http_head_lines(fc_buf_t *b, fc_req_t *req, const char *extra);

/* HTTP/2 (h2.c). The client preface every HTTP/2 connection starts with. */
#define FC__H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define FC__H2_PREFACE_LEN 24
/* Makes `hc` an HTTP/2 connection and feeds it its first bytes (the preface
 * included). */
void fc__h2_start(fc_http_conn_t *hc, const char *p, size_t n);
void fc__h2_on_data(fc_http_conn_t *hc, const char *p, size_t n);
/* The connection's write queue emptied: more frames may go. */
void fc__h2_drained(fc_http_conn_t *hc);
/* Timeouts, PING keepalive and the flood counters' second (fc_http_tick). */
void fc__h2_tick(fc_http_conn_t *hc, uint64_t now_ms);
/* GOAWAY: requests in flight are answered, streams get on_stop. */
void fc__h2_stop(fc_http_conn_t *hc);
/* The connection is closed: every stream ends, the session is freed. */
void fc__h2_free(fc_http_conn_t *hc);
/* Answers an HTTP/2 request: `head` holds header lines as fc__http_head_lines
 * makes them; the body is copied. Frees the request (after its log line). */
void fc__h2_answer(fc_req_t *req, int status, const fc_buf_t *head, const void *body, size_t len, bool has_length);
/* Answers with a stream's head and hands the stream to `h` (fc_http_stream). */
fc_stream_t *fc__h2_stream(fc_req_t *req, int status, const fc_buf_t *head, const fc_stream_handler_t *h, void *ud);
/* An HTTP/2 stream's side of fc_stream_send, fc_stream_queued, the bound and
 * fc_stream_close (which resets it when not flushing). Loop thread. */
int fc__h2s_send(fc__h2s_t *s, fc_frame_t *f, bool bounded);
size_t fc__h2s_queued(const fc__h2s_t *s);
void fc__h2s_set_bound(fc__h2s_t *s, size_t bytes);
size_t fc__h2s_bound(const fc__h2s_t *s);
void fc__h2s_close(fc__h2s_t *s, bool flush);

#endif
