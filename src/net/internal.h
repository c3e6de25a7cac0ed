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

/* Frames one write takes at most. */
#define FC__MAX_IOV 128
/* Fills `bufs` (`max` of them, at most FC__MAX_IOV) with the connection's
 * unwritten bytes; returns how many buffers, and their total length in `*total`. */
uint32_t fc__conn_gather(fc_conn_t *c, uv_buf_t *bufs, uint32_t max, size_t *total);
/* Takes the result of a write of `total` bytes tried elsewhere (bytes
 * written, or a negative errno) and carries on as a direct write would. */
void fc__conn_tried(fc_conn_t *c, int w, size_t total);

/* Batched writes (uring.c). fc__wbatch_new returns NULL, with the errno in
 * `*err`, where io_uring is not available. */
fc__wbatch_t *fc__wbatch_new(int *err);
void fc__wbatch_free(fc__wbatch_t *b);
/* Queues a write of c's queue (c has frames, no write in flight, is not
 * closing); false when the loop has no batch (write it directly). A full
 * batch is flushed at once. */
bool fc__wbatch_add(fc_loop_t *l, fc_conn_t *c);
/* Sends what is queued in one submission and applies every result. */
void fc__wbatch_flush(fc_loop_t *l);

#endif
