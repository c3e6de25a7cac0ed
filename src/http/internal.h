#ifndef FC_HTTP_INTERNAL_H
#define FC_HTTP_INTERNAL_H

#include "http/http.h"

struct fc_http {
  fc_http_opts_t opts;
  llhttp_settings_t settings;
};

typedef enum {
  HC_IDLE,     /* between requests */
  HC_HEAD,     /* reading a request's line and headers */
  HC_BODY,     /* reading its body */
  HC_HANDLING, /* a handler answers later: parsing is paused */
  HC_STREAM,   /* a transport owns the connection */
  HC_CLOSING,
} fc__hc_state_t;

struct fc_http_conn {
  fc_conn_t *conn;
  fc_http_t *http;
  fc_req_t *req;       /* the request being read or handled */
  fc_stream_t *stream; /* once streaming */
  fc_buf_t pending;    /* input that arrived while parsing was paused */
  uint64_t since_ms;   /* when the current state began (loop time) */
  fc__hc_state_t state;
  bool in_execute;     /* inside llhttp_execute: answers must not re-enter it */
  bool stopping;       /* close after the current response */
  int err_status;      /* set by a callback that aborts the parse */
  const char *err_code;
  llhttp_t *parser; /* freed once the connection is a stream: idle streams hold no parser */
};

/* Routes and runs a complete request (router.c). */
void fc__http_dispatch(fc_req_t *req);
/* Frees a request and everything it allocated. */
void fc__req_free(fc_req_t *req);
/* Called by fc_http_respond once the response is queued: logs it, frees the
 * request, and goes on with pipelined input (conn.c). */
void fc__http_finish(fc_http_conn_t *hc, fc_req_t *req);
/* Appends the CORS headers the request's Origin earns. */
void fc__http_cors_headers(fc_req_t *req, fc_buf_t *out);
/* Writes the request's log line fields (redacting tokens) into `out`. */
void fc__http_log_fields(fc_req_t *req, fc_buf_t *out);

#endif
