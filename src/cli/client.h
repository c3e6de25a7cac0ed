/* A small blocking HTTP/1.1 client for the command line (http:// only), with
 * llhttp parsing the responses. */
#ifndef FC_CLI_CLIENT_H
#define FC_CLI_CLIENT_H

#include "core/core.h"

typedef struct {
  char host[256];
  int port;
  char prefix[256]; /* path before /api/v1, usually "" */
} fc_url_t;

/* Parses http://HOST[:PORT][/PREFIX]. Returns 0, or -1 with `err`. */
int fc_url_parse(const char *url, fc_url_t *out, char *err, size_t errlen);

/* Called with each piece of the response body as it arrives; return non-zero
 * to stop reading. */
typedef int (*fc_body_cb)(void *ud, const char *p, size_t n);

typedef struct {
  const char *method, *path; /* path from the server root, with the query */
  const char *token;         /* Bearer token, or NULL */
  const char *content_type;  /* with a body */
  const char *body;
  size_t body_len;
  const char *last_event_id; /* sent as Last-Event-ID, or NULL */
  fc_body_cb on_body;        /* NULL: the body goes to `body_out` */
  void *ud;
} fc_http_call_t;

/* Sends one request on a new connection and reads the response. Returns the
 * status, or -1 with `err` (cannot connect, malformed answer). */
int fc_http_call(const fc_url_t *url, const fc_http_call_t *call, fc_buf_t *body_out, char *err, size_t errlen);

#endif
