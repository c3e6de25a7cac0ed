/* Fixed-window failure counters for login attempts. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "store/records.h"

#define LIMITER_SLOTS 4096 /* keys tracked at once; the oldest window is reused */

typedef struct {
  char key[96];
  int64_t window_start;
  unsigned failures;
} slot_t;

struct fc_limiter {
  pthread_mutex_t lock;
  fc_records_t *shared; /* cluster mode: the counters in Redis (under lock) */
  unsigned max, window_s;
  slot_t slots[LIMITER_SLOTS];
};

fc_limiter_t *fc_limiter_new(unsigned max, unsigned window_s) {
  fc_limiter_t *l = fc_xcalloc(1, sizeof *l);
  pthread_mutex_init(&l->lock, NULL);
  l->max = max;
  l->window_s = window_s;
  return l;
}

int fc_limiter_share(fc_limiter_t *l, const char *redis_url, char *err, size_t errlen) {
  l->shared = fc_records_open_redis(redis_url, err, errlen);
  return l->shared ? 0 : -ENOTCONN;
}

void fc_limiter_free(fc_limiter_t *l) {
  if (!l) return;
  fc_records_close(l->shared);
  pthread_mutex_destroy(&l->lock);
  free(l);
}

static uint32_t hash(const char *s) { return fc_hash_fnv1a(s, strlen(s)); }

/* The slot of `key` (open addressing over 8 probes), or a free or stale one
 * to take over when `take`. */
static slot_t *find(fc_limiter_t *l, const char *key, int64_t now, bool take) {
  uint32_t h = hash(key);
  slot_t *victim = NULL;
  for (unsigned i = 0; i < 8; i++) {
    slot_t *s = &l->slots[(h + i) % LIMITER_SLOTS];
    if (!strcmp(s->key, key)) return s;
    bool stale = !s->key[0] || now - s->window_start >= l->window_s;
    if (stale && !victim) victim = s;
    if (!victim || s->window_start < victim->window_start) victim = victim ? victim : s;
  }
  if (!take) return NULL;
  if (!victim) victim = &l->slots[h % LIMITER_SLOTS];
  memset(victim, 0, sizeof *victim);
  strncpy(victim->key, key, sizeof victim->key - 1);
  victim->window_start = now;
  return victim;
}

unsigned fc_limiter_check(fc_limiter_t *l, const char *key, int64_t now) {
  pthread_mutex_lock(&l->lock);
  unsigned ttl = 0;
  int n = l->shared ? fc_records_window_get(l->shared, key, &ttl) : -ENOTSUP;
  if (n >= 0) { /* the cluster's count (else this node's, below) */
    pthread_mutex_unlock(&l->lock);
    return (unsigned)n >= l->max ? (ttl ? ttl : 1) : 0;
  }
  slot_t *s = find(l, key, now, false);
  unsigned wait = 0;
  if (s && now - s->window_start < l->window_s && s->failures >= l->max)
    wait = (unsigned)(s->window_start + l->window_s - now);
  pthread_mutex_unlock(&l->lock);
  return wait ? wait : 0;
}

void fc_limiter_fail(fc_limiter_t *l, const char *key, int64_t now) {
  pthread_mutex_lock(&l->lock);
  if (l->shared && fc_records_window_hit(l->shared, key, l->window_s) < 0)
    fc_log(FC_LOG_WARN, "login limit: Redis unreachable, counting on this node only", "error=\"%s\"",
           fc_records_error(l->shared));
  slot_t *s = find(l, key, now, true);
  if (now - s->window_start >= l->window_s) {
    s->window_start = now;
    s->failures = 0;
  }
  s->failures++;
  pthread_mutex_unlock(&l->lock);
}
