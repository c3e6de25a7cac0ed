/* sse: Server-Sent Events subscribers over an HTTP stream: the opening
 * `retry:`, gap notices, the replayed backlog, live events, keepalive comments,
 * and disconnection of subscribers that cannot keep up. */
#ifndef FC_SSE_H
#define FC_SSE_H

#include "http/http.h"
#include "hub/hub.h"
#include "presence/presence.h"

typedef struct fc_sse fc_sse_t;

typedef struct {
  fc_hub_t *hub;
  unsigned threads;
  unsigned keepalive_ms;   /* a ":keepalive" comment this often */
  unsigned retry_ms;       /* the reconnection delay announced to clients */
  size_t queue_bytes;      /* a subscriber's unsent bytes past this: disconnected */
  fc_presence_t *presence; /* subscriptions on channels with presence on join it; NULL: none */
} fc_sse_opts_t;

fc_sse_t *fc_sse_new(const fc_sse_opts_t *opts);
void fc_sse_free(fc_sse_t *sse);

typedef bool (*fc_sse_final_cb)(const fc_event_t *ev);

/* How a stream is sent (fc_sse_open). */
typedef struct {
  /* The stream ends within a second of this time (ms since the epoch; 0:
   * never), when its token expires. */
  int64_t expires_ms;
  /* The stream ends (after flushing) once it has sent an event for which this
   * returns true, whether replayed or live. NULL: never. */
  fc_sse_final_cb is_final;
  /* ?envelope=1: each event's data is {"channel","data","time","from"?} (data
   * as a JSON value when it was published as JSON, else a string), so that a
   * client of several channels can tell where an event came from. */
  bool envelope;
  /* Presence (channels with it on): the token's subject (NULL: anonymous),
   * checked client info (?info=, NULL: none), and ?joinLeave=1: the stream
   * also carries the channels' flowcast.join and flowcast.leave notices. */
  const char *sub;
  const char *info;
  size_t info_len;
  bool join_leave;
} fc_sse_how_t;

/* Answers `req` with an event stream of `channels` (already validated and
 * created), starting where `from` says, sent as `how` says. Loop thread of
 * the request. */
void fc_sse_open(fc_sse_t *sse, fc_req_t *req, fc_channel_t **channels, size_t n, const fc_resume_t *from,
                 const fc_sse_how_t *how);

/* Sends keepalive comments when due and ends streams whose token expired (the
 * loop's tick, once a second). */
void fc_sse_tick(fc_sse_t *sse, fc_loop_t *l, uint64_t now_ms);

/* Counters for /metrics, summed over loops. */
typedef struct {
  uint64_t subscribers;     /* open SSE subscriptions */
  uint64_t delivered_total; /* events queued to SSE subscribers */
  uint64_t drops_total;     /* subscribers disconnected for being too slow */
} fc_sse_stats_t;
void fc_sse_stats(fc_sse_t *sse, fc_sse_stats_t *out);

/* Parses a Last-Event-ID value. Returns 0, or -EINVAL when malformed. */
int fc_sse_parse_id(const char *s, size_t n, uint64_t *out);

#endif
