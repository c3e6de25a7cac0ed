/* presence: who is subscribed to a channel, for channels whose name matches a
 * `presence:PATTERN = on` rule. Each subscription (SSE or WebSocket) on such a
 * channel is an entry: connection id, the token's subject, transport, node,
 * since, and optional client info. Joins and leaves are queued on the channel
 * as hub notices (flowcast.join, flowcast.leave), so the subscribers that ask
 * for them see them in order with the channel's events.
 *
 * Channels without presence pay nothing: transports ask fc_presence_on()
 * once per subscription (false at once when no rule exists) and keep no
 * entry. Thread-safe: one lock, taken per join, leave and query. */
#ifndef FC_PRESENCE_H
#define FC_PRESENCE_H

#include "hub/hub.h"
#include "store/presence_redis.h"

typedef struct fc_presence fc_presence_t;
typedef struct fc_presence_entry fc_presence_entry_t;

/* Client info: at most this many bytes of JSON. */
#define FC_PRESENCE_INFO_MAX 1024
/* A connection id: 32 lower-case hex digits. */
#define FC_PRESENCE_CONN_LEN 32

/* One rule: channels matching `pattern` (a name or glob) have presence `on`
 * or not. The first matching rule wins; no match: off. */
typedef struct {
  const char *pattern;
  bool on;
} fc_presence_rule_t;

typedef struct {
  fc_hub_t *hub; /* where join and leave notices go */
  const fc_presence_rule_t *rules;
  size_t nrules;
  size_t max_entries; /* entries listed per channel at most (counts stay exact) */
} fc_presence_opts_t;

/* A presence registry on `opts` (rules borrowed for its life). Start-up. */
fc_presence_t *fc_presence_new(const fc_presence_opts_t *opts);
/* Frees it; every entry must have left. */
void fc_presence_free(fc_presence_t *p);
/* This node's name, shown in entries ("node"). Start-up, before any join. */
void fc_presence_set_node(fc_presence_t *p, const char *node);

/* Cluster mode: entries also go to `cluster` (fc_prstore_*), listings and
 * counts come from it (the same on every node), and other nodes' joins and
 * leaves reach this node's subscribers through fc_presence_remote. Start-up. */
void fc_presence_set_cluster(fc_presence_t *p, fc_prstore_t *cluster);
/* True in cluster mode: fc_presence_list and fc_presence_stats block on
 * Redis (call them off the loop threads). */
bool fc_presence_blocks(const fc_presence_t *p);
/* Another node's join or leave on `channel`: queued as a notice when the
 * channel is in memory here (else nobody here follows it). A
 * fc_prstore_notice_cb (its `ud` is the presence). Any thread. */
void fc_presence_remote(void *p, bool join, const char *channel, const char *json, size_t len);

/* True when `channel` has presence on. False at once without rules; NULL p
 * is off. Any thread. */
bool fc_presence_on(const fc_presence_t *p, const char *channel);

/* Checks client info: at most FC_PRESENCE_INFO_MAX bytes of valid JSON.
 * Returns 0 or -EINVAL. */
int fc_presence_check_info(const char *info, size_t len);

/* Fills `out` with a new random connection id (NUL-terminated). */
void fc_presence_conn_id(char out[FC_PRESENCE_CONN_LEN + 1]);

/* Who a subscription is. Borrowed for the call. */
typedef struct {
  const char *conn;      /* connection id */
  const char *sub;       /* the token's subject; NULL or "": "anonymous" */
  const char *transport; /* "sse" or "ws" */
  const char *info;      /* checked JSON (fc_presence_check_info), or NULL */
  size_t info_len;
} fc_presence_who_t;

/* Adds the entry of a subscription to `ch` (a channel with presence on,
 * which the caller's link keeps subscribed until fc_presence_leave) and
 * queues its flowcast.join notice. Returns the entry, owned by presence; the
 * caller hands it back to fc_presence_leave exactly once. Any thread. */
fc_presence_entry_t *fc_presence_join(fc_presence_t *p, fc_channel_t *ch, const fc_presence_who_t *who);
/* Removes the entry and queues its flowcast.leave notice; call while the
 * subscription's link still holds the channel. NULL is a no-op. Any thread. */
void fc_presence_leave(fc_presence_t *p, fc_presence_entry_t *e);

/* Appends {"entries":[{"conn","sub","transport","node","since","info"?}],
 * "truncated":bool} for `channel` to `out`: entries in join order, at most
 * max_entries (truncated: there are more). A channel with presence on and
 * nobody present answers no entries. Returns 0, or -ENOENT when the channel
 * has presence off. Any thread. */
int fc_presence_list(fc_presence_t *p, const char *channel, fc_buf_t *out);
/* Appends {"connections":N,"users":N} (distinct subjects); -ENOENT as above.
 * Both: -EIO when the cluster's Redis cannot answer. */
int fc_presence_stats(fc_presence_t *p, const char *channel, fc_buf_t *out);

#endif
