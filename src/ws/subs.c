/* A session's subscriptions: a chained hash table keyed by channel name, so
 * that subscribing, unsubscribing and the checks before them cost the same
 * with one subscription or twenty thousand. The hash is SipHash with a key
 * drawn at start, so a client cannot pick names that collide. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ws/internal.h"

#define MIN_BUCKETS 8

static uint64_t name_hash(const fc_ws_session_t *s, const char *name) {
  uint8_t out[crypto_shorthash_BYTES];
  crypto_shorthash(out, (const unsigned char *)name, strlen(name), s->ws->sub_key);
  uint64_t h;
  memcpy(&h, out, sizeof h);
  return h;
}

/* The link to the entry of `name` in its bucket, or to the bucket's end. */
static ws_sub_t **slot(fc_ws_session_t *s, const char *name, uint64_t h) {
  ws_sub_t **pp = &s->subs[h & (s->subs_cap - 1)];
  while (*pp && ((*pp)->hash != h || strcmp((*pp)->name, name))) pp = &(*pp)->next;
  return pp;
}

ws_sub_t *fc__ws_sub_find(fc_ws_session_t *s, const char *name) {
  return s->nsubs ? *slot(s, name, name_hash(s, name)) : NULL;
}

/* Doubles the buckets once there are as many entries. */
static void grow(fc_ws_session_t *s) {
  size_t cap = s->subs_cap ? s->subs_cap * 2 : MIN_BUCKETS;
  ws_sub_t **t = fc_xcalloc(cap, sizeof *t);
  for (size_t i = 0; i < s->subs_cap; i++) {
    for (ws_sub_t *e = s->subs[i], *next; e; e = next) {
      next = e->next;
      e->next = t[e->hash & (cap - 1)];
      t[e->hash & (cap - 1)] = e;
    }
  }
  free(s->subs);
  s->subs = t;
  s->subs_cap = cap;
}

ws_sub_t *fc__ws_sub_add(fc_ws_session_t *s, const char *name) {
  if (s->nsubs >= s->subs_cap) grow(s);
  size_t len = strlen(name);
  ws_sub_t *e = fc_xcalloc(1, sizeof *e + len + 1);
  memcpy(e->name, name, len + 1);
  e->hash = name_hash(s, name);
  ws_sub_t **b = &s->subs[e->hash & (s->subs_cap - 1)];
  e->next = *b;
  *b = e;
  s->nsubs++;
  return e;
}

ws_sub_t *fc__ws_sub_take(fc_ws_session_t *s, const char *name) {
  if (!s->nsubs) return NULL;
  ws_sub_t **pp = slot(s, name, name_hash(s, name)), *e = *pp;
  if (e) {
    *pp = e->next;
    s->nsubs--;
  }
  return e;
}

void fc__ws_subs_dispose(fc_ws_session_t *s) {
  for (size_t i = 0; i < s->subs_cap; i++) {
    for (ws_sub_t *e = s->subs[i], *next; e; e = next) {
      next = e->next;
      fc__ws_sub_drop(s, e);
      free(e);
    }
  }
  free(s->subs);
  s->subs = NULL;
  s->subs_cap = s->nsubs = 0;
}

void fc__ws_sub_drop(fc_ws_session_t *s, ws_sub_t *sub) {
  fc_presence_leave(s->ws->opts.presence, sub->presence);
  sub->presence = NULL;
  fc_hub_unsubscribe(s->ws->opts.hub, s->thread, &sub->link);
}
