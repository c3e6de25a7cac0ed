/* store: the storage interface through store.h alone. The SQLite store on a
 * real database in a temporary directory (group commit from several threads,
 * a group that really fails and rolls back, retention by count and by age,
 * purge, listing channels, reopening) and the memory store (the errors of a
 * bad or locked data directory: test_store_open.c). The test plays the publisher: its `number`
 * callback hands out ids and ordinals, and gives them back when a group fails. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/core.h"
#include "store/store.h"

#define MAX_BATCHES 512
#define MAX_CHANS 32
#define MAX_LOADED 512

typedef struct ctx ctx_t;

/* One batch the test submits, and what it saw of it. */
typedef struct {
  fc_store_batch_t b;
  ctx_t *ctx;
  int id;     /* order of creation */
  char *text; /* the events' data */
  bool numbered, ended;
} tb_t;

/* The publisher's side: the id counter, each channel's next ordinal, and a
 * log of the callbacks. Everything under `lock`. */
struct ctx {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  uint64_t seq;
  struct {
    char name[32];
    uint64_t next_n;
  } chans[MAX_CHANS];
  size_t nchans;
  int64_t time_ms; /* the events' time; 0: now */
  int numbered[MAX_BATCHES], ended[MAX_BATCHES];
  size_t nnumbered, nended;
  bool one_thread; /* callbacks must all run on one thread (SQLite's writer) */
  bool have_thread, wrong_thread;
  pthread_t thread;
  atomic_int inside;
  atomic_bool overlap;
  tb_t *gate; /* its `done` waits for gate_open: later batches queue meanwhile */
  bool gate_reached, gate_open;
  tb_t *all[MAX_BATCHES];
  size_t nall;
  /* the `aged` callback */
  int aged_calls;
  int64_t aged_last;
};

typedef struct {
  char dir[64];
  ctx_t ctx;
  fc_store_t *store;
} fixture_t;

static void ctx_init(ctx_t *c) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);
}

static void ctx_dispose(ctx_t *c) {
  for (size_t i = 0; i < c->nall; i++) {
    free(c->all[i]->b.events);
    free(c->all[i]->text);
    free(c->all[i]);
  }
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/fc-test-store-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  ctx_init(&f->ctx);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  fc_store_close(f->store);
  ctx_dispose(&f->ctx);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "chmod -R u+rwx %s; rm -rf %s", f->dir, f->dir);
  int rc = system(cmd);
  free(f);
  return rc;
}

/* ---- the publisher's callbacks ---------------------------------------- */

static uint64_t *next_n_of(ctx_t *c, const char *name) {
  for (size_t i = 0; i < c->nchans; i++)
    if (!strcmp(c->chans[i].name, name)) return &c->chans[i].next_n;
  assert_true(c->nchans < MAX_CHANS);
  snprintf(c->chans[c->nchans].name, sizeof c->chans[0].name, "%s", name);
  c->chans[c->nchans].next_n = 1;
  return &c->chans[c->nchans++].next_n;
}

/* Checks, on entry to a callback, that none runs concurrently and that they
 * all run on one thread when they should. Lock held. */
static void enter(ctx_t *c) {
  if (atomic_fetch_add(&c->inside, 1) != 0) atomic_store(&c->overlap, true);
  if (!c->one_thread) return;
  if (!c->have_thread) {
    c->thread = pthread_self();
    c->have_thread = true;
  } else if (!pthread_equal(c->thread, pthread_self())) {
    c->wrong_thread = true;
  }
}

static void on_number(fc_store_batch_t *b) {
  tb_t *t = b->ud;
  ctx_t *c = t->ctx;
  pthread_mutex_lock(&c->lock);
  enter(c);
  uint64_t *next_n = next_n_of(c, b->channel);
  int64_t now = c->time_ms ? c->time_ms : fc_now_ms();
  for (size_t i = 0; i < b->n; i++) {
    b->events[i].seq = ++c->seq;
    b->events[i].n = (*next_n)++;
    b->events[i].time_ms = now;
  }
  t->numbered = true;
  c->numbered[c->nnumbered++] = t->id;
  atomic_fetch_sub(&c->inside, 1);
  pthread_mutex_unlock(&c->lock);
}

/* A failed batch gives its ids and ordinals back, as the publish module does. */
static void on_done(fc_store_batch_t *b) {
  tb_t *t = b->ud;
  ctx_t *c = t->ctx;
  pthread_mutex_lock(&c->lock);
  enter(c);
  if (b->status != 0 && t->numbered && b->n) {
    uint64_t *next_n = next_n_of(c, b->channel);
    if (b->events[0].seq - 1 < c->seq) c->seq = b->events[0].seq - 1;
    if (b->events[0].n < *next_n) *next_n = b->events[0].n;
  }
  t->ended = true;
  c->ended[c->nended++] = t->id;
  if (t == c->gate) {
    c->gate_reached = true;
    pthread_cond_broadcast(&c->cond);
    while (!c->gate_open) pthread_cond_wait(&c->cond, &c->lock);
  }
  atomic_fetch_sub(&c->inside, 1);
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

static void on_aged(void *ud, int64_t now_ms) {
  ctx_t *c = ud;
  pthread_mutex_lock(&c->lock);
  c->aged_calls++;
  c->aged_last = now_ms;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

/* A batch of `n` events for `channel` (each event's data says where it comes
 * from), or of `n` events of `len` bytes each when `len` is not 0. */
static tb_t *batch_new(ctx_t *c, const char *channel, unsigned keep, size_t n, size_t len) {
  tb_t *t = calloc(1, sizeof *t);
  t->ctx = c;
  t->b = (fc_store_batch_t){.channel = channel, .keep = keep, .n = n, .number = on_number, .done = on_done, .ud = t};
  t->b.events = calloc(n ? n : 1, sizeof *t->b.events);
  pthread_mutex_lock(&c->lock);
  assert_true(c->nall < MAX_BATCHES);
  t->id = (int)c->nall;
  c->all[c->nall++] = t;
  pthread_mutex_unlock(&c->lock);
  t->text = len ? malloc(len) : calloc(n ? n : 1, 48);
  if (len) memset(t->text, 'x', len);
  for (size_t i = 0; i < n; i++) {
    fc_store_event_t *ev = &t->b.events[i];
    char *d = t->text + (len ? 0 : i * 48);
    if (!len) snprintf(d, 48, "%s/%d/%zu", channel, t->id, i);
    ev->data = (fc_str_t){d, len ? len : strlen(d)};
    ev->name = i % 2 ? (fc_str_t){"tick", 4} : (fc_str_t){"", 0};
    ev->from = (fc_str_t){"conn-7", 6};
    ev->is_json = i % 3 == 1;
  }
  return t;
}

static tb_t *purge_new(ctx_t *c, const char *channel) {
  tb_t *t = batch_new(c, channel, 0, 0, 0);
  t->b.purge = true;
  return t;
}

/* Waits (at most 10 s) until `n` batches have ended. */
static void wait_ended(ctx_t *c, size_t n) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&c->lock);
  while (c->nended < n && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0) {}
  size_t got = c->nended;
  pthread_mutex_unlock(&c->lock);
  assert_int_equal(got, n);
}

static void wait_gate(ctx_t *c) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&c->lock);
  while (!c->gate_reached && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0) {}
  bool reached = c->gate_reached;
  pthread_mutex_unlock(&c->lock);
  assert_true(reached);
}

static void open_gate(ctx_t *c) {
  pthread_mutex_lock(&c->lock);
  c->gate_open = true;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

/* Appends and waits until it ended; returns its status. */
static int commit(fixture_t *f, tb_t *t) {
  size_t before;
  pthread_mutex_lock(&f->ctx.lock);
  before = f->ctx.nended;
  pthread_mutex_unlock(&f->ctx.lock);
  fc_store_append(f->store, &t->b);
  wait_ended(&f->ctx, before + 1);
  assert_true(t->ended);
  return t->b.status;
}

static void sleep_ms(int ms) {
  struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&d, NULL);
}

/* ---- opening and reading back ------------------------------------------ */

static fc_store_t *open_store(fixture_t *f, const fc_store_sqlite_opts_t *extra) {
  fc_store_sqlite_opts_t o = extra ? *extra : (fc_store_sqlite_opts_t){0};
  o.dir = f->dir;
  char err[512] = "";
  fc_store_t *s = fc_store_sqlite_open(&o, err, sizeof err);
  if (!s) fprintf(stderr, "open: %s\n", err);
  assert_non_null(s);
  f->ctx.one_thread = true;
  f->ctx.have_thread = false; /* a new writer thread */
  return s;
}

static void reopen(fixture_t *f, const fc_store_sqlite_opts_t *extra) {
  fc_store_close(f->store);
  f->store = NULL;
  f->store = open_store(f, extra);
}

/* Continues from what the store says, as a restarted server does: the id
 * counter from last_seq, each known channel's ordinals from its counters. */
static void resume(fixture_t *f) {
  ctx_t *c = &f->ctx;
  c->seq = fc_store_last_seq(f->store);
  for (size_t i = 0; i < c->nchans; i++) {
    fc_store_channel_t out;
    int rc = fc_store_load(f->store, c->chans[i].name, 0, &out, NULL, NULL);
    assert_true(rc >= 0);
    c->chans[i].next_n = rc ? out.next_n : 1;
  }
}

typedef struct {
  size_t n;
  struct {
    uint64_t seq, n;
    int64_t time_ms;
    bool is_json;
    char name[16], from[16], data[48];
    size_t data_len;
  } ev[MAX_LOADED];
} loaded_t;

static void collect(void *ud, const fc_store_event_t *ev) {
  loaded_t *l = ud;
  assert_true(l->n < MAX_LOADED);
  l->ev[l->n].seq = ev->seq;
  l->ev[l->n].n = ev->n;
  l->ev[l->n].time_ms = ev->time_ms;
  l->ev[l->n].is_json = ev->is_json;
  snprintf(l->ev[l->n].name, sizeof l->ev[0].name, "%.*s", (int)ev->name.len, ev->name.base);
  snprintf(l->ev[l->n].from, sizeof l->ev[0].from, "%.*s", (int)ev->from.len, ev->from.base);
  snprintf(l->ev[l->n].data, sizeof l->ev[0].data, "%.*s", (int)ev->data.len, ev->data.base);
  l->ev[l->n].data_len = ev->data.len;
  l->n++;
}

/* Loads a channel; returns fc_store_load's result. `l` is reset. */
static int load(fixture_t *f, const char *channel, unsigned limit, fc_store_channel_t *out, loaded_t *l) {
  memset(l, 0, sizeof *l);
  return fc_store_load(f->store, channel, limit, out, collect, l);
}

/* The events the test committed to `channel`, in id order. */
static size_t committed(ctx_t *c, const char *channel, const fc_store_event_t **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < c->nall; i++) {
    tb_t *t = c->all[i];
    if (!t->ended || t->b.status != 0 || t->b.purge || strcmp(t->b.channel, channel)) continue;
    for (size_t k = 0; k < t->b.n; k++) {
      assert_true(n < max);
      out[n++] = &t->b.events[k];
    }
  }
  for (size_t i = 1; i < n; i++) /* insertion sort by id */
    for (size_t j = i; j > 0 && out[j - 1]->seq > out[j]->seq; j--) {
      const fc_store_event_t *x = out[j];
      out[j] = out[j - 1];
      out[j - 1] = x;
    }
  return n;
}

/* Checks that the store gives back the newest `limit` of what the test
 * committed to `channel` (nothing trimmed or purged), oldest first, field by
 * field, and the channel's counters. */
static void expect_channel(fixture_t *f, const char *channel, unsigned limit) {
  const fc_store_event_t *want[MAX_LOADED];
  size_t n = committed(&f->ctx, channel, want, MAX_LOADED);
  assert_true(n > 0);
  fc_store_channel_t out;
  loaded_t *l = malloc(sizeof *l);
  assert_int_equal(load(f, channel, limit, &out, l), 1);
  assert_int_equal(out.first_seq, want[0]->seq);
  assert_int_equal(out.last_seq, want[n - 1]->seq);
  assert_int_equal(out.next_n, want[n - 1]->n + 1);
  assert_int_equal(out.stored, n);
  size_t skip = n > limit ? n - limit : 0;
  assert_int_equal(l->n, n - skip);
  for (size_t i = 0; i < l->n; i++) {
    const fc_store_event_t *w = want[skip + i];
    assert_int_equal(l->ev[i].seq, w->seq);
    assert_int_equal(l->ev[i].n, w->n);
    assert_int_equal(l->ev[i].time_ms, w->time_ms);
    assert_int_equal(l->ev[i].is_json, w->is_json);
    assert_int_equal(l->ev[i].data_len, w->data.len);
    assert_memory_equal(l->ev[i].data, w->data.base, w->data.len < 47 ? w->data.len : 47);
    assert_int_equal(strlen(l->ev[i].name), w->name.len);
    assert_string_equal(l->ev[i].from, "conn-7");
  }
  free(l);
}

/* ---- commit ----------------------------------------------------------- */

typedef struct {
  fixture_t *f;
  int index, batches, events;
  char channel[16];
  tb_t *mine[64];
  pthread_t self;
  bool late; /* a batch had not ended when the memory store's append returned */
} appender_t;

static void *append_some(void *arg) {
  appender_t *a = arg;
  a->self = pthread_self();
  for (int k = 0; k < a->batches; k++) {
    a->mine[k] = batch_new(&a->f->ctx, a->channel, 1000, (size_t)a->events, 0);
    fc_store_append(a->f->store, &a->mine[k]->b);
    if (!a->f->ctx.one_thread && !a->mine[k]->ended) a->late = true; /* the memory store ends it before returning */
  }
  return NULL;
}

/* Runs `nthreads` appenders, each to its own channel tN, and joins them. */
static void run_appenders(fixture_t *f, appender_t *a, int nthreads, int batches, int events) {
  pthread_t th[8];
  for (int i = 0; i < nthreads; i++) {
    a[i] = (appender_t){.f = f, .index = i, .batches = batches, .events = events};
    snprintf(a[i].channel, sizeof a[i].channel, "t%d", i);
    assert_int_equal(pthread_create(&th[i], NULL, append_some, &a[i]), 0);
  }
  for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
}

/* The callbacks ran one at a time, on one thread, numbering and ending
 * batches in one order; each appender's batches kept its order. */
static void expect_commit_order(fixture_t *f, appender_t *a, int nthreads) {
  ctx_t *c = &f->ctx;
  assert_false(atomic_load(&c->overlap));
  assert_false(c->wrong_thread);
  size_t k = 0; /* batches ended in the order they were numbered (purges are not numbered) */
  for (size_t i = 0; i < c->nended; i++)
    if (c->all[c->ended[i]]->numbered) assert_int_equal(c->ended[i], c->numbered[k++]);
  assert_int_equal(k, c->nnumbered);
  for (int i = 0; i < nthreads; i++) {
    assert_false(a[i].late);
    if (c->one_thread) assert_false(pthread_equal(c->thread, a[i].self));
    for (int k = 0; k < a[i].batches; k++) {
      assert_int_equal(a[i].mine[k]->b.status, 0);
      if (k) assert_true(a[i].mine[k]->b.events[0].n > a[i].mine[k - 1]->b.events[0].n);
      if (k) assert_true(a[i].mine[k]->b.events[0].seq > a[i].mine[k - 1]->b.events[0].seq);
    }
  }
  if (c->one_thread) assert_false(pthread_equal(c->thread, pthread_self()));
}

/* Batches queued while a commit runs go into the next group, as one
 * transaction; what the number callback gave is what a reopened store loads. */
static void commit_groups(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  f->store = open_store(f, NULL);
  assert_true(fc_store_durable(f->store));
  assert_int_equal(fc_store_last_seq(f->store), 0);
  c->gate = batch_new(c, "gate", 100, 1, 0);
  fc_store_append(f->store, &c->gate->b);
  wait_gate(c);

  appender_t a[4];
  run_appenders(f, a, 4, 5, 2); /* all queued behind the gate */
  fc_store_stats_t st;
  assert_true(fc_store_stats(f->store, &st));
  assert_int_equal(st.groups, 1);
  assert_int_equal(c->nnumbered, 1);
  open_gate(c);
  wait_ended(c, 21);
  assert_true(fc_store_stats(f->store, &st));
  assert_int_equal(st.groups, 2); /* the gate's, then the 20 queued batches together */
  assert_int_equal(st.events, 41);
  assert_int_equal(st.failures, 0);
  expect_commit_order(f, a, 4);
  assert_int_equal(fc_store_last_seq(f->store), 41);

  reopen(f, NULL);
  assert_int_equal(fc_store_last_seq(f->store), 41);
  for (int i = 0; i < 4; i++) {
    expect_channel(f, a[i].channel, 1000);
    expect_channel(f, a[i].channel, 3); /* the newest 3, oldest first */
    expect_channel(f, a[i].channel, 1);
  }
  expect_channel(f, "gate", 10);
  fc_store_channel_t out = {.first_seq = 9, .stored = 9};
  loaded_t *l = malloc(sizeof *l);
  assert_int_equal(load(f, "never", 10, &out, l), 0);
  assert_int_equal(out.first_seq + out.last_seq + out.next_n + out.stored, 0);
  assert_int_equal(l->n, 0);
  free(l);
}

/* Publishers racing: every batch commits, in an order both callbacks agree
 * on; a close commits what is still queued; ids continue after a reopen. */
static void commit_concurrent(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  f->store = open_store(f, &(fc_store_sqlite_opts_t){.commit_delay_us = 200});
  appender_t a[4];
  run_appenders(f, a, 4, 25, 1);
  wait_ended(c, 100);
  expect_commit_order(f, a, 4);
  fc_store_stats_t st;
  assert_true(fc_store_stats(f->store, &st));
  assert_int_equal(st.events, 100);
  assert_true(st.groups >= 1 && st.groups <= 100);
  assert_int_equal(fc_store_last_seq(f->store), 100);

  for (int k = 0; k < 10; k++) fc_store_append(f->store, &batch_new(c, "late", 100, 3, 0)->b);
  fc_store_close(f->store); /* commits the queue first */
  f->store = NULL;
  assert_int_equal(c->nended, 110);
  for (size_t i = 100; i < 110; i++) assert_int_equal(c->all[i]->b.status, 0);

  f->store = open_store(f, NULL);
  assert_int_equal(fc_store_last_seq(f->store), 130);
  expect_channel(f, "late", 100);
  for (int i = 0; i < 4; i++) expect_channel(f, a[i].channel, 100);
  resume(f);
  assert_int_equal(commit(f, batch_new(c, "late", 100, 1, 0)), 0);
  assert_int_equal(c->all[c->nall - 1]->b.events[0].seq, 131);
  assert_int_equal(c->all[c->nall - 1]->b.events[0].n, 31);
  expect_channel(f, "late", 100);
}

/* ---- rollback ---------------------------------------------------------- */

typedef struct {
  char names[16][32];
  fc_store_channel_t c[16];
  size_t n;
} listed_t;

static void list_one(void *ud, const char *name, const fc_store_channel_t *c) {
  listed_t *l = ud;
  assert_true(l->n < 16);
  snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
  l->c[l->n++] = *c;
}

/* Lists all channels as one comma-separated string. */
static const char *list_all(fixture_t *f, char *buf, size_t len) {
  listed_t l = {0};
  int n = fc_store_channels(f->store, "", 100, list_one, &l);
  assert_int_equal(n, (int)l.n);
  buf[0] = '\0';
  for (size_t i = 0; i < l.n; i++) {
    if (i) strncat(buf, ",", len - strlen(buf) - 1);
    strncat(buf, l.names[i], len - strlen(buf) - 1);
  }
  return buf;
}

/* A group that hits the size cap stores nothing: every batch of it ends with
 * -ENOSPC, a channel it created is gone, and the ids it had are given again.
 * The next batches (to the same channel, to a channel made since, and to the
 * one the failed group created) commit and survive a reopen. */
static void rollback_full(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  fc_store_sqlite_opts_t capped = {.max_bytes = 256 * 1024};
  f->store = open_store(f, &capped);
  assert_int_equal(commit(f, batch_new(c, "a", 100, 2, 0)), 0);
  c->gate = batch_new(c, "gate", 100, 1, 0);
  fc_store_append(f->store, &c->gate->b);
  wait_gate(c);
  tb_t *a1 = batch_new(c, "a", 100, 1, 0);
  tb_t *fresh = batch_new(c, "fresh", 100, 2, 0);
  tb_t *big = batch_new(c, "a", 100, 1, 1024 * 1024); /* past the cap */
  tb_t *a2 = batch_new(c, "a", 100, 1, 0);
  tb_t *group[] = {a1, fresh, big, a2};
  for (size_t i = 0; i < 4; i++) fc_store_append(f->store, &group[i]->b);
  open_gate(c);
  wait_ended(c, 6);

  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(group[i]->b.status, -ENOSPC);
    assert_int_equal(c->ended[2 + i], group[i]->id); /* ended in commit order */
  }
  assert_true(a1->numbered);
  assert_int_equal(a1->b.events[0].seq, 4);
  assert_int_equal(c->seq, 3); /* given back */
  fc_store_stats_t st;
  assert_true(fc_store_stats(f->store, &st));
  assert_int_equal(st.failures, 4);
  assert_int_equal(st.groups, 2);
  assert_int_equal(st.events, 3);
  assert_int_equal(fc_store_last_seq(f->store), 3);

  fc_store_channel_t out;
  loaded_t *l = malloc(sizeof *l);
  assert_int_equal(load(f, "fresh", 10, &out, l), 0);
  expect_channel(f, "a", 10);
  char buf[256];
  assert_string_equal(list_all(f, buf, sizeof buf), "a,gate");

  /* "other" takes the row id "fresh" had in the failed group. */
  tb_t *other = batch_new(c, "other", 100, 1, 0);
  assert_int_equal(commit(f, other), 0);
  assert_int_equal(other->b.events[0].seq, 4); /* the id the failed group gave back */
  assert_int_equal(commit(f, batch_new(c, "fresh", 100, 2, 0)), 0);
  assert_int_equal(commit(f, batch_new(c, "a", 100, 1, 0)), 0);
  assert_int_equal(fc_store_last_seq(f->store), 7);
  expect_channel(f, "fresh", 10);
  expect_channel(f, "other", 10);

  reopen(f, &capped);
  assert_int_equal(fc_store_last_seq(f->store), 7);
  expect_channel(f, "a", 10);
  expect_channel(f, "fresh", 10);
  expect_channel(f, "other", 10);
  assert_int_equal(load(f, "a", 10, &out, l), 1);
  assert_int_equal(out.next_n, 4); /* 1, 2, then the one after the failure */
  assert_string_equal(list_all(f, buf, sizeof buf), "a,fresh,gate,other");
  free(l);
}

/* A full database refuses publishes until there is room: a purge makes it,
 * and publishing works again (docs/storage.md, Faults). */
static void full_then_purge(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  f->store = open_store(f, &(fc_store_sqlite_opts_t){.max_bytes = 256 * 1024});
  int status = 0, commits = 0;
  while (status == 0 && commits < 100) {
    status = commit(f, batch_new(c, "fill", 1000, 1, 16 * 1024));
    commits++;
  }
  assert_int_equal(status, -ENOSPC);
  assert_true(commits > 2);
  assert_int_equal(commit(f, batch_new(c, "other", 100, 1, 16 * 1024)), -ENOSPC);
  assert_int_equal(commit(f, purge_new(c, "fill")), 0);
  assert_int_equal(commit(f, batch_new(c, "other", 100, 1, 16 * 1024)), 0);
  tb_t *t = batch_new(c, "fill", 1000, 1, 0);
  assert_int_equal(commit(f, t), 0);
  assert_int_equal(t->b.events[0].n, (uint64_t)commits); /* the failed one's ordinal, given back */
  reopen(f, &(fc_store_sqlite_opts_t){.max_bytes = 256 * 1024});
  expect_channel(f, "other", 10);
  fc_store_channel_t out;
  loaded_t *l = malloc(sizeof *l);
  assert_int_equal(load(f, "fill", 10, &out, l), 1);
  assert_int_equal(out.stored, 1);
  assert_int_equal(out.next_n, (uint64_t)commits + 1);
  assert_int_equal(l->ev[0].seq, t->b.events[0].seq);
  free(l);
}

/* ---- trim and purge ---------------------------------------------------- */

/* Waits (at most 10 s) until `channel` holds fewer than `than` events. */
static uint64_t wait_stored_below(fixture_t *f, const char *channel, uint64_t than) {
  fc_store_channel_t out = {0};
  loaded_t *l = malloc(sizeof *l);
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(load(f, channel, 0, &out, l), 1);
    if (out.stored < than) break;
    sleep_ms(10);
  }
  free(l);
  return out.stored;
}

/* Retention by count: old events go, at least twice `keep` stay (the newest,
 * contiguous), and the channel's counters do not move. */
static void trim_by_count(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  f->store = open_store(f, NULL);
  assert_int_equal(commit(f, batch_new(c, "small", 100, 200, 0)), 0); /* exactly twice keep */
  assert_int_equal(commit(f, batch_new(c, "big", 100, 300, 0)), 0);
  uint64_t stored = wait_stored_below(f, "big", 300);
  assert_true(stored >= 200);
  assert_true(stored < 300);
  fc_store_stats_t st;
  assert_true(fc_store_stats(f->store, &st));
  assert_int_equal(st.trimmed, 300 - stored);

  fc_store_channel_t out;
  loaded_t *l = malloc(sizeof *l);
  for (int pass = 0; pass < 2; pass++) {
    assert_int_equal(load(f, "big", 1000, &out, l), 1);
    assert_int_equal(out.stored, stored);
    assert_int_equal(out.first_seq, 201); /* the first ever, trimmed or not */
    assert_int_equal(out.last_seq, 500);
    assert_int_equal(out.next_n, 301);
    assert_int_equal(l->n, stored);
    for (size_t i = 0; i < l->n; i++) {
      assert_int_equal(l->ev[i].n, 301 - stored + i);
      assert_int_equal(l->ev[i].seq, 501 - stored + i);
    }
    assert_int_equal(load(f, "small", 1000, &out, l), 1);
    assert_int_equal(out.stored, 200);
    reopen(f, NULL); /* a close runs what trims are due */
  }
  expect_channel(f, "small", 1000);
  free(l);
}

/* Age rules: events past max_age in matching channels are deleted, the
 * `aged` callback runs after the pass, and the channel's counters stay (its
 * ordinals continue after a reopen). */
static void trim_by_age(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  static const fc_store_age_rule_t rules[] = {{"old*", 60}}; /* the store borrows them until closed */
  fc_store_sqlite_opts_t o = {.ages = rules, .nages = 1, .aged = on_aged, .aged_ud = c};
  f->store = open_store(f, &o);
  c->time_ms = fc_now_ms() - 3600 * 1000;
  assert_int_equal(commit(f, batch_new(c, "old-a", 100, 3, 0)), 0);
  assert_int_equal(commit(f, batch_new(c, "keep-b", 100, 3, 0)), 0);
  c->time_ms = 0;
  assert_int_equal(commit(f, batch_new(c, "old-c", 100, 2, 0)), 0);

  int64_t t0 = fc_now_ms();
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&c->lock);
  while (c->aged_last < t0 && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0) {}
  int64_t last = c->aged_last;
  pthread_mutex_unlock(&c->lock);
  assert_true(last >= t0); /* a pass that began after the commits */

  fc_store_channel_t out;
  loaded_t *l = malloc(sizeof *l);
  assert_int_equal(load(f, "old-a", 10, &out, l), 1);
  assert_int_equal(out.stored, 0);
  assert_int_equal(l->n, 0);
  assert_int_equal(out.first_seq, 1);
  assert_int_equal(out.last_seq, 3);
  assert_int_equal(out.next_n, 4);
  expect_channel(f, "keep-b", 10); /* no rule for it */
  expect_channel(f, "old-c", 10);  /* young enough */
  fc_store_stats_t st;
  assert_true(fc_store_stats(f->store, &st));
  assert_int_equal(st.trimmed, 3);

  reopen(f, &o);
  assert_int_equal(fc_store_last_seq(f->store), 8);
  resume(f);
  assert_int_equal(load(f, "old-a", 10, &out, l), 1);
  assert_int_equal(out.next_n, 4);
  tb_t *t = batch_new(c, "old-a", 100, 1, 0);
  assert_int_equal(commit(f, t), 0);
  assert_int_equal(t->b.events[0].n, 4);
  assert_int_equal(t->b.events[0].seq, 9);
  reopen(f, &o);
  assert_int_equal(load(f, "old-a", 10, &out, l), 1);
  assert_int_equal(out.stored, 1);
  assert_int_equal(out.next_n, 5);
  assert_int_equal(l->ev[0].seq, 9);
  free(l);
}

/* A purge removes a channel's events only: its ids and ordinals continue,
 * before and after a reopen, and other channels keep theirs. */
static void purge(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  f->store = open_store(f, NULL);
  assert_int_equal(commit(f, batch_new(c, "p", 100, 3, 0)), 0);
  assert_int_equal(commit(f, batch_new(c, "p", 100, 3, 0)), 0);
  assert_int_equal(commit(f, batch_new(c, "q", 100, 2, 0)), 0);
  tb_t *pg = purge_new(c, "p");
  assert_int_equal(commit(f, pg), 0);
  assert_false(pg->numbered);
  assert_int_equal(fc_store_last_seq(f->store), 8);

  fc_store_channel_t out;
  loaded_t *l = malloc(sizeof *l);
  for (int pass = 0; pass < 2; pass++) {
    assert_int_equal(load(f, "p", 10, &out, l), 1);
    assert_int_equal(out.stored, 0);
    assert_int_equal(l->n, 0);
    assert_int_equal(out.first_seq, 1);
    assert_int_equal(out.last_seq, 6);
    assert_int_equal(out.next_n, 7);
    expect_channel(f, "q", 10);
    reopen(f, NULL);
    assert_int_equal(fc_store_last_seq(f->store), 8);
  }
  resume(f);
  tb_t *t = batch_new(c, "p", 100, 2, 0);
  assert_int_equal(commit(f, t), 0);
  assert_int_equal(t->b.events[0].n, 7);
  assert_int_equal(t->b.events[0].seq, 9);
  assert_int_equal(commit(f, purge_new(c, "p")), 0);
  reopen(f, NULL);
  assert_int_equal(load(f, "p", 10, &out, l), 1);
  assert_int_equal(out.stored, 0);
  assert_int_equal(out.last_seq, 10);
  assert_int_equal(out.next_n, 9);
  assert_int_equal(fc_store_last_seq(f->store), 10);
  free(l);
}

/* Channels page by name (bytewise), after a name, at most `limit` a page,
 * each with the counters a load gives. */
static void channels_paging(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  f->store = open_store(f, NULL);
  const char *names[] = {"c", "a", "e", "b", "d", "B"};
  for (size_t i = 0; i < FC_ARRAY_LEN(names); i++)
    assert_int_equal(commit(f, batch_new(c, names[i], 100, i + 1, 0)), 0);

  const char *pages[][2] = {{"B", "a"}, {"b", "c"}, {"d", "e"}};
  const char *after = "";
  for (size_t p = 0; p < 3; p++) {
    listed_t l = {0};
    assert_int_equal(fc_store_channels(f->store, after, 2, list_one, &l), 2);
    assert_int_equal(l.n, 2);
    for (size_t i = 0; i < 2; i++) {
      assert_string_equal(l.names[i], pages[p][i]);
      fc_store_channel_t out;
      loaded_t *ld = malloc(sizeof *ld);
      assert_int_equal(load(f, l.names[i], 0, &out, ld), 1);
      free(ld);
      assert_memory_equal(&l.c[i], &out, sizeof out);
      assert_true(out.stored >= 1);
    }
    after = pages[p][1];
  }
  listed_t l = {0};
  assert_int_equal(fc_store_channels(f->store, "e", 2, list_one, &l), 0);
  assert_int_equal(fc_store_channels(f->store, "b0", 10, list_one, &l), 3); /* between names */
  assert_string_equal(l.names[0], "c");
  assert_int_equal(l.c[0].stored, 1);
  assert_int_equal(l.c[0].next_n, 2);
  memset(&l, 0, sizeof l);
  assert_int_equal(fc_store_channels(f->store, "", 0, list_one, &l), 0);
  assert_int_equal(l.n, 0);
}

/* ---- the memory store ---------------------------------------------------- */

/* The same contract where it applies: ids from the number callback, `done`
 * before fc_store_append returns, in one order, never concurrently; it keeps
 * nothing to load or list. */
static void memory_store(void **state) {
  fixture_t *f = *state;
  ctx_t *c = &f->ctx;
  f->store = fc_store_memory_new();
  assert_non_null(f->store);
  assert_false(fc_store_durable(f->store));
  assert_int_equal(fc_store_last_seq(f->store), 0);

  c->one_thread = c->have_thread = true; /* on the caller's thread */
  c->thread = pthread_self();
  tb_t *t = batch_new(c, "m", 100, 3, 0);
  fc_store_append(f->store, &t->b);
  assert_true(t->ended);
  assert_int_equal(t->b.status, 0);
  assert_int_equal(t->b.events[2].seq, 3);
  assert_int_equal(t->b.events[2].n, 3);
  assert_int_equal(fc_store_last_seq(f->store), 3);
  tb_t *pg = purge_new(c, "m");
  fc_store_append(f->store, &pg->b);
  assert_true(pg->ended);
  assert_false(pg->numbered);
  assert_int_equal(pg->b.status, 0);
  assert_int_equal(fc_store_last_seq(f->store), 3);
  assert_false(c->wrong_thread);
  c->one_thread = false;

  appender_t a[4];
  run_appenders(f, a, 4, 25, 2);
  assert_int_equal(c->nended, 102);
  expect_commit_order(f, a, 4);
  assert_int_equal(fc_store_last_seq(f->store), 203);

  fc_store_channel_t out;
  memset(&out, 0xff, sizeof out);
  loaded_t *l = malloc(sizeof *l);
  assert_int_equal(load(f, "m", 10, &out, l), 0);
  assert_int_equal(out.first_seq + out.last_seq + out.next_n + out.stored, 0);
  assert_int_equal(l->n, 0);
  free(l);
  listed_t ls = {0};
  assert_int_equal(fc_store_channels(f->store, "", 10, list_one, &ls), 0);
  assert_int_equal(ls.n, 0);
  fc_store_stats_t st;
  memset(&st, 0xff, sizeof st);
  assert_false(fc_store_stats(f->store, &st));
  assert_int_equal(st.groups + st.events + st.failures + st.trimmed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(commit_groups, setup, teardown),
      cmocka_unit_test_setup_teardown(commit_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(rollback_full, setup, teardown),
      cmocka_unit_test_setup_teardown(full_then_purge, setup, teardown),
      cmocka_unit_test_setup_teardown(trim_by_count, setup, teardown),
      cmocka_unit_test_setup_teardown(trim_by_age, setup, teardown),
      cmocka_unit_test_setup_teardown(purge, setup, teardown),
      cmocka_unit_test_setup_teardown(channels_paging, setup, teardown),
      cmocka_unit_test_setup_teardown(memory_store, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
