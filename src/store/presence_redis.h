/* Presence entries of a cluster in Redis (issue 21), for src/presence.
 *
 * Keys: `fc:pr:C` a sorted set of the nodes with entries on channel C, each
 * scored with the time (Redis' clock, ms) its entries expire; `fc:pr:C|NODE`
 * a hash of that node's entries (connection id -> entry JSON); `fc:prch` the
 * set of channels with entries. A node refreshes its scores every third of
 * the TTL; every node sweeps once a second: a node whose score passed is
 * dead, and the one sweep that takes its entries (a script) publishes a
 * leave for each. Joins and leaves travel on the Pub/Sub channel
 * `fc:pres:<db>`; each node hands the other nodes' notices to a callback. */
#ifndef FC_STORE_PRESENCE_REDIS_H
#define FC_STORE_PRESENCE_REDIS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct fc_prstore fc_prstore_t;

/* A join or leave from another node (or a dead node's leave from a sweep).
 * On the subscriber thread; `channel` and `json` borrowed for the call. */
typedef void (*fc_prstore_notice_cb)(void *ud, bool join, const char *channel, const char *json, size_t len);

/* Connects to the Redis at `url` as node `node` (a random tag is added, so a
 * restarted node is a new one) with entries living `ttl_ms`. Starts its two
 * threads. NULL with `err` when Redis cannot be reached. */
fc_prstore_t *fc_prstore_open(const char *url, const char *node, unsigned ttl_ms, fc_prstore_notice_cb cb, void *ud,
                              char *err, size_t errlen);
/* Stops the threads (what is queued is written first) and frees. NULL: no-op. */
void fc_prstore_close(fc_prstore_t *s);

/* Queue an entry's join or leave (written by the store's thread, which
 * never blocks the caller). Copies the inputs. Any thread. */
void fc_prstore_join(fc_prstore_t *s, const char *channel, const char *conn, const char *json);
void fc_prstore_leave(fc_prstore_t *s, const char *channel, const char *conn, const char *json);

/* The live entries of `channel` on every node, as malloc'd JSON strings in
 * `*out` (free each and the array). Blocks on Redis: call it off the loop
 * threads. Returns the count, or -EIO when Redis cannot answer. */
long fc_prstore_read(fc_prstore_t *s, const char *channel, char ***out);

#endif
