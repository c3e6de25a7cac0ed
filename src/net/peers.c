/* Open connections per client address, for --max-connections-per-ip, and the
 * rate limit of log lines on the accept path. */
#include "net/internal.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct fc__peer {
  fc__peer_t *next; /* in its bucket */
  uint8_t key[16];
  unsigned n; /* open connections from this address; the entry is freed at 0 */
};

void fc__peer_key(const struct sockaddr *sa, uint8_t key[16]) {
  memset(key, 0, 16);
  if (sa->sa_family == AF_INET) {
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(a, mapped, sizeof mapped))
      memcpy(key, a, 16); /* an IPv4 client of a dual-stack socket: the same key as over IPv4 */
    else memcpy(key, a, 8);
  }
}

/* The bucket of a key. */
static size_t bucket_of(const uint8_t key[16]) { return fc_hash_fnv1a(key, 16) % FC__PEER_BUCKETS; }

void fc__peers_init(fc__peers_t *p, unsigned limit) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->lock, NULL);
  p->limit = limit;
  if (limit) p->buckets = fc_xcalloc(FC__PEER_BUCKETS, sizeof *p->buckets);
}

void fc__peers_dispose(fc__peers_t *p) {
  if (p->buckets)
    for (size_t i = 0; i < FC__PEER_BUCKETS; i++)
      for (fc__peer_t *e = p->buckets[i], *next; e; e = next) {
        next = e->next;
        free(e);
      }
  free(p->buckets);
  p->buckets = NULL;
  pthread_mutex_destroy(&p->lock);
}

fc__peer_t *fc__peers_take(fc__peers_t *p, const uint8_t key[16]) {
  size_t b = bucket_of(key);
  pthread_mutex_lock(&p->lock);
  fc__peer_t *e = p->buckets[b];
  while (e && memcmp(e->key, key, 16)) e = e->next;
  if (!e) {
    e = fc_xcalloc(1, sizeof *e);
    memcpy(e->key, key, 16);
    e->next = p->buckets[b];
    p->buckets[b] = e;
    p->npeers++;
  } else if (e->n >= p->limit) {
    e = NULL;
  }
  if (e) e->n++;
  pthread_mutex_unlock(&p->lock);
  return e;
}

void fc__peers_release(fc__peers_t *p, fc__peer_t *peer) {
  if (!peer) return;
  pthread_mutex_lock(&p->lock);
  if (--peer->n == 0) {
    fc__peer_t **pp = &p->buckets[bucket_of(peer->key)];
    while (*pp != peer) pp = &(*pp)->next;
    *pp = peer->next;
    p->npeers--;
    free(peer);
  }
  pthread_mutex_unlock(&p->lock);
}

unsigned fc__peers_count(fc__peers_t *p, const uint8_t key[16]) {
  if (!p->buckets) return 0;
  pthread_mutex_lock(&p->lock);
  fc__peer_t *e = p->buckets[bucket_of(key)];
  while (e && memcmp(e->key, key, 16)) e = e->next;
  unsigned n = e ? e->n : 0;
  pthread_mutex_unlock(&p->lock);
  return n;
}

void fc__ratelog_init(fc__ratelog_t *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->lock, NULL);
}

void fc__ratelog_dispose(fc__ratelog_t *r) { pthread_mutex_destroy(&r->lock); }

bool fc__ratelog_allow(fc__ratelog_t *r, uint64_t now_ms, uint64_t interval_ms, uint64_t *suppressed) {
  pthread_mutex_lock(&r->lock);
  bool ok = r->last_ms == 0 || now_ms - r->last_ms >= interval_ms;
  if (ok) {
    *suppressed = r->suppressed;
    r->suppressed = 0;
    r->last_ms = now_ms ? now_ms : 1;
  } else {
    r->suppressed++;
  }
  pthread_mutex_unlock(&r->lock);
  return ok;
}
