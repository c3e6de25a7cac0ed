/* The hub: channel table, history rings, subscription and fan-out. */
#include "hub/internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* ---- rings ---------------------------------------------------------------- */

static void ring_init(fc__ring_t *r, unsigned max) {
  memset(r, 0, sizeof *r);
  r->max = max;
}

static void ring_dispose(fc__ring_t *r) {
  free(r->items);
  ring_init(r, r->max);
}

static void *ring_at(const fc__ring_t *r, unsigned i) { return r->items[(r->head + i) % r->cap]; }

/* Makes room for one more item below `max`: doubles the array, oldest first. */
static void ring_grow(fc__ring_t *r) {
  unsigned cap = r->cap ? r->cap * 2 : 4;
  if (cap > r->max) cap = r->max;
  void **items = fc_xmalloc(cap * sizeof *items);
  for (unsigned i = 0; i < r->count; i++) items[i] = ring_at(r, i);
  free(r->items);
  r->items = items;
  r->cap = cap;
  r->head = 0;
}

/* Appends `v`; returns the value pushed out when full, else NULL. */
static void *ring_push(fc__ring_t *r, void *v, bool *pushed_out) {
  *pushed_out = false;
  if (r->max == 0) {
    *pushed_out = true;
    return v;
  }
  if (r->count < r->max) {
    if (r->count == r->cap) ring_grow(r);
    r->items[(r->head + r->count++) % r->cap] = v;
    return NULL;
  }
  void *old = r->items[r->head];
  r->items[r->head] = v;
  r->head = (r->head + 1) % r->cap;
  *pushed_out = true;
  return old;
}

/* Takes the oldest item out; an emptied ring gives its array back. */
static void *ring_shift(fc__ring_t *r) {
  void *v = r->items[r->head];
  r->head = (r->head + 1) % r->cap;
  if (--r->count == 0) ring_dispose(r);
  return v;
}

static void history_append(fc_channel_t *ch, fc_event_t *ev);

/* ---- channel table -------------------------------------------------------- */

static uint32_t hash_name(const char *s, size_t n) { return fc_hash_fnv1a(s, n); }

#define TABLE_MIN 64 /* buckets */

static void table_resize(fc_hub_t *hub, size_t nb) {
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

static void table_grow(fc_hub_t *hub) { table_resize(hub, hub->nbuckets * 2); }

/* Halves the table while it is less than an eighth full. */
static void table_shrink(fc_hub_t *hub) {
  size_t nb = hub->nbuckets;
  while (nb > TABLE_MIN && hub->nchannels < nb / 8) nb /= 2;
  if (nb != hub->nbuckets) table_resize(hub, nb);
}

unsigned fc_hub_retention_of(const fc_hub_t *hub, const char *name) {
  for (size_t i = 0; i < hub->opts.nrules; i++)
    if (fc_glob_match(hub->opts.rules[i].pattern, name)) return hub->opts.rules[i].count;
  return hub->opts.retention;
}

/* A channel outside the table, with no event yet. */
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
  atomic_init(&ch->refs, 0);
  atomic_init(&ch->events, 0);
  atomic_init(&ch->used_ms, fc_mono_ms());
  ch->local_count = fc_xcalloc(hub->opts.threads, sizeof *ch->local_count);
  ch->local = fc_xcalloc(hub->opts.threads, sizeof *ch->local);
  return ch;
}

/* Frees a channel outside the table. Its history's events must be its last
 * events alive (see channel_unused), or the hub is being freed. */
static void channel_free(fc_channel_t *ch) {
  while (ch->history.count) fc_event_unref(ring_shift(&ch->history));
  ring_dispose(&ch->history);
  ring_dispose(&ch->evicted);
  free(ch->local_count);
  free(ch->local);
  free(ch->name);
  free(ch);
}

/* The channel named `name` in the table, or NULL. Hub lock held. */
static fc_channel_t *find_locked(fc_hub_t *hub, const char *name, size_t len, uint32_t h) {
  fc_channel_t *ch = hub->buckets[h & (hub->nbuckets - 1)];
  while (ch && !(ch->hash == h && ch->name_len == len && memcmp(ch->name, name, len) == 0)) ch = ch->hnext;
  return ch;
}

/* Tells the owner a channel entered or left memory. Hub lock held. */
static void told_locked(fc_hub_t *hub, const fc_channel_t *ch, bool in_memory) {
  if (hub->opts.on_channel) hub->opts.on_channel(hub->opts.on_channel_ud, ch->name, in_memory);
}

static void insert_locked(fc_hub_t *hub, fc_channel_t *ch) {
  if (hub->nchannels >= hub->nbuckets) table_grow(hub);
  ch->hnext = hub->buckets[ch->hash & (hub->nbuckets - 1)];
  hub->buckets[ch->hash & (hub->nbuckets - 1)] = ch;
  hub->nchannels++;
  told_locked(hub, ch, true);
}

static bool full_locked(const fc_hub_t *hub, unsigned flags) {
  return !(flags & FC_HUB_NOCAP) && hub->opts.max_channels && hub->nchannels >= hub->opts.max_channels;
}

/* A new channel with what storage holds of it. Returns 0, -ENOENT (storage
 * does not know it and !create) or the load's error. No lock held. */
static int channel_load(fc_hub_t *hub, const char *name, size_t len, uint32_t h, bool create, fc_channel_t **out) {
  *out = NULL;
  if (!hub->opts.load && !create) return -ENOENT;
  fc_channel_t *ch = channel_new(hub, name, len, h);
  *out = ch;
  if (!hub->opts.load) return 0;
  /* Twice the retention: the older half only fills the evicted-id window. */
  unsigned limit = ch->retention > UINT_MAX / 2 ? UINT_MAX : ch->retention * 2;
  int rc = hub->opts.load(hub->opts.load_ud, ch, limit);
  if (rc > 0) {
    /* Whatever is older than the oldest loaded event was trimmed or purged. */
    ch->evicted_total = ch->history.count ? ((fc_event_t *)ring_at(&ch->history, 0))->n - 1 : ch->next_n - 1;
    return 0;
  }
  if (rc == 0 && create) return 0;
  channel_free(ch);
  *out = NULL;
  return rc < 0 ? rc : -ENOENT;
}

int fc_hub_open(fc_hub_t *hub, const char *name, size_t len, unsigned flags, fc_channel_t **out) {
  *out = NULL;
  if (!fc_channel_name_valid(name, len)) return -EINVAL;
  uint32_t h = hash_name(name, len);
  for (;;) {
    pthread_mutex_lock(&hub->lock);
    fc_channel_t *ch = find_locked(hub, name, len, h);
    /* A lookup past the cap still reads storage: an unknown channel is then
     * -ENOENT rather than -EMFILE. */
    bool full = !ch && (flags & FC_HUB_CREATE) && full_locked(hub, flags);
    uint64_t frees = hub->frees[h & (FC__FREES - 1)];
    if (ch) atomic_fetch_add(&ch->refs, 1);
    pthread_mutex_unlock(&hub->lock);
    if (ch || full || (flags & FC_HUB_CACHED)) {
      *out = ch;
      return ch ? 0 : full ? -EMFILE : -ENOENT;
    }

    /* Storage is read without the lock; whoever inserts first wins. */
    fc_channel_t *fresh;
    int rc = channel_load(hub, name, len, h, flags & FC_HUB_CREATE, &fresh);
    if (rc < 0) return rc;
    pthread_mutex_lock(&hub->lock);
    ch = find_locked(hub, name, len, h);
    /* A channel freed meanwhile may have been loaded, used and freed again
     * by others after this read: then what was read may be stale. */
    bool stale = !ch && hub->frees[h & (FC__FREES - 1)] != frees;
    if (!ch && !stale && !full_locked(hub, flags)) {
      insert_locked(hub, fresh);
      ch = fresh;
      fresh = NULL;
    }
    if (ch) atomic_fetch_add(&ch->refs, 1);
    pthread_mutex_unlock(&hub->lock);
    if (fresh) channel_free(fresh);
    if (stale) continue;
    *out = ch;
    return ch ? 0 : -EMFILE;
  }
}

bool fc_hub_loads(const fc_hub_t *hub) { return hub->opts.load != NULL; }

fc_channel_t *fc_hub_channel(fc_hub_t *hub, const char *name, size_t len, bool create) {
  fc_channel_t *ch;
  fc_hub_open(hub, name, len, create ? FC_HUB_CREATE | FC_HUB_NOCAP : 0, &ch);
  return ch;
}

fc_channel_t *fc_channel_ref(fc_channel_t *ch) {
  atomic_fetch_add(&ch->refs, 1);
  return ch;
}

void fc_channel_unref(fc_channel_t *ch) {
  if (!ch) return;
  atomic_store(&ch->used_ms, fc_mono_ms());
  atomic_fetch_sub(&ch->refs, 1);
}

void fc_channel_unref_quiet(fc_channel_t *ch) {
  if (ch) atomic_fetch_sub(&ch->refs, 1);
}

void fc_hub_restore_seq(fc_hub_t *hub, uint64_t last_seq) {
  pthread_mutex_lock(&hub->lock);
  if (last_seq > hub->seq) hub->seq = last_seq;
  pthread_mutex_unlock(&hub->lock);
}

void fc_hub_restore_counters(fc_channel_t *ch, uint64_t first_seq, uint64_t last_seq, uint64_t next_n) {
  ch->first_seq = first_seq;
  ch->last_seq = last_seq;
  ch->next_n = next_n ? next_n : 1;
}

void fc_hub_restore_event(fc_channel_t *ch, const fc_event_in_t *in) {
  history_append(ch, fc__event_new(ch, in->seq, in->n, in->time_ms, in));
}

size_t fc_channel_subscribers(fc_hub_t *hub, fc_channel_t *ch) {
  pthread_mutex_lock(&hub->lock);
  size_t n = ch->subscribers;
  pthread_mutex_unlock(&hub->lock);
  return n;
}

uint64_t fc_channel_last_seq(fc_hub_t *hub, fc_channel_t *ch) {
  pthread_mutex_lock(&hub->lock);
  uint64_t s = ch->last_seq;
  pthread_mutex_unlock(&hub->lock);
  return s;
}

void fc_hub_skip(fc_hub_t *hub, fc_channel_t *ch, uint64_t next_n) {
  pthread_mutex_lock(&hub->lock);
  if (next_n > ch->next_n) {
    ch->evicted_total += next_n - ch->next_n; /* never seen here: counted as lost */
    ch->next_n = next_n;
  }
  pthread_mutex_unlock(&hub->lock);
}

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
  hub->nbuckets = TABLE_MIN;
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

static void publish(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n, fc_publish_result_t *res,
                    bool use);

void fc_hub_publish(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n, fc_publish_result_t *res) {
  publish(hub, ch, in, n, res, true);
}

void fc_hub_apply(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n, fc_publish_result_t *res) {
  publish(hub, ch, in, n, res, false);
}

static void publish(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n, fc_publish_result_t *res,
                    bool use) {
  fc_event_t *stack[16];
  fc_event_t **evs = n <= FC_ARRAY_LEN(stack) ? stack : fc_xmalloc(n * sizeof *evs);

  pthread_mutex_lock(&hub->lock);
  res->first_seq = in[0].seq;
  for (size_t i = 0; i < n; i++) {
    assert(in[i].seq > ch->last_seq && in[i].n == ch->next_n);
    if (in[i].seq > hub->seq) hub->seq = in[i].seq; /* a catch-up may bring older ids */
    ch->next_n = in[i].n + 1;
    evs[i] = fc__event_new(ch, in[i].seq, in[i].n, in[i].time_ms, &in[i]);
    if (!ch->first_seq) ch->first_seq = in[i].seq;
    ch->last_seq = in[i].seq;
    history_append(ch, fc_event_ref(evs[i]));
  }
  res->last_seq = in[n - 1].seq;
  res->subscribers = ch->subscribers;
  if (use) atomic_store(&ch->used_ms, fc_mono_ms());
  for (unsigned t = 0; t < hub->opts.threads; t++)
    if (ch->local_count[t]) inbox_push(hub, t, evs, n);
  pthread_mutex_unlock(&hub->lock);

  for (size_t i = 0; i < n; i++) fc_event_unref(evs[i]);
  if (evs != stack) free(evs);
}

void fc_hub_notice(fc_hub_t *hub, fc_channel_t *ch, fc_str_t name, fc_str_t data) {
  fc_event_in_t in = {.name = name, .data = data, .is_json = true};
  pthread_mutex_lock(&hub->lock);
  if (!ch->notice_links) {
    pthread_mutex_unlock(&hub->lock);
    return;
  }
  fc_event_t *ev = fc__event_new(ch, 0, ++ch->notices, fc_now_ms(), &in);
  for (unsigned t = 0; t < hub->opts.threads; t++)
    if (ch->local_count[t]) inbox_push(hub, t, &ev, 1);
  pthread_mutex_unlock(&hub->lock);
  fc_event_unref(ev);
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
    if (((fc_event_t *)ring_at(&ch->history, mid))->seq <= after) lo = mid + 1;
    else hi = mid;
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
    if ((uint64_t)(uintptr_t)ring_at(ev, mid) <= after) lo = mid + 1;
    else hi = mid;
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

void fc_hub_subscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t **links, size_t n, const fc_resume_t *from,
                      fc_backlog_t *out) {
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
    l->notice_from = ch->notices;
    ch->notice_links += l->wants_notices;
    l->prev = NULL;
    l->next = ch->local[thread];
    if (l->next) l->next->prev = l;
    ch->local[thread] = l;
    ch->local_count[thread]++;
    ch->subscribers++;
  }
  out->position = hub->seq;
  pthread_mutex_unlock(&hub->lock);
  if (n > 1 && out->nevents > 1) qsort(out->events, out->nevents, sizeof *out->events, cmp_seq);
}

void fc_hub_unsubscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t *l) {
  fc_channel_t *ch = l->channel;
  if (!ch) return;
  pthread_mutex_lock(&hub->lock);
  if (l->prev) l->prev->next = l->next;
  else if (ch->local[thread] == l) ch->local[thread] = l->next;
  if (l->next) l->next->prev = l->prev;
  ch->local_count[thread]--;
  ch->subscribers--;
  ch->notice_links -= l->wants_notices;
  atomic_store(&ch->used_ms, fc_mono_ms());
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
      if (fc_event_is_notice(ev)) {
        if (l->wants_notices && ev->n > l->notice_from) l->deliver(l, ev);
        continue;
      }
      if (ev->seq <= l->last_seq) continue;
      l->last_seq = ev->seq;
      l->deliver(l, ev);
    }
    fc_event_unref(ev);
  }
  free(items);
}

/* ---- history and listing ------------------------------------------------- */

void fc_hub_history(fc_hub_t *hub, fc_channel_t *ch, uint64_t after, size_t limit, fc_backlog_t *out) {
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

void fc_hub_purge(fc_hub_t *hub, fc_channel_t *ch, uint64_t upto) {
  pthread_mutex_lock(&hub->lock);
  while (ch->history.count && ((fc_event_t *)ring_at(&ch->history, 0))->seq <= upto) evict_oldest(ch);
  pthread_mutex_unlock(&hub->lock);
}

static int cmp_info(const void *a, const void *b) {
  return strcmp(((const fc_channel_info_t *)a)->name, ((const fc_channel_info_t *)b)->name);
}

/* Sifts heap[i] down in a max-heap of `n` channels ordered by name. */
static void heap_down(fc_channel_t **heap, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, top = i;
    if (l < n && strcmp(heap[l]->name, heap[top]->name) > 0) top = l;
    if (r < n && strcmp(heap[r]->name, heap[top]->name) > 0) top = r;
    if (top == i) return;
    fc_channel_t *t = heap[i];
    heap[i] = heap[top];
    heap[top] = t;
    i = top;
  }
}

static void heap_up(fc_channel_t **heap, size_t i) {
  while (i && strcmp(heap[(i - 1) / 2]->name, heap[i]->name) < 0) {
    fc_channel_t *t = heap[i];
    heap[i] = heap[(i - 1) / 2];
    heap[(i - 1) / 2] = t;
    i = (i - 1) / 2;
  }
}

fc_channel_info_t *fc_hub_list(fc_hub_t *hub, const char *after, size_t limit, size_t *n) {
  pthread_mutex_lock(&hub->lock);
  size_t cap = limit < hub->nchannels ? limit : hub->nchannels;
  /* The `limit` smallest names after `after`: a max-heap whose top goes
   * when a smaller name comes. */
  fc_channel_t **heap = fc_xmalloc((cap ? cap : 1) * sizeof *heap);
  size_t k = 0;
  for (size_t i = 0; i < hub->nbuckets && cap; i++) {
    for (fc_channel_t *c = hub->buckets[i]; c; c = c->hnext) {
      if (strcmp(c->name, after) <= 0) continue;
      if (k < cap) {
        heap[k] = c;
        heap_up(heap, k++);
      } else if (strcmp(c->name, heap[0]->name) < 0) {
        heap[0] = c;
        heap_down(heap, k, 0);
      }
    }
  }
  fc_channel_info_t *list = fc_xmalloc((k ? k : 1) * sizeof *list);
  for (size_t i = 0; i < k; i++) {
    fc_channel_t *c = heap[i];
    memcpy(list[i].name, c->name, c->name_len + 1);
    list[i].retained = c->history.count;
    list[i].last_seq = c->last_seq;
    list[i].subscribers = c->subscribers;
  }
  pthread_mutex_unlock(&hub->lock);
  free(heap);
  qsort(list, k, sizeof *list, cmp_info);
  *n = k;
  return list;
}

/* ---- sweep ---------------------------------------------------------------- */

/* True when nothing needs `ch` in memory any more: no reference, no
 * subscriber, unused for idle_ms, and no event of it alive but its history's,
 * each held by the history alone (nobody can take another without the hub
 * lock). Without storage, retained events are the only copy: they keep it. */
static bool channel_unused(const fc_hub_t *hub, fc_channel_t *ch, uint64_t now_ms) {
  if (atomic_load(&ch->refs) || ch->subscribers) return false;
  uint64_t used = atomic_load(&ch->used_ms);
  if (now_ms < used || now_ms - used < hub->opts.idle_ms) return false;
  if (!hub->opts.load && ch->history.count) return false;
  if (atomic_load(&ch->events) != ch->history.count) return false;
  for (unsigned i = 0; i < ch->history.count; i++)
    if (atomic_load(&((fc_event_t *)ring_at(&ch->history, i))->sse.refs) != 1) return false;
  return true;
}

void fc_hub_drop(fc_hub_t *hub, fc_channel_t *ch) {
  if (!ch) return;
  pthread_mutex_lock(&hub->lock);
  atomic_fetch_sub(&ch->refs, 1);
  bool unused = channel_unused(hub, ch, atomic_load(&ch->used_ms) + hub->opts.idle_ms);
  if (unused) {
    fc_channel_t **pp = &hub->buckets[ch->hash & (hub->nbuckets - 1)];
    while (*pp != ch) pp = &(*pp)->hnext;
    *pp = ch->hnext;
    hub->nchannels--;
    hub->frees[ch->hash & (FC__FREES - 1)]++;
    told_locked(hub, ch, false);
  }
  pthread_mutex_unlock(&hub->lock);
  if (unused) channel_free(ch);
}

#define SWEEP_SLICE 4096 /* buckets looked at per hold of the hub lock */
#define SWEEP_TRIM 1024  /* channels freed at once before memory goes back to the system */

size_t fc_hub_sweep(fc_hub_t *hub, uint64_t now_ms) {
  fc_channel_t *dead = NULL;
  size_t freed = 0;
  for (size_t b = 0;;) {
    pthread_mutex_lock(&hub->lock);
    /* The table may have grown between slices: some channels are then seen
     * twice or not at all this time, which only delays them to the next sweep. */
    size_t end = b + SWEEP_SLICE < hub->nbuckets ? b + SWEEP_SLICE : hub->nbuckets;
    for (; b < end; b++) {
      for (fc_channel_t **pp = &hub->buckets[b], *c; (c = *pp);) {
        if (!channel_unused(hub, c, now_ms)) {
          pp = &c->hnext;
          continue;
        }
        *pp = c->hnext;
        c->hnext = dead;
        dead = c;
        told_locked(hub, c, false);
        hub->nchannels--;
        hub->frees[c->hash & (FC__FREES - 1)]++;
        freed++;
      }
    }
    bool done = b >= hub->nbuckets;
    if (done) table_shrink(hub);
    pthread_mutex_unlock(&hub->lock);
    if (done) break;
  }
  for (fc_channel_t *c = dead, *next; c; c = next) {
    next = c->hnext;
    channel_free(c);
  }
  if (freed >= SWEEP_TRIM) malloc_trim(0);
  return freed;
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
