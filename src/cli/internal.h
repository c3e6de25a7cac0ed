/* What the client commands' files share. */
#ifndef FC_CLI_INTERNAL_H
#define FC_CLI_INTERNAL_H

#include <stdatomic.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/sseparse.h"

/* Options every client command takes. */
typedef struct {
  fc_url_t url;
  const char *url_text; /* as given, for messages */
  const char *token;
} fc__client_t;

/* Fills `o` from --url/--token (NULL when not given), else FLOWCAST_URL and
 * FLOWCAST_TOKEN. Returns 0, or FC_EXIT_USAGE after a message. */
int fc__client_init(fc__client_t *o, const char *url, const char *token, const char *cmd);

/* Parses a whole non-negative number option; says what is wrong and returns
 * -1 otherwise. */
int fc__parse_count(const char *cmd, const char *opt, const char *v, uint64_t max, uint64_t *out);

/* An SSE stream followed across reconnections. The owner sets the fields
 * above `parser` and initializes `parser` with its event callback, which may
 * set `done` to end the follow. */
typedef struct {
  const char *cmd;
  const fc__client_t *client;
  const char *path;                         /* from the server root, with the query */
  unsigned default_retry_ms;                /* base delay until the server sends `retry:` */
  unsigned max_backoff_ms;                  /* cap of the exponential backoff */
  unsigned max_failures;                    /* failed attempts in a row before giving up; 0: never */
  bool quiet;                               /* no reconnection notices on stderr */
  atomic_bool done;                         /* set by the event callback (or another thread): stop for good */
  int cancel_fd;                            /* > 0: readable ends the follow at once (another thread's stop) */
  void (*on_connect)(void *ud, int status); /* each answer's status, or NULL */
  void *ud;
  fc_sse_parser_t parser;
  /* Private. */
  int status; /* of the current connection */
} fc__follow_t;

/* Connects, feeds the stream to the parser, and reconnects after a dropped
 * stream, a 5xx or a transport failure, with Last-Event-ID and an exponential
 * backoff with jitter from the server's `retry:`. Returns 200 once `done` was
 * set; 204, 401, 403 and other 4xx (but 408 and 429) end it for good and are
 * returned with the server's error body in `body`; after max_failures failed
 * attempts in a row, the last failure (a status, or FC_HTTP_* with `err`). */
int fc__follow(fc__follow_t *f, fc_buf_t *body, char *err, size_t errlen);

/* One event as an NDJSON object (no newline; free() it): {"channel"?, "id",
 * "event" (null when unnamed), "data" (text), "time"?}. `channel` is the
 * subscription's only channel, or NULL. With `envelope`, data that is an
 * object {"channel": string, "data": any, "time"?: string} is unwrapped into
 * those fields (the shape a server sends for ?envelope=1). */
char *fc__event_json(const fc_sse_event_t *ev, const char *channel, bool envelope);

#endif
