/* Token buckets per key for rate limits (publishes per token, channels
 * created per token). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

#define SHARDS 16
#define SLOTS 1024 /* per shard */
#define PROBES 8

typedef struct {
  char key[96];
  double tokens;    /* may be negative: the debt of a take larger than the burst */
  uint64_t last_ms; /* when `tokens` was last brought up to date */
} bucket_t;

typedef struct {
  pthread_mutex_t lock;
  bucket_t slots[SLOTS];
} shard_t;

struct fc_rate {
  double rate, burst; /* tokens per second; at most this many */
  shard_t shards[SHARDS];
};

fc_rate_t *fc_rate_new(double rate, double burst) {
  if (rate <= 0) return NULL;
  fc_rate_t *r = fc_xcalloc(1, sizeof *r);
  r->rate = rate;
  r->burst = burst > 0 ? burst : rate;
  for (size_t i = 0; i < SHARDS; i++) pthread_mutex_init(&r->shards[i].lock, NULL);
  return r;
}

void fc_rate_free(fc_rate_t *r) {
  if (!r) return;
  for (size_t i = 0; i < SHARDS; i++) pthread_mutex_destroy(&r->shards[i].lock);
  free(r);
}

/* Brings a bucket up to `now_ms`. */
static void refill(const fc_rate_t *r, bucket_t *b, uint64_t now_ms) {
  if (now_ms > b->last_ms) b->tokens = fmin(r->burst, b->tokens + r->rate * (double)(now_ms - b->last_ms) / 1000.0);
  b->last_ms = now_ms;
}

/* The bucket of `key` in `sh`, or a new full one in a free slot or in the
 * slot of a key whose bucket is full again (its state is then the same as a
 * new one's). With no such slot, the fullest is taken over. */
static bucket_t *find(const fc_rate_t *r, shard_t *sh, const char *key, uint32_t h, uint64_t now_ms) {
  bucket_t *victim = NULL;
  for (unsigned i = 0; i < PROBES; i++) {
    bucket_t *b = &sh->slots[(h + i) % SLOTS];
    if (b->key[0] && !strcmp(b->key, key)) return b;
    if (b->key[0]) refill(r, b, now_ms);
    if (!victim || !b->key[0] || (victim->key[0] && b->tokens > victim->tokens)) victim = b;
  }
  strncpy(victim->key, key, sizeof victim->key - 1);
  victim->key[sizeof victim->key - 1] = 0;
  victim->tokens = r->burst;
  victim->last_ms = now_ms;
  return victim;
}

uint64_t fc_rate_take(fc_rate_t *r, const char *key, double n, uint64_t now_ms) {
  if (!r) return 0;
  uint32_t h = fc_hash_fnv1a(key, strlen(key));
  shard_t *sh = &r->shards[h % SHARDS];
  pthread_mutex_lock(&sh->lock);
  bucket_t *b = find(r, sh, key, h / SHARDS, now_ms);
  refill(r, b, now_ms);
  double need = n <= r->burst ? n : r->burst; /* a bigger take waits for a full bucket */
  uint64_t wait = 0;
  if (b->tokens + 1e-9 >= need) b->tokens -= n;
  else wait = (uint64_t)ceil((need - b->tokens) * 1000.0 / r->rate);
  pthread_mutex_unlock(&sh->lock);
  return wait;
}
