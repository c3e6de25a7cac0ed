/* The Redis store's state (redis.c: the thread and commits; redis_read.c:
 * blocking reads). */
#ifndef FC_STORE_REDIS_STORE_H
#define FC_STORE_REDIS_STORE_H

#include <stdatomic.h>

#include "store/redis.h"

/* A change of interest in a channel (fc_store_interest), queued in order. */
typedef struct fc__redis_interest {
  struct fc__redis_interest *next;
  bool on;
  char name[];
} fc__redis_interest_t;

/* A channel this node holds in memory, so subscribes to (its thread only). */
typedef struct fc__redis_sub {
  struct fc__redis_sub *next;
  uint32_t hash;
  char name[];
} fc__redis_sub_t;

typedef struct {
  fc_store_t base;
  fc__redis_url_t url;
  unsigned wait_replicas;
  char where[300]; /* host:port/db */
  char bus[32];    /* the Pub/Sub channels' prefix: fc:bus:<db>: (Pub/Sub ignores databases) */
  char sha_append[41], sha_purge[41];
  char epoch[40]; /* fc:epoch as this node knows it (the store's thread, after start) */
  unsigned gen;   /* epochs this node went through */

  pthread_mutex_t sync_lock; /* the blocking connection for reads */
  redisContext *sync;

  pthread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t retry; /* reconnects, with backoff */
  uv_timer_t age;   /* calls `aged` once a second */
  void (*aged)(void *ud, int64_t now_ms);
  void *aged_ud;
  pthread_mutex_t lock; /* what other threads hand the store's thread: */
  fc_store_batch_t *head, *tail;
  fc__redis_interest_t *ihead, *itail;
  atomic_bool stopping;
  fc_bus_cb bus_cb;
  void *bus_ud;

  /* The store's thread only: */
  redisAsyncContext *cmd, *sub;
  bool cmd_up, sub_up, lost;
  uint64_t cmd_started, sub_started; /* when their connect began (fc_mono_ms) */
  unsigned backoff_ms;
  fc__redis_sub_t **subs; /* the channels subscribed to, by name */
  size_t nsubs, subs_cap;
  fc_store_event_t *evs; /* the bus parser's events */
  size_t evcap;

  atomic_bool up;        /* both connections are open */
  atomic_bool reachable; /* one is: the blocking connection may try again */
  _Atomic uint64_t last_seq;
  atomic_ullong reconnects, catch_ups, groups, events, failures;
} fc__redis_t;

int fc__redis_load(fc_store_t *base, const char *channel, unsigned limit, fc_store_channel_t *out,
                   void (*each)(void *ud, const fc_store_event_t *ev), void *ud);
int fc__redis_range(fc_store_t *base, const char *channel, uint64_t after, unsigned limit,
                    void (*each)(void *ud, const fc_store_event_t *ev), void *ud);
int fc__redis_channels(fc_store_t *base, const char *after, unsigned limit,
                       void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud);

int fc__redis_reseed(fc_store_t *base, uint64_t last_seq, const char *const *names, const uint64_t *last_n, size_t n);
/* Reads fc:epoch into r->epoch, making it first if there is none. */
int fc__redis_epoch(fc__redis_t *r);
int fc__redis_claim(fc_store_t *base, const char *key, unsigned ttl_s);
int fc__redis_shared_secret(fc_store_t *base, const char *name, const uint8_t *candidate, uint8_t *out, size_t len);

#endif
