/* pub: the one way an event is published. Every publisher (HTTP, WebSocket,
 * jobs) builds an operation here, which
 *  1. validates what it is given (channel name, event names, data) and turns
 *     an HTTP body (JSON, NDJSON, text) or one JSON event into events;
 *  2. hands the batch to storage (fc_store_append);
 *  3. numbers it when storage commits it: pub holds the server's one id
 *     counter, restored from storage at start-up, and gives each event its
 *     id, its ordinal in its channel and its time, in commit order;
 *  4. once committed, publishes it to the hub with those ids (the hub gives
 *     no ids of its own: it checks they rise) and counts it;
 *  5. answers the publisher on its own loop thread.
 * With the memory store, steps 2 to 5 happen at once, inside fc_pub_submit.
 *
 * Ids are never given twice and never burned: a batch whose commit fails
 * gives its ids and ordinals back. */
#ifndef FC_PUB_H
#define FC_PUB_H

#include <jansson.h>

#include "hub/hub.h"
#include "net/net.h"
#include "store/store.h"

typedef struct fc_pub fc_pub_t;
typedef struct fc_pub_op fc_pub_op_t;

typedef struct {
  fc_hub_t *hub;
  fc_store_t *store; /* NULL: the memory store, which pub makes and frees */
  unsigned threads;  /* loops that publish: answers go back to one of them */
  /* Answers that end on another thread go to their loop's mailbox. NULL
   * only where every commit ends inside fc_pub_submit (the memory store). */
  fc_net_t *net;
} fc_pub_opts_t;

/* A publisher on `opts`, whose ids continue after storage's last one (the
 * hub is told it as its position). NULL when `net` has no receiver left. */
fc_pub_t *fc_pub_new(const fc_pub_opts_t *opts);
/* Frees the publisher. Storage must be closed and every loop drained first. */
void fc_pub_free(fc_pub_t *pub);

/* Events published since start (committed and given to the hub). Any thread. */
uint64_t fc_pub_published(fc_pub_t *pub);

/* Publish latency: from the hand-over of a parsed, valid operation
 * (fc_pub_submit) to its answer on its loop, for operations that stored
 * their events. Buckets hold counts per bound (not cumulative); the last one
 * is past every bound (+Inf). */
#define FC_PUB_LATENCY_BUCKETS 14
extern const uint32_t fc_pub_latency_le_us[FC_PUB_LATENCY_BUCKETS]; /* upper bounds, rising */
typedef struct {
  uint64_t buckets[FC_PUB_LATENCY_BUCKETS + 1];
  uint64_t count;
  uint64_t sum_us;
} fc_pub_latency_t;
/* Fills `out` with the latency counts since start, summed over loops. Any
 * thread; the figures of different loops may be a moment apart. */
void fc_pub_latency(fc_pub_t *pub, fc_pub_latency_t *out);

/* The error code and message a client gets for a failed commit's status
 * (fc_pub_op_status): storage_full, storage_unavailable (Redis away),
 * replicas_unavailable (--redis-wait-replicas not met) or storage_error. */
void fc_pub_failure(int status, const char **code, const char **message);

/* ---- operations ----------------------------------------------------------- */

/* Runs on the operation's loop once its fate is known; read the outcome with
 * the accessors below. pub frees the operation when it returns. */
typedef void (*fc_pub_answer_cb)(fc_pub_op_t *op, void *ud);

/* A new, empty operation for a publisher on loop `loop` (the thread that
 * calls fc_pub_submit and receives the answer; `answer` may be NULL). Never
 * NULL. */
fc_pub_op_t *fc_pub_op_new(fc_pub_t *pub, unsigned loop, fc_pub_answer_cb answer, void *ud);
/* Frees an operation that was not submitted (after a validation error),
 * releasing its channel. */
void fc_pub_op_free(fc_pub_op_t *op);

/* Why a publish was refused: an error code and a message for the client. */
typedef struct {
  const char *code; /* "bad_event", "bad_channel", "bad_utf8", "bad_json", "empty_batch", "bad_message" */
  char message[320];
} fc_pub_error_t;

/* Adds the events of an HTTP publish to `channel`: one event of the whole
 * body (JSON unless `media_type` names another type, text otherwise) named
 * `event` (may be NULL), or, for application/x-ndjson, one event per line
 * ({"data": any, "event": name?}). `media_type` is lowercased, without
 * parameters. Checks in this order: the event name, the channel name, UTF-8,
 * then JSON. The body's bytes are copied. Returns 0, or -EINVAL with `err`. */
int fc_pub_add_body(fc_pub_op_t *op, const char *channel, const char *event, const char *media_type, const char *body,
                    size_t len, fc_pub_error_t *err);

/* One event as WebSocket clients and job scripts send it: {"data": any,
 * "event": name|null?}. String data is taken as text, other data as its
 * compact JSON text (in `dump`, owned; fc_pub_event_dispose frees it). */
typedef struct {
  fc_str_t name; /* empty when none */
  fc_str_t data; /* NUL-terminated */
  bool is_json;
  char *dump;
} fc_pub_event_t;
typedef enum {
  FC_PUB_OK,
  FC_PUB_BAD_EVENT, /* "event" is not a valid event name */
  FC_PUB_NO_DATA,   /* "data" is missing */
  FC_PUB_DATA_NUL,  /* string data holds a NUL */
} fc_pub_invalid_t;
/* Validates `obj` (a JSON object) as one event, checking the event name, then
 * the data. Fills `ev` on FC_PUB_OK; `ev` borrows from `obj`. */
fc_pub_invalid_t fc_pub_json_event(const json_t *obj, fc_pub_event_t *ev);
void fc_pub_event_dispose(fc_pub_event_t *ev);

/* fc_pub_json_event, then adds the event, sent by connection `from` (may be
 * empty). Returns 0, or -EINVAL with `err` (the WebSocket messages). */
int fc_pub_add_json(fc_pub_op_t *op, const json_t *obj, fc_str_t from, fc_pub_error_t *err);

/* Adds one event the server makes itself (already valid). Copies the bytes. */
void fc_pub_add(fc_pub_op_t *op, fc_str_t name, fc_str_t data, bool is_json);

/* Opens the operation's channel through the hub (fc_hub_open with `flags`;
 * call it once the events are valid, so a refused publish creates nothing).
 * Returns 0 or fc_hub_open's error. */
int fc_pub_open(fc_pub_op_t *op, const char *name, size_t len, unsigned flags);
/* Makes the operation a purge of an open channel's stored and retained
 * events (ids keep increasing). */
void fc_pub_set_purge(fc_pub_op_t *op);

/* Hands the operation over: to storage, then to the hub, then the answer on
 * its loop (maybe before this returns). Without an open channel it is
 * answered -EIO at once. On the operation's loop. */
void fc_pub_submit(fc_pub_op_t *op);

/* The outcome, from the answer: 0, -ENOSPC (storage full) or -EIO. */
int fc_pub_op_status(const fc_pub_op_t *op);
/* Ids given and the channel's subscribers (status 0, not a purge). */
const fc_publish_result_t *fc_pub_op_result(const fc_pub_op_t *op);
fc_channel_t *fc_pub_op_channel(const fc_pub_op_t *op);
size_t fc_pub_op_count(const fc_pub_op_t *op);
bool fc_pub_op_is_purge(const fc_pub_op_t *op);
/* True for an NDJSON body (answered with every id). */
bool fc_pub_op_is_batch(const fc_pub_op_t *op);
/* Events added so far (before submitting: what a rate limit counts). */
size_t fc_pub_op_events(const fc_pub_op_t *op);

/* Warming: reading a channel's stored tail into memory takes time in
 * proportion to its retention (a second for 500,000 events), so a loop must
 * not do it while its other clients wait. fc_pub_warm brings the channels it
 * names into memory on libuv's thread pool, then calls `cb(ud)` on `loop`.
 *
 * Returns 0 when nothing needs reading (each channel is in memory, storage
 * is not durable, or a name is invalid): `cb` is never called and the caller
 * goes on at once. Returns 1 when `cb` will be called, once, after every read
 * ended, well or not (the caller then opens the channels as usual and meets
 * any error itself); until `cb` returns, each channel read stays in memory.
 * Reads of one channel asked for on one loop at once are shared. Loop thread. */
typedef void (*fc_pub_warm_cb)(void *ud);
int fc_pub_warm(fc_hub_t *hub, fc_loop_t *loop, const char *const *names, size_t n, fc_pub_warm_cb cb, void *ud);

#endif
