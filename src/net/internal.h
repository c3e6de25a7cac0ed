#ifndef FC_NET_INTERNAL_H
#define FC_NET_INTERNAL_H

#include "net/net.h"

struct fc_net {
  fc_net_opts_t opts;
  fc_loop_t **loops;
  unsigned nloops;
  int port;
  atomic_bool stopping;
};

/* Accepts a connection on loop `l`. */
void fc__conn_accept(fc_loop_t *l);
/* Writes every dirty connection's queue and drops the references to what was
 * written (the loop's check and prepare callbacks, and the hold timer). */
void fc__conn_flush_all(fc_loop_t *l);
/* Drops the references unref_later() kept (each flush, and loop teardown). */
void fc__conn_drop_refs(fc_loop_t *l);
/* Closes every connection at once (the stop deadline). */
void fc__conn_close_all(fc_loop_t *l);
/* Closes connections that lingered too long (the loop's tick). */
void fc__conn_sweep_lingering(fc_loop_t *l, uint64_t now);
/* Frees the closed connections still on the dirty lists (no connection is open). */
void fc__conn_free_dead(fc_loop_t *l);
/* Closes the loop's own handles once it is stopping and has no connection. */
void fc__loop_maybe_finish(fc_loop_t *l);

#endif
