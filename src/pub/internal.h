/* Shared between pub's own files. */
#ifndef FC_PUB_INTERNAL_H
#define FC_PUB_INTERNAL_H

#include <pthread.h>

#include "pub/pub.h"

/* An event while the operation is built: offsets into the operation's text
 * (which grows, so pointers would die). */
typedef struct {
  size_t name, name_len, data, data_len, from, from_len;
  bool is_json;
} fc__pub_text_ev_t;

/* Where an operation is: its end and its submitter race (see hand_back). */
enum { OP_SUBMITTING, OP_SUBMITTED, OP_ENDED };

struct fc_pub_op {
  fc_msg_t msg;           /* posted to its loop once ended elsewhere */
  fc_store_batch_t batch; /* its events point into `text` once submitted */
  fc_pub_t *pub;
  fc_channel_t *channel; /* a reference, or NULL */
  unsigned loop;
  fc_pub_answer_cb answer;
  void *ud;
  fc_buf_t text;
  fc__pub_text_ev_t *tev; /* &tev1 while it holds one */
  size_t ntev, captev;
  fc__pub_text_ev_t tev1;
  fc_store_event_t ev1; /* batch.events for one event (or none) */
  bool is_batch;
  bool numbered;  /* storage called number() */
  uint64_t t0_us; /* when it was submitted (monotonic), for the latency histogram */
  fc_publish_result_t result;
  atomic_int state;
};

/* Ordinals handed out on a channel and not yet published to the hub (their
 * batches are committing). The commit thread only. */
typedef struct pending {
  struct pending *next;
  fc_channel_t *channel;
  uint64_t next_n;    /* ordinal the channel's next numbered event gets */
  size_t outstanding; /* numbered batches not yet ended */
} fc__pub_pending_t;

#define PENDING_BUCKETS 1024 /* a power of two */

typedef struct {
  _Alignas(FC_CACHE_LINE) atomic_size_t posted; /* answers in the loop's mailbox */
  /* Publish latency of the operations answered on this loop: written by the
   * loop alone (relaxed), summed by readers on any thread. */
  atomic_ullong lat_buckets[FC_PUB_LATENCY_BUCKETS + 1];
  atomic_ullong lat_sum_us;
} fc__pub_loop_t;

struct fc_pub {
  fc_pub_opts_t opts;
  bool own_store;        /* opts.store is the memory store pub made */
  int rx_answer;         /* the net receiver of answers (-1: no net) */
  fc__pub_loop_t *loops; /* [threads] */
  /* The id counter and the channels' pending ordinals: touched only from
   * the store's number() and done() callbacks, which the store serializes. */
  uint64_t seq;
  fc__pub_pending_t *pending[PENDING_BUCKETS];
  atomic_ullong published;
};

/* A stored event as the hub's input. */
static inline fc_event_in_t fc__pub_event_in(const fc_store_event_t *e) {
  return (fc_event_in_t){.name = e->name,
                         .data = e->data,
                         .from = e->from,
                         .is_json = e->is_json,
                         .seq = e->seq,
                         .n = e->n,
                         .time_ms = e->time_ms};
}

/* Cluster mode (cluster.c), on the store's thread: gives the hub the events
 * of a commit it does not have yet, in order; fills `res` for an answer. */
void fc__pub_apply(fc_pub_t *pub, fc_channel_t *ch, const fc_store_event_t *evs, size_t n, bool local,
                   fc_publish_result_t *res);
/* The store's bus callback (fc_bus_cb). */
void fc__pub_on_bus(void *ud, const fc_bus_msg_t *m);

/* Appends an event to the operation, copying its bytes. */
void fc__pub_add(fc_pub_op_t *op, fc_str_t name, fc_str_t data, fc_str_t from, bool is_json);

#endif
