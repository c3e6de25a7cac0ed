/* Shared between the hub's own files. */
#ifndef FC_HUB_INTERNAL_H
#define FC_HUB_INTERNAL_H

#include "hub/hub.h"

#include <pthread.h>

/* A ring of pointers (or ids as uintptr_t), oldest first, holding at most
 * `max`. Its array grows with use (doubling up to `max`) and is freed when
 * the ring empties, so a bound costs nothing until it is used. */
typedef struct {
  void **items;
  unsigned cap; /* slots allocated */
  unsigned max; /* slots at most */
  unsigned head, count;
} fc__ring_t;

struct fc_channel {
  fc_channel_t *hnext; /* hash chain */
  uint32_t hash;
  uint32_t name_len;
  char *name;
  uint64_t next_n;    /* ordinal the next event gets (from 1) */
  uint64_t first_seq; /* id of the channel's first event ever, 0 if none */
  uint64_t last_seq;  /* id of its newest event, 0 if none */
  fc__ring_t history; /* fc_event_t*, retained events */
  /* Ids of the most recently evicted events (as uintptr_t), so that a resume
   * can count exactly what it lost while it was not too far behind. */
  fc__ring_t evicted;
  uint64_t evicted_total;   /* events evicted or purged since start */
  unsigned retention;       /* history capacity */
  uint64_t max_age_s;       /* 0: none */
  atomic_uint refs;         /* references held outside the hub (fc_hub_open, fc_channel_ref) */
  atomic_size_t events;     /* events alive that point here, in history or not */
  _Atomic uint64_t used_ms; /* fc_mono_ms() of the last release, publish or unsubscribe */
  size_t subscribers;       /* links on every thread; hub lock */
  uint64_t notices;         /* notices queued so far (fc_hub_notice); hub lock */
  size_t notice_links;      /* links that want notices, on every thread; hub lock */
  unsigned *local_count;    /* [threads] subscribers per loop thread */
  fc_sub_link_t **local;    /* [threads] list heads; each touched by its thread only */
};

typedef struct {
  _Alignas(FC_CACHE_LINE) pthread_mutex_t lock;
  fc_event_t **items;
  size_t len, cap;
} fc__inbox_t;

#define FC__FREES 256 /* slots of fc_hub.frees, a power of two */

struct fc_hub {
  fc_hub_opts_t opts;
  pthread_mutex_t lock; /* channels, history, registration, id assignment */
  uint64_t seq;         /* highest id published (ids are given by the publisher) */
  fc_channel_t **buckets;
  size_t nbuckets, nchannels; /* nchannels: channels in memory, capped by opts.max_channels */
  /* Times channels left memory, by hash: a load that saw its slot change
   * reads storage again. */
  uint64_t frees[FC__FREES];
  fc__inbox_t *inboxes; /* [threads] */
};

fc_event_t *fc__event_new(fc_channel_t *ch, uint64_t seq, uint64_t n, int64_t time_ms, const fc_event_in_t *in);

#endif
