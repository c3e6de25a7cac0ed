/* http: HTTP/1.1 over net connections with llhttp: requests with limits,
 * keep-alive and pipelining, a router, JSON errors, CORS, and streaming
 * responses that transports (SSE, later WebSocket) take over. */
#ifndef FC_HTTP_H
#define FC_HTTP_H

#include <jansson.h>
#include <llhttp.h>

#include "core/core.h"
#include "net/net.h"

typedef struct fc_http fc_http_t;
typedef struct fc_http_conn fc_http_conn_t;
typedef struct fc_req fc_req_t;

#define FC_HTTP_MAX_HEADERS 100
#define FC_HTTP_MAX_SEGMENTS 16
#define FC_HTTP_MAX_PARAMS 4

typedef void (*fc_handler_cb)(fc_req_t *req);

/* Method bits for routes. */
enum {
  FC_GET = 1 << 0,
  FC_POST = 1 << 1,
  FC_PUT = 1 << 2,
  FC_DELETE = 1 << 3,
  FC_OPTIONS = 1 << 4,
  FC_HEAD = 1 << 5,
};

/* A route: a path pattern whose `{}` segments capture one decoded segment each
 * into req->params, the methods it accepts, and its handler. */
typedef struct {
  const char *pattern;
  unsigned methods;
  fc_handler_cb handler;
  const char *name; /* for logs */
  int access;       /* the application's access rule for authorize() */
  /* Pipelining: requests that follow one of this route on the same connection
   * may be read and handled before it is answered. Answers still go out in
   * order. Only for routes that never become a stream. */
  bool overlap;
} fc_route_t;

typedef struct {
  size_t max_header_bytes;         /* request line + headers; past it: 431 */
  size_t max_url_bytes;            /* past it: 414 */
  size_t max_body_bytes;           /* past it: 413 */
  unsigned header_timeout_ms;      /* a request's head must arrive within this */
  unsigned idle_timeout_ms;        /* a keep-alive connection with no request is closed after */
  unsigned body_timeout_ms;        /* a request's whole body must arrive within this after its head; past it: 408 */
  unsigned send_timeout_ms;        /* unsent bytes with no write progress for this long: the connection is closed */
  const char *const *cors_origins; /* NULL-terminated; {"*"} allows any origin */
  bool cors_credentials;           /* only with an explicit list, never with "*" */
  const fc_route_t *routes;
  size_t nroutes;
  bool h2c;                /* plain connections that open with the HTTP/2 preface speak h2c */
  unsigned h2_max_streams; /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; 0: 1000 */
  /* The ALPN protocol of a TLS connection ("h2" makes it HTTP/2), NULL for a
   * plain one; NULL: every connection is plain. */
  const char *(*alpn)(const fc_conn_t *c);
  /* Runs before every handler: the one place where access is decided. Returns
   * 0 to go on, or answers the request itself (401, 403) and returns a
   * negative errno (-EACCES). */
  int (*authorize)(fc_req_t *req);
  void *ud;
} fc_http_opts_t;

typedef struct {
  fc_str_t name, value;
} fc_header_t;

/* A request, as handlers see it. The parser's state (raw bytes, header
 * tables, the answer queue's slot, the arena) lives in http/internal.h. All
 * of it is valid from the handler's call until the request is answered. */
struct fc_req {
  fc_http_t *http;
  fc_loop_t *loop; /* the loop it is handled on */
  unsigned method; /* one FC_* bit; 0 for methods no route uses */
  const char *method_name;
  fc_str_t url;                     /* raw request target */
  fc_str_t path;                    /* raw path, before '?' */
  fc_str_t query;                   /* raw query, after '?' (may be empty) */
  char *segs[FC_HTTP_MAX_SEGMENTS]; /* percent-decoded path segments */
  size_t nsegs;
  char *params[FC_HTTP_MAX_PARAMS]; /* the route's captured segments */
  const fc_route_t *route;
  void *user; /* who sent it (the app's auth); freed with user_free */
  void (*user_free)(void *user);
  /* The body, whole (NUL-terminated). Last: it keeps its room when a request
   * object is reused, everything above is cleared. */
  fc_buf_t body;
};

fc_http_t *fc_http_new(const fc_http_opts_t *opts);
void fc_http_free(fc_http_t *http);
const fc_http_opts_t *fc_http_opts(const fc_http_t *http);

/* Takes over a freshly accepted connection (the net on_accept hook). */
void fc_http_accept(fc_http_t *http, fc_conn_t *c);
/* Sweeps the loop's connections for header and idle timeouts (the net tick). */
void fc_http_tick(fc_loop_t *l, uint64_t now_ms);
/* Begins a graceful stop on a loop: idle keep-alive connections close, busy
 * ones close after their response, streams get on_stream_stop. */
void fc_http_stop(fc_loop_t *l);

/* Memory that lives until the request is done. */
void *fc_req_alloc(fc_req_t *req, size_t n);
char *fc_req_strndup(fc_req_t *req, const char *s, size_t n);

/* True once the request's connection is gone (a handler that answers later
 * may still answer it: that only frees it). */
bool fc_req_gone(const fc_req_t *req);

/* The requests that follow this one on its connection wait for its answer,
 * though its route overlaps: for a handler that will run again later, so that
 * what it does keeps its place in the order of requests. */
void fc_req_serial(fc_req_t *req);

/* The peer's IP address as text ("-" when unknown). */
void fc_req_peer_ip(fc_req_t *req, char *out, size_t len);

/* The first value of a header (case-insensitive name), or an empty slice with
 * base NULL. */
fc_str_t fc_req_header(const fc_req_t *req, const char *name);
/* The `index`-th value of query parameter `name`, percent-decoded ('+' is a
 * space), or NULL. Sets *bad when the escape is malformed. */
const char *fc_req_query(fc_req_t *req, const char *name, size_t index, bool *bad);
/* Percent-decodes [s, s+n) into out (at least n+1 bytes). `plus` turns '+' into
 * ' '. Returns the decoded length, or -EINVAL for a malformed escape (or %00). */
ssize_t fc_url_decode(const char *s, size_t n, char *out, bool plus);

/* The route for a request whose target is parsed (segments set), or NULL.
 * `allowed` gets the methods of every route whose path matches (for 405). */
const fc_route_t *fc_http_match(const fc_route_t *routes, size_t n, fc_req_t *req, unsigned *allowed);
/* Parses req->url into path, query and decoded segments. Returns 0, -EINVAL
 * for a malformed escape, or -E2BIG for more than FC_HTTP_MAX_SEGMENTS segments. */
int fc_http_parse_target(fc_req_t *req);
/* A request made outside a connection, with `method` (an FC_* bit) and the
 * target [url, url+len) (copied, any bytes), not yet parsed: for tests and
 * fuzzing of the router and query parsing. Free it with fc_http_req_free. */
fc_req_t *fc_http_req_new(unsigned method, const char *url, size_t len);
/* Frees a request made outside a connection (tests). */
void fc_http_req_free(fc_req_t *req);

/* Writes a response with a body and ends the request (it may be freed at once).
 * `extra` holds more header lines, each ending in CRLF, or NULL. */
void fc_http_respond(fc_req_t *req, int status, const char *content_type, const char *extra, const void *body,
                     size_t len);
/* Responds with `j` serialized (takes the reference). */
void fc_http_respond_json(fc_req_t *req, int status, json_t *j);
/* Responds {"error":{"code","message"}} with `status`: the one writer of JSON
 * error bodies in the HTTP layer. The message is escaped whatever it holds
 * (quotes, control characters; invalid UTF-8 becomes U+FFFD). */
void fc_http_error(fc_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, with more header lines (`extra`, each ending in CRLF, or NULL). */
void fc_http_error_with(fc_req_t *req, int status, const char *extra, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A streaming response: the connection now belongs to a transport. */
typedef struct fc_stream fc_stream_t;
typedef struct {
  /* The connection is closing (peer gone, error, or fc_stream_close). Free the
   * transport state here; the stream and connection are freed after. */
  void (*on_close)(fc_stream_t *s);
  /* The server is stopping: finish and close (flush what is queued). */
  void (*on_stop)(fc_stream_t *s);
  /* Everything queued has been written; may be NULL. */
  void (*on_drained)(fc_stream_t *s);
  /* Bytes from the client (an upgraded protocol); NULL: they are ignored. */
  void (*on_data)(fc_stream_t *s, const char *p, size_t n);
} fc_stream_handler_t;

struct fc_stream {
  fc_conn_t *conn;
  fc_loop_t *loop;
  const fc_stream_handler_t *h;
  void *ud;
  void *h2s;                  /* http's: the HTTP/2 stream it is; NULL on HTTP/1.1 */
  struct fc__stream_log *log; /* http's: its log line's fields until it ends; NULL when info lines are off */
};

/* Sends the status line and headers (CORS included, close-delimited body; for
 * 101 the extra headers say what the connection becomes), ends the request and
 * hands the connection to `h`. Returns the stream. A HEAD request (status other
 * than 101) gets the head alone as an ordinary answer and no stream: returns
 * NULL, and `h` is never called. */
fc_stream_t *fc_http_stream(fc_req_t *req, int status, const char *extra_headers, const fc_stream_handler_t *h,
                            void *ud);
/* Ends a stream: flushes what is queued, then closes. */
void fc_stream_close(fc_stream_t *s, bool flush);
/* A stream's write queue, whether it is a whole HTTP/1.1 connection or one
 * HTTP/2 stream of many: fc_stream_send queues a frame by reference (-ENOBUFS
 * past the bound, nothing queued; -EPIPE when closing), fc_stream_send_copy a
 * copy; queued is what is not yet sent; the bound and bulk marking are as
 * fc_conn_set_bound and fc_conn_set_bulk. Loop thread of the stream. */
int fc_stream_send(fc_stream_t *s, fc_frame_t *f);
int fc_stream_send_copy(fc_stream_t *s, const void *p, size_t n);
size_t fc_stream_queued(const fc_stream_t *s);
void fc_stream_set_bound(fc_stream_t *s, size_t bytes);
size_t fc_stream_bound(const fc_stream_t *s);
void fc_stream_set_bulk(fc_stream_t *s, bool bulk);

/* Status reason phrase. */
const char *fc_http_reason(int status);

/* Stats kept by the HTTP layer, for /metrics. */
typedef struct {
  atomic_ullong connections; /* currently open */
  atomic_ullong connections_total;
  atomic_ullong requests_total;
  atomic_ullong responses_4xx, responses_5xx;
  atomic_ullong timeouts_total;
  atomic_ullong h2_connections_total; /* connections that spoke HTTP/2 */
  atomic_ullong h2_streams_total;     /* HTTP/2 streams opened by clients */
  atomic_ullong h2_goaway_abuse;      /* connections ended for a flood (resets, SETTINGS, PING, CONTINUATION) */
} fc_http_stats_t;
extern fc_http_stats_t fc_http_stats;

#endif
