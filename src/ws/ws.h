/* ws: WebSocket (RFC 6455) sessions on the same channels as SSE. wslay does
 * the framing and the control frames; event frames are built once per event
 * and shared by every WebSocket subscriber, like SSE frames. */
#ifndef FC_WS_H
#define FC_WS_H

#include <jansson.h>

#include "http/http.h"
#include "hub/hub.h"
#include "presence/presence.h"
#include "pub/pub.h"

typedef struct fc_ws fc_ws_t;
typedef struct fc_ws_session fc_ws_session_t;

typedef struct {
  fc_hub_t *hub;
  unsigned threads;
  size_t max_message;       /* bytes; larger messages close with 1009 */
  unsigned ping_ms;         /* the server pings this often; no pong by the next ping: dropped */
  size_t queue_bytes;       /* a session's unsent bytes past this: disconnected */
  size_t max_subscriptions; /* per session; past it a subscribe is refused (too_many_subscriptions) */
  fc_net_t *net;            /* direct messages go to another loop's mailbox */
  /* The app's part (rights); all on the session's loop thread.
   * Rights are asked before anything is looked up or created, so a refused
   * op leaves nothing behind. */
  bool (*may_subscribe)(void *ud, fc_ws_session_t *s, const char *channel);
  bool (*may_publish)(void *ud, fc_ws_session_t *s, const char *channel);
  bool (*may_send)(void *ud, fc_ws_session_t *s); /* direct messages (op "send") */
  fc_pub_t *pub;                                  /* where publish ops go (they are acked once committed) */
  /* Rate limits (NULL: none). Milliseconds to wait before `s` may publish
   * `events` (0: now, and they are counted), and before an op of `s` may
   * make `channel` come to exist (0: it exists, or may be created now). */
  uint64_t (*publish_wait)(void *ud, fc_ws_session_t *s, size_t events);
  uint64_t (*create_wait)(void *ud, fc_ws_session_t *s, const char *channel);
  unsigned rate; /* messages per second per session, in bursts of twice that; past it: error rate_limited (0: none) */
  fc_presence_t *presence; /* subscriptions on channels with presence on join it; NULL: none */
  /* The session's token subject for presence (NULL or "": anonymous). */
  const char *(*subject)(void *ud, fc_ws_session_t *s);
  void *ud;
} fc_ws_opts_t;

/* NULL when net has no receiver left for direct messages. */
fc_ws_t *fc_ws_new(const fc_ws_opts_t *opts);
void fc_ws_free(fc_ws_t *ws);

/* Answers an upgrade request: 400 for a bad key or a missing Upgrade, 426 for
 * a version other than 13, else 101 and a session. The session takes the
 * request's user (claims) and ends at `expires_ms` (0: never) with 1008. */
void fc_ws_accept(fc_ws_t *ws, fc_req_t *req, int64_t expires_ms);

/* The session's connection id (32 hex digits, random), and the user the
 * handshake carried. */
const char *fc_ws_session_id(const fc_ws_session_t *s);
void *fc_ws_session_user(fc_ws_session_t *s);
unsigned fc_ws_session_thread(const fc_ws_session_t *s);
/* Keeps a session's memory while an answer is pending (it may close meanwhile). */
void fc_ws_session_ref(fc_ws_session_t *s);
void fc_ws_session_unref(fc_ws_session_t *s);

/* Answers an op: {"type":"ack","ref","id"?} or {"type":"error",...}. A no-op
 * on a closed session. */
void fc_ws_ack(fc_ws_session_t *s, const char *ref, const char *id);
void fc_ws_error(fc_ws_session_t *s, const char *ref, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sends {"type":"direct","from","data"} to the connection `to`, on whatever
 * thread it lives. Any thread. Returns 0 or -ENOENT. */
int fc_ws_send_direct(fc_ws_t *ws, const char *to, const char *from, const json_t *data);

/* The loop's tick (pings, token expiry). */
void fc_ws_tick(fc_ws_t *ws, fc_loop_t *l);

typedef struct {
  uint64_t sessions, delivered_total, drops_total;
  uint64_t rate_limited_total; /* messages refused past opts.rate */
} fc_ws_stats_t;
void fc_ws_stats(fc_ws_t *ws, fc_ws_stats_t *out);

#endif
