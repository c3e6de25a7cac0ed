/* A small blocking HTTP/1.1 client for the command line (http:// and, with
 * OpenSSL, https://), with llhttp parsing the responses, and what every client command shares: exit
 * statuses, failure reports, channel names in URLs, reconnection delays. */
#ifndef FC_CLI_CLIENT_H
#define FC_CLI_CLIENT_H

#include "core/core.h"

typedef struct {
  char host[256];
  int port;
  char prefix[256]; /* path before /api/v1, usually "" */
  bool tls;         /* https: the server's certificate is verified against the system's CAs
                       (OpenSSL's defaults, so SSL_CERT_FILE and SSL_CERT_DIR name others) and the host */
} fc_url_t;

/* Parses http://HOST[:PORT][/PREFIX] or https://HOST[:PORT][/PREFIX] (port 80
 * or 443 by default). Returns 0, or -1 with `err`. */
int fc_url_parse(const char *url, fc_url_t *out, char *err, size_t errlen);

/* Called with each piece of a 2xx response's body as it arrives; return
 * non-zero to stop reading. */
typedef int (*fc_body_cb)(void *ud, const char *p, size_t n);
/* Called once the response's head is read, with its status. */
typedef void (*fc_status_cb)(void *ud, int status);

typedef struct {
  const char *method, *path; /* path from the server root, with the query */
  const char *token;         /* Bearer token, or NULL */
  const char *content_type;  /* with a body */
  const char *body;
  size_t body_len;
  const char *last_event_id; /* sent as Last-Event-ID, or NULL */
  fc_body_cb on_body;        /* NULL: the body goes to `body_out`; so does any non-2xx body */
  fc_status_cb on_status;    /* may be NULL */
  void *ud;
  int cancel_fd; /* when > 0: readable means stop waiting for the answer (FC_HTTP_CUT) */
} fc_http_call_t;

/* fc_http_call's failures, before any status. */
enum {
  FC_HTTP_UNREACHABLE = -1, /* cannot resolve the host, connect, make the TLS handshake or send */
  FC_HTTP_CUT = -2,         /* the connection closed before a whole answer */
  FC_HTTP_MALFORMED = -3,   /* the answer is not HTTP */
};

/* Sends one request on a new connection and reads the response. Returns the
 * status, or one of FC_HTTP_* with `err`. A body that on_body stopped, or a
 * close-delimited body that ended, still returns the status. */
int fc_http_call(const fc_url_t *url, const fc_http_call_t *call, fc_buf_t *body_out, char *err, size_t errlen);

/* ---- shared by the client commands -------------------------------------- */

/* The exit status for a call's result (an HTTP status or FC_HTTP_*): the one
 * place that maps them. 2xx: 0; 401, 403: 3; 404, 410: 4; 502, 503, 504 and
 * transport failures: 5; anything else: 1. */
int fc_cli_exit_for(int status);

/* Prints why a call failed, on stderr: `flowcast CMD: STATUS: MESSAGE (code)`
 * from the server's JSON error (or its raw answer, or a description of the
 * status), then a `hint:` line that says what to do. `err` is the transport
 * error for a negative status. `url` names the server in hints. Returns
 * fc_cli_exit_for(status). */
int fc_cli_report(const char *cmd, int status, const fc_buf_t *body, const char *err, const char *url);

/* True when `name` is a channel name: [A-Za-z0-9._:-]{1,128}. */
bool fc_cli_channel_valid(const char *name);
/* Says on stderr what is wrong with a channel name. Returns the usage status. */
int fc_cli_bad_channel(const char *cmd, const char *name);

/* Appends `s` to `out` percent-encoded for a path segment or a query value
 * (everything but A-Z a-z 0-9 - . _ ~). */
void fc_url_escape(fc_buf_t *out, const char *s);

/* The delay before reconnection attempt `attempt` (0 for the first after a
 * stream that worked): base * 2^attempt capped at `cap_ms`, then "equal
 * jitter": a uniform pick in [d/2, d] from `rnd` (any 32 random bits). */
unsigned fc_cli_backoff_ms(unsigned base_ms, unsigned attempt, unsigned cap_ms, uint32_t rnd);

#endif
