/* sseparse: a Server-Sent Events stream parser, exact to the WHATWG HTML rules
 * ("Interpreting an event stream"): an optional leading BOM, lines ended by CRLF,
 * LF or CR (also when a CRLF is split between two reads), `field: value` with one
 * optional space after the colon, comments, `data` joined with LF, `event`, `id`
 * (ignored when it holds a NUL), `retry` (ASCII digits only), and dispatch on a
 * blank line, where an id-only block still moves the last event id.
 *
 * The parser holds no sockets: feed it the bytes as they arrive. */
#ifndef FC_SSEPARSE_H
#define FC_SSEPARSE_H

#include "core/core.h"

/* A dispatched event. Borrowed: valid during the callback only. */
typedef struct {
  const char *id;    /* the last event id after this event ("" when none yet) */
  const char *event; /* the event type, "message" when the block named none */
  const char *data;  /* the data, NUL-terminated, without the final LF */
  size_t data_len;
} fc_sse_event_t;

/* Called once per dispatched event; returns true to stop parsing. */
typedef bool (*fc_sse_event_cb)(void *ud, const fc_sse_event_t *ev);

typedef struct {
  fc_sse_event_cb on_event;
  void *ud;
  size_t max_event; /* largest line or data buffer in bytes; past it fc_sse_feed fails */
  /* Public state, readable between feeds. */
  char *last_id;     /* the last event id string (never NULL after init) */
  uint64_t retry_ms; /* the last valid `retry:` value; 0 when the stream gave none */
  bool retry_set;
  /* Private. */
  fc_buf_t line, data, event, id_buf;
  bool have_data;    /* a data field was seen since the last dispatch */
  bool started;      /* past the first bytes (the BOM check) */
  bool after_cr;     /* the last byte was CR: a following LF belongs to it */
  unsigned bom_seen; /* bytes of a leading BOM matched so far */
} fc_sse_parser_t;

/* Prepares a parser. `initial_id` (may be NULL) seeds the last event id, as a
 * client resuming with Last-Event-ID does. `max_event` 0 means 16 MiB. */
void fc_sse_parser_init(fc_sse_parser_t *p, fc_sse_event_cb on_event, void *ud, const char *initial_id,
                        size_t max_event);
void fc_sse_parser_dispose(fc_sse_parser_t *p);

/* Starts a new connection's stream: drops a partial line and a partial event (as
 * the spec does when a stream ends) and expects a BOM again; keeps the last id
 * and retry. */
void fc_sse_parser_reset(fc_sse_parser_t *p);

/* Parses `n` bytes. Returns 0, 1 when the callback asked to stop (the rest of
 * the bytes are not parsed), or -EMSGSIZE when a line or an event's data passed
 * max_event (the caller should drop the connection). */
int fc_sse_feed(fc_sse_parser_t *p, const char *buf, size_t n);

#endif
