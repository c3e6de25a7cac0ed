/* The hub: channel table, history rings, subscription and fan-out. */
#include "hub/internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- rings ---------------------------------------------------------------- */

static void ring_init(fc__ring_t *r, unsigned cap) {
  r->items = cap ? fc_xcalloc(cap, sizeof *r->items) : NULL;
  r->cap = cap;
  r->head = r->count = 0;
}

static void *ring_at(const fc__ring_t *r, unsigned i) { return r->items[(r->head + i) % r->cap]; }

/* Appends `v`; returns the value pushed out when full, else NULL. */
static void *ring_push(fc__ring_t *r, void *v, bool *pushed_out) {
  *pushed_out = false;
  if (r->cap == 0) {
    *pushed_out = true;
    return v;
  }
  if (r->count < r->cap) {
    r->items[(r->head + r->count++) % r->cap] = v;
    return NULL;
  }
  void *old = r->items[r->head];
  r->items[r->head] = v;
  r->head = (r->head + 1) % r->cap;
  *pushed_out = true;
  return old;
}

static void *ring_shift(fc__ring_t *r) {
  void *v = r->items[r->head];
  r->head = (r->head + 1) % r->cap;
  r->count--;
  return v;
}

static void history_append(fc_channel_t *ch, fc_event_t *ev);

/* ---- channel table -------------------------------------------------------- */

static uint32_t hash_name(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

static void table_grow(fc_hub_t *hub) {
  size_t nb = hub->nbuckets * 2;
  fc_channel_t **b = fc_xcalloc(nb, sizeof *b);
  for (size_t i = 0; i < hub->nbuckets; i++) {
    for (fc_channel_t *c = hub->buckets[i], *next; c; c = next) {
      next = c->hnext;
      c->hnext = b[c->hash & (nb - 1)];
      b[c->hash & (nb - 1)] = c;
    }
  }
  free(hub->buckets);
  hub->buckets = b;
  hub->nbuckets = nb;
}

bool fc_glob_match(const char *p, const char *s) {
  const char *star = NULL, *resume = NULL;
  while (*s) {
    if (*p == '*') {
      star = p++;
      resume = s;
    } else if (*p == *s) {
      p++, s++;
    } else if (star) {
      p = star + 1;
      s = ++resume;
    } else {
      return false;
    }
  }
  while (*p == '*') p++;
  return *p == '\0';
}

static fc_channel_t *channel_new(fc_hub_t *hub, const char *name, size_t len, uint32_t h) {
  fc_channel_t *ch = fc_xcalloc(1, sizeof *ch);
  ch->hash = h;
  ch->name = fc_xstrndup(name, len);
  ch->name_len = (uint32_t)len;
  ch->next_n = 1;
  ch->retention = hub->opts.retention;
  for (size_t i = 0; i < hub->opts.nrules; i++) {
    if (fc_glob_match(hub->opts.rules[i].pattern, ch->name)) {
      ch->retention = hub->opts.rules[i].count;
      ch->max_age_s = hub->opts.rules[i].max_age_s;
      break;
    }
  }
  ring_init(&ch->history, ch->retention);
  ring_init(&ch->evicted, ch->retention ? ch->retention : 1);
  ch->local_count = fc_xcalloc(hub->opts.threads, sizeof *ch->local_count);
  ch->local = fc_xcalloc(hub->opts.threads, sizeof *ch->local);
  return ch;
}

static void channel_free(fc_channel_t *ch) {
  while (ch->history.count) fc_event_unref(ring_shift(&ch->history));
  free(ch->history.items);
  free(ch->evicted.items);
  free(ch->local_count);
  free(ch->local);
  free(ch->name);
  free(ch);
}

/* Finds or (with `create`) adds a channel. Hub lock held. */
static fc_channel_t *find_locked(fc_hub_t *hub, const char *name, size_t len, bool create) {
  uint32_t h = hash_name(name, len);
  fc_channel_t *ch = hub->buckets[h & (hub->nbuckets - 1)];
  while (ch && !(ch->hash == h && ch->name_len == len && memcmp(ch->name, name, len) == 0))
    ch = ch->hnext;
  if (!ch && create) {
    if (hub->nchannels >= hub->nbuckets) table_grow(hub);
    ch = channel_new(hub, name, len, h);
    ch->hnext = hub->buckets[h & (hub->nbuckets - 1)];
    hub->buckets[h & (hub->nbuckets - 1)] = ch;
    hub->nchannels++;
  }
  return ch;
}

fc_channel_t *fc_hub_channel(fc_hub_t *hub, const char *name, size_t len, bool create) {
  if (!fc_channel_name_valid(name, len)) return NULL;
  pthread_mutex_lock(&hub->lock);
  fc_channel_t *ch = find_locked(hub, name, len, create);
  if (ch && ch->load_pending) {
    ch->load_pending = false;
    /* Twice the retention: the older half only fills the evicted-id window. */
    hub->opts.load(hub->opts.load_ud, ch, ch->retention * 2);
    /* Whatever is older than the oldest loaded event was trimmed or purged. */
    ch->evicted_total = ch->history.count ? ((fc_event_t *)ring_at(&ch->history, 0))->n - 1 : ch->next_n - 1;
  }
  pthread_mutex_unlock(&hub->lock);
  return ch;
}

void fc_hub_restore_seq(fc_hub_t *hub, uint64_t last_seq) {
  pthread_mutex_lock(&hub->lock);
  if (last_seq > hub->seq) hub->seq = last_seq;
  pthread_mutex_unlock(&hub->lock);
}

void fc_hub_restore_channel(fc_hub_t *hub, const char *name, uint64_t first_seq, uint64_t last_seq,
                            uint64_t next_n, uint64_t stored) {
  size_t len = strlen(name);
  if (!fc_channel_name_valid(name, len)) return;
  pthread_mutex_lock(&hub->lock);
  fc_channel_t *ch = find_locked(hub, name, len, true);
  ch->first_seq = first_seq;
  ch->last_seq = last_seq;
  ch->next_n = next_n;
  ch->stored = stored;
  ch->load_pending = hub->opts.load != NULL;
  pthread_mutex_unlock(&hub->lock);
}

void fc_hub_restore_event(fc_channel_t *ch, const fc_event_in_t *in) {
  history_append(ch, fc__event_new(ch, in->seq, in->n, in->time_ms, in));
}

fc_channel_store_t *fc_channel_store(fc_channel_t *ch) { return &ch->store; }

uint64_t fc_channel_next_n(fc_hub_t *hub, fc_channel_t *ch) {
  pthread_mutex_lock(&hub->lock);
  uint64_t n = ch->next_n;
  pthread_mutex_unlock(&hub->lock);
  return n;
}

unsigned fc_channel_retention(const fc_channel_t *ch) { return ch->retention; }

uint64_t fc_channel_max_age(const fc_channel_t *ch) { return ch->max_age_s; }

const char *fc_channel_name(const fc_channel_t *ch) { return ch->name; }

/* ---- life ----------------------------------------------------------------- */

fc_hub_t *fc_hub_new(const fc_hub_opts_t *opts) {
  fc_hub_t *hub = fc_xcalloc(1, sizeof *hub);
  hub->opts = *opts;
  if (hub->opts.threads == 0) hub->opts.threads = 1;
  pthread_mutex_init(&hub->lock, NULL);
  hub->nbuckets = 64;
  hub->buckets = fc_xcalloc(hub->nbuckets, sizeof *hub->buckets);
  hub->inboxes = fc_xcalloc_lines(hub->opts.threads, sizeof *hub->inboxes);
  for (unsigned t = 0; t < hub->opts.threads; t++) pthread_mutex_init(&hub->inboxes[t].lock, NULL);
  return hub;
}

void fc_hub_free(fc_hub_t *hub) {
  if (!hub) return;
  for (unsigned t = 0; t < hub->opts.threads; t++) {
    fc__inbox_t *in = &hub->inboxes[t];
    for (size_t i = 0; i < in->len; i++) fc_event_unref(in->items[i]);
    free(in->items);
    pthread_mutex_destroy(&in->lock);
  }
  free(hub->inboxes);
  for (size_t i = 0; i < hub->nbuckets; i++) {
    for (fc_channel_t *c = hub->buckets[i], *next; c; c = next) {
      next = c->hnext;
      channel_free(c);
    }
  }
  free(hub->buckets);
  pthread_mutex_destroy(&hub->lock);
  free(hub);
}

size_t fc_hub_channel_count(fc_hub_t *hub) {
  pthread_mutex_lock(&hub->lock);
  size_t n = hub->nchannels;
  pthread_mutex_unlock(&hub->lock);
  return n;
}

uint64_t fc_hub_last_seq(fc_hub_t *hub) {
  pthread_mutex_lock(&hub->lock);
  uint64_t s = hub->seq;
  pthread_mutex_unlock(&hub->lock);
  return s;
}

/* ---- publish -------------------------------------------------------------- */

static size_t subscriber_count(const fc_hub_t *hub, const fc_channel_t *ch) {
  size_t n = 0;
  for (unsigned t = 0; t < hub->opts.threads; t++) n += ch->local_count[t];
  return n;
}

/* Queues one reference to each of `evs` on `thread`'s inbox. Hub lock held, so
 * inbox order is id order. */
static void inbox_push(fc_hub_t *hub, unsigned thread, fc_event_t **evs, size_t n) {
  fc__inbox_t *in = &hub->inboxes[thread];
  pthread_mutex_lock(&in->lock);
  bool was_empty = in->len == 0;
  if (in->len + n > in->cap) {
    in->cap = in->cap ? in->cap * 2 : 64;
    while (in->cap < in->len + n) in->cap *= 2;
    in->items = fc_xrealloc(in->items, in->cap * sizeof *in->items);
  }
  for (size_t i = 0; i < n; i++) in->items[in->len++] = fc_event_ref(evs[i]);
  pthread_mutex_unlock(&in->lock);
  if (was_empty && hub->opts.notify) hub->opts.notify(thread, hub->opts.notify_ud);
}

static void history_append(fc_channel_t *ch, fc_event_t *ev) {
  bool out;
  fc_event_t *old = ring_push(&ch->history, ev, &out);
  if (!out) return;
  bool dropped;
  ring_push(&ch->evicted, (void *)(uintptr_t)old->seq, &dropped);
  ch->evicted_total++;
  fc_event_unref(old);
}

void fc_hub_publish(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n,
                    fc_publish_result_t *res) {
  int64_t now = fc_now_ms();
  fc_event_t *stack[16];
  fc_event_t **evs = n <= FC_ARRAY_LEN(stack) ? stack : fc_xmalloc(n * sizeof *evs);

  pthread_mutex_lock(&hub->lock);
  res->first_seq = in[0].seq ? in[0].seq : hub->seq + 1;
  for (size_t i = 0; i < n; i++) {
    /* The store hands ids it took from this same counter, in order. */
    uint64_t seq = in[i].seq ? in[i].seq : hub->seq + 1;
    hub->seq = seq;
    evs[i] = fc__event_new(ch, seq, ch->next_n++, in[i].time_ms ? in[i].time_ms : now, &in[i]);
    if (!ch->first_seq) ch->first_seq = seq;
    ch->last_seq = seq;
    history_append(ch, fc_event_ref(evs[i]));
  }
  res->last_seq = hub->seq;
  res->subscribers = subscriber_count(hub, ch);
  for (unsigned t = 0; t < hub->opts.threads; t++)
    if (ch->local_count[t]) inbox_push(hub, t, evs, n);
  pthread_mutex_unlock(&hub->lock);

  for (size_t i = 0; i < n; i++) fc_event_unref(evs[i]);
  if (evs != stack) free(evs);
}

/* ---- subscribe ------------------------------------------------------------ */

void fc_backlog_dispose(fc_backlog_t *b) {
  for (size_t i = 0; i < b->nevents; i++) fc_event_unref(b->events[i]);
  free(b->events);
  free(b->gaps);
  memset(b, 0, sizeof *b);
}

/* Index of the first retained event with id > after (count when none). */
static unsigned history_after(const fc_channel_t *ch, uint64_t after) {
  unsigned lo = 0, hi = ch->history.count;
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    if (((fc_event_t *)ring_at(&ch->history, mid))->seq <= after)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Counts the events of `ch` with id > after that are no longer retained. */
static void count_lost(const fc_channel_t *ch, uint64_t after, fc_gap_t *gap) {
  gap->lost = 0;
  gap->exact = true;
  if (ch->evicted_total == 0 || ch->first_seq == 0) return;
  if (after < ch->first_seq) {
    gap->lost = ch->evicted_total; /* every evicted event came after `after` */
    return;
  }
  if (ch->history.count && after >= ((fc_event_t *)ring_at(&ch->history, 0))->seq) return;
  const fc__ring_t *ev = &ch->evicted;
  unsigned lo = 0, hi = ev->count;
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    if ((uint64_t)(uintptr_t)ring_at(ev, mid) <= after)
      lo = mid + 1;
    else
      hi = mid;
  }
  gap->lost = ev->count - lo;
  if (lo == 0 && ev->count < ch->evicted_total) {
    /* Older evictions than the window are not tracked: a lower bound only. */
    gap->exact = false;
    if (gap->lost == 0) gap->lost = 1;
  }
}

static int cmp_seq(const void *a, const void *b) {
  uint64_t x = (*(fc_event_t *const *)a)->seq, y = (*(fc_event_t *const *)b)->seq;
  return x < y ? -1 : x > y;
}

void fc_hub_subscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t **links, size_t n,
                      const fc_resume_t *from, fc_backlog_t *out) {
  memset(out, 0, sizeof *out);
  size_t cap = 0;
  pthread_mutex_lock(&hub->lock);
  for (size_t i = 0; i < n; i++) {
    fc_channel_t *ch = links[i]->channel;
    unsigned start;
    if (from->has_after) {
      start = history_after(ch, from->after);
      fc_gap_t gap = {.channel = ch};
      count_lost(ch, from->after, &gap);
      if (gap.lost) {
        gap.next_seq = start < ch->history.count ? ((fc_event_t *)ring_at(&ch->history, start))->seq : 0;
        out->gaps = fc_xrealloc(out->gaps, (out->ngaps + 1) * sizeof *out->gaps);
        out->gaps[out->ngaps++] = gap;
      }
    } else {
      start = ch->history.count > from->replay ? ch->history.count - from->replay : 0;
    }
    unsigned more = ch->history.count - start;
    if (out->nevents + more > cap) {
      cap = out->nevents + more + 16;
      out->events = fc_xrealloc(out->events, cap * sizeof *out->events);
    }
    for (unsigned k = start; k < ch->history.count; k++)
      out->events[out->nevents++] = fc_event_ref(ring_at(&ch->history, k));

    /* Anything already in flight to this thread is in the backlog or skipped. */
    fc_sub_link_t *l = links[i];
    l->last_seq = ch->last_seq;
    l->prev = NULL;
    l->next = ch->local[thread];
    if (l->next) l->next->prev = l;
    ch->local[thread] = l;
    ch->local_count[thread]++;
  }
  out->position = hub->seq;
  pthread_mutex_unlock(&hub->lock);
  if (n > 1 && out->nevents > 1) qsort(out->events, out->nevents, sizeof *out->events, cmp_seq);
}

void fc_hub_unsubscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t *l) {
  fc_channel_t *ch = l->channel;
  if (!ch) return;
  pthread_mutex_lock(&hub->lock);
  if (l->prev)
    l->prev->next = l->next;
  else if (ch->local[thread] == l)
    ch->local[thread] = l->next;
  if (l->next) l->next->prev = l->prev;
  ch->local_count[thread]--;
  pthread_mutex_unlock(&hub->lock);
  l->prev = l->next = NULL;
  l->channel = NULL;
}

void fc_hub_drain(fc_hub_t *hub, unsigned thread) {
  fc__inbox_t *in = &hub->inboxes[thread];
  pthread_mutex_lock(&in->lock);
  fc_event_t **items = in->items;
  size_t len = in->len;
  in->items = NULL;
  in->len = in->cap = 0;
  pthread_mutex_unlock(&in->lock);

  for (size_t i = 0; i < len; i++) {
    fc_event_t *ev = items[i];
    /* Only this thread edits its list, so it can be walked without the hub lock. */
    for (fc_sub_link_t *l = ev->channel->local[thread], *next; l; l = next) {
      next = l->next;
      if (ev->seq <= l->last_seq) continue;
      l->last_seq = ev->seq;
      l->deliver(l, ev);
    }
    fc_event_unref(ev);
  }
  free(items);
}

/* ---- history and listing ------------------------------------------------- */

void fc_hub_history(fc_hub_t *hub, fc_channel_t *ch, uint64_t after, size_t limit,
                    fc_backlog_t *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&hub->lock);
  unsigned start = history_after(ch, after);
  size_t count = ch->history.count - start;
  if (count > limit) count = limit;
  out->events = fc_xmalloc((count ? count : 1) * sizeof *out->events);
  for (size_t k = 0; k < count; k++)
    out->events[out->nevents++] = fc_event_ref(ring_at(&ch->history, start + (unsigned)k));
  pthread_mutex_unlock(&hub->lock);
}

/* Drops the oldest retained event, remembering its id for gap counts. */
static void evict_oldest(fc_channel_t *ch) {
  fc_event_t *ev = ring_shift(&ch->history);
  bool out;
  ring_push(&ch->evicted, (void *)(uintptr_t)ev->seq, &out);
  ch->evicted_total++;
  fc_event_unref(ev);
}

void fc_hub_purge(fc_hub_t *hub, fc_channel_t *ch) {
  pthread_mutex_lock(&hub->lock);
  while (ch->history.count) evict_oldest(ch);
  pthread_mutex_unlock(&hub->lock);
}

static int cmp_info(const void *a, const void *b) {
  return strcmp(((const fc_channel_info_t *)a)->name, ((const fc_channel_info_t *)b)->name);
}

fc_channel_info_t *fc_hub_list(fc_hub_t *hub, size_t *n) {
  pthread_mutex_lock(&hub->lock);
  fc_channel_info_t *list = fc_xmalloc((hub->nchannels ? hub->nchannels : 1) * sizeof *list);
  size_t k = 0;
  for (size_t i = 0; i < hub->nbuckets; i++) {
    for (fc_channel_t *c = hub->buckets[i]; c; c = c->hnext) {
      size_t kept = c->load_pending ? (c->stored < c->retention ? c->stored : c->retention) : c->history.count;
      list[k++] = (fc_channel_info_t){c->name, kept, c->last_seq, subscriber_count(hub, c)};
    }
  }
  pthread_mutex_unlock(&hub->lock);
  qsort(list, k, sizeof *list, cmp_info);
  *n = k;
  return list;
}

size_t fc_hub_expire(fc_hub_t *hub, int64_t now_ms) {
  size_t dropped = 0;
  pthread_mutex_lock(&hub->lock);
  for (size_t i = 0; i < hub->nbuckets; i++) {
    for (fc_channel_t *c = hub->buckets[i]; c; c = c->hnext) {
      if (!c->max_age_s) continue;
      int64_t cutoff = now_ms - (int64_t)c->max_age_s * 1000;
      while (c->history.count && ((fc_event_t *)ring_at(&c->history, 0))->time_ms < cutoff) {
        evict_oldest(c);
        dropped++;
      }
    }
  }
  pthread_mutex_unlock(&hub->lock);
  return dropped;
}
