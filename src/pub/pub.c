/* The publisher: the id counter, the hand-off to storage, the fan-out to the
 * hub after the commit, and the answer on the publisher's loop. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pub/internal.h"

static void on_answer(fc_loop_t *l, fc_msg_t *m, void *ud);

fc_pub_t *fc_pub_new(const fc_pub_opts_t *opts) {
  fc_pub_t *pub = fc_xcalloc(1, sizeof *pub);
  pub->opts = *opts;
  pub->rx_answer = opts->net ? fc_net_receiver(opts->net, on_answer, pub) : -1;
  if (opts->net && pub->rx_answer < 0) {
    free(pub);
    return NULL;
  }
  if (!pub->opts.store) {
    pub->opts.store = fc_store_memory_new();
    pub->own_store = true;
  }
  if (pub->opts.threads == 0) pub->opts.threads = 1;
  pub->loops = fc_xcalloc_lines(pub->opts.threads, sizeof *pub->loops);
  pub->seq = fc_store_last_seq(pub->opts.store);
  fc_hub_restore_seq(pub->opts.hub, pub->seq);
  atomic_init(&pub->published, 0);
  if (fc_store_numbers(pub->opts.store)) fc_store_listen(pub->opts.store, fc__pub_on_bus, pub);
  return pub;
}

void fc_pub_free(fc_pub_t *pub) {
  if (!pub) return;
  if (pub->own_store) fc_store_close(pub->opts.store);
  for (size_t i = 0; i < PENDING_BUCKETS; i++) {
    for (fc__pub_pending_t *p = pub->pending[i], *next; p; p = next) {
      next = p->next;
      free(p);
    }
  }
  free(pub->loops);
  free(pub);
}

uint64_t fc_pub_published(fc_pub_t *pub) { return atomic_load(&pub->published); }

const uint32_t fc_pub_latency_le_us[FC_PUB_LATENCY_BUCKETS] = {100,   250,   500,    1000,   2500,   5000,    10000,
                                                               25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

static uint64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void fc_pub_latency(fc_pub_t *pub, fc_pub_latency_t *out) {
  memset(out, 0, sizeof *out);
  for (unsigned i = 0; i < pub->opts.threads; i++) {
    fc__pub_loop_t *l = &pub->loops[i];
    for (size_t b = 0; b <= FC_PUB_LATENCY_BUCKETS; b++) {
      uint64_t n = atomic_load_explicit(&l->lat_buckets[b], memory_order_relaxed);
      out->buckets[b] += n;
      out->count += n;
    }
    out->sum_us += atomic_load_explicit(&l->lat_sum_us, memory_order_relaxed);
  }
}

/* Counts an answered operation's latency on its loop (the loop's own
 * counters: a relaxed add, no contention). */
static void count_latency(fc_pub_op_t *op) {
  if (!op->t0_us || op->batch.status != 0 || op->batch.purge || op->batch.n == 0) return;
  uint64_t us = mono_us() - op->t0_us;
  size_t b = 0;
  while (b < FC_PUB_LATENCY_BUCKETS && us > fc_pub_latency_le_us[b]) b++;
  fc__pub_loop_t *l = &op->pub->loops[op->loop];
  atomic_fetch_add_explicit(&l->lat_buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&l->lat_sum_us, us, memory_order_relaxed);
}

void fc_pub_failure(int status, const char **code, const char **message) {
  switch (status) {
    case -ENOSPC:
      *code = "storage_full";
      *message = "storage is full (disk or --max-db-size): nothing was stored; retry later";
      return;
    case -ENOTCONN:
      *code = "storage_unavailable";
      *message = "storage (Redis) is unreachable: the event was not acknowledged; retry later";
      return;
    case -ETIMEDOUT:
      *code = "replicas_unavailable";
      *message = "Redis stored the event, but fewer replicas than --redis-wait-replicas confirmed it within 1 s";
      return;
    default: *code = "storage_error"; *message = "storage failed to commit: nothing was stored; retry later";
  }
}

/* ---- operations ----------------------------------------------------------- */

fc_pub_op_t *fc_pub_op_new(fc_pub_t *pub, unsigned loop, fc_pub_answer_cb answer, void *ud) {
  fc_pub_op_t *op = fc_xcalloc(1, sizeof *op);
  op->pub = pub;
  op->loop = loop;
  op->answer = answer;
  op->ud = ud;
  fc_buf_init(&op->text);
  return op;
}

void fc_pub_op_free(fc_pub_op_t *op) {
  if (!op) return;
  if (op->channel) fc_hub_drop(op->pub->opts.hub, op->channel);
  fc_buf_dispose(&op->text);
  if (op->tev != &op->tev1) free(op->tev);
  if (op->batch.events != &op->ev1) free(op->batch.events);
  free(op);
}

/* Frees an operation that was answered: its channel stays for a sweep. */
static void op_end(fc_pub_op_t *op) {
  fc_channel_unref(op->channel);
  op->channel = NULL;
  fc_pub_op_free(op);
}

static size_t put_text(fc_pub_op_t *op, fc_str_t s) {
  size_t off = op->text.len;
  if (s.len) fc_buf_append(&op->text, s.base, s.len);
  fc_buf_append(&op->text, "", 1); /* each text is NUL-terminated */
  return off;
}

void fc__pub_add(fc_pub_op_t *op, fc_str_t name, fc_str_t data, fc_str_t from, bool is_json) {
  if (op->captev == 0) { /* most operations hold one event: no allocation for it */
    op->tev = &op->tev1;
    op->captev = 1;
  } else if (op->ntev == op->captev) {
    op->captev *= 2;
    fc__pub_text_ev_t *t = fc_xmalloc(op->captev * sizeof *t);
    memcpy(t, op->tev, op->ntev * sizeof *t);
    if (op->tev != &op->tev1) free(op->tev);
    op->tev = t;
  }
  fc_buf_reserve(&op->text, name.len + data.len + from.len + 3); /* one allocation for the three */
  fc__pub_text_ev_t *t = &op->tev[op->ntev++];
  t->name = put_text(op, name);
  t->name_len = name.len;
  t->data = put_text(op, data);
  t->data_len = data.len;
  t->from = put_text(op, from);
  t->from_len = from.len;
  t->is_json = is_json;
}

void fc_pub_add(fc_pub_op_t *op, fc_str_t name, fc_str_t data, bool is_json) {
  fc__pub_add(op, name, data, (fc_str_t){"", 0}, is_json);
}

int fc_pub_open(fc_pub_op_t *op, const char *name, size_t len, unsigned flags) {
  return fc_hub_open(op->pub->opts.hub, name, len, flags, &op->channel);
}

void fc_pub_set_purge(fc_pub_op_t *op) { op->batch.purge = true; }

int fc_pub_op_status(const fc_pub_op_t *op) { return op->batch.status; }
const fc_publish_result_t *fc_pub_op_result(const fc_pub_op_t *op) { return &op->result; }
fc_channel_t *fc_pub_op_channel(const fc_pub_op_t *op) { return op->channel; }
size_t fc_pub_op_count(const fc_pub_op_t *op) { return op->batch.n; }
size_t fc_pub_op_events(const fc_pub_op_t *op) { return op->ntev; }
bool fc_pub_op_is_purge(const fc_pub_op_t *op) { return op->batch.purge; }
bool fc_pub_op_is_batch(const fc_pub_op_t *op) { return op->is_batch; }

/* ---- the answer on the publisher's loop ----------------------------------- */

static void answer(fc_pub_op_t *op) {
  count_latency(op);
  if (op->answer) op->answer(op, op->ud);
  op_end(op);
}

/* Posts an ended operation to its loop's mailbox; with `inline_ok` (on the
 * loop itself) answers it at once instead when no earlier answer waits
 * there. The one place an answer crosses threads. */
static void hand_back(fc_pub_op_t *op, bool inline_ok) {
  fc_pub_t *pub = op->pub;
  fc__pub_loop_t *l = &pub->loops[op->loop];
  if (inline_ok && atomic_load(&l->posted) == 0) {
    answer(op);
    return;
  }
  assert(pub->rx_answer >= 0);
  atomic_fetch_add(&l->posted, 1);
  /* Once posted, op belongs to its loop, which may answer and free it at once. */
  op->msg.receiver = (unsigned)pub->rx_answer;
  fc_net_post(pub->opts.net, op->loop, &op->msg);
}

/* An operation that ended on another thread reached its loop: answers in
 * commit order, since the store ends them in that order. */
static void on_answer(fc_loop_t *l, fc_msg_t *m, void *ud) {
  fc_pub_t *pub = ud;
  fc_pub_op_t *op = (fc_pub_op_t *)((char *)m - offsetof(fc_pub_op_t, msg));
  answer(op);
  atomic_fetch_sub(&pub->loops[fc_loop_index(l)].posted, 1);
}

/* ---- numbering and the fan-out (the store's commit thread) --------------- */

static fc__pub_pending_t **pending_slot(fc_pub_t *pub, const fc_channel_t *ch) {
  uintptr_t h = ((uintptr_t)ch >> 4) * 0x9E3779B97F4A7C15u;
  fc__pub_pending_t **pp = &pub->pending[(h >> 20) & (PENDING_BUCKETS - 1)];
  while (*pp && (*pp)->channel != ch) pp = &(*pp)->next;
  return pp;
}

/* Gives a batch's events their ids, ordinals and time. The channel's next
 * ordinal is the hub's, or, while earlier batches of it are committing, the
 * one after theirs. */
static void number(fc_store_batch_t *b) {
  fc_pub_op_t *op = b->ud;
  fc_pub_t *pub = op->pub;
  fc__pub_pending_t **pp = pending_slot(pub, op->channel), *p = *pp;
  if (!p) {
    p = *pp = fc_xcalloc(1, sizeof *p);
    p->channel = op->channel;
    p->next_n = fc_channel_next_n(pub->opts.hub, op->channel);
  }
  int64_t now = fc_now_ms();
  for (size_t i = 0; i < b->n; i++) {
    b->events[i].seq = ++pub->seq;
    b->events[i].n = p->next_n++;
    b->events[i].time_ms = now;
  }
  p->outstanding++;
  op->numbered = true;
}

/* A numbered batch ended: a failed one gives its ids and ordinals back (the
 * store ends a failed group's batches before it numbers anything else). */
static void settle(fc_pub_op_t *op) {
  fc_pub_t *pub = op->pub;
  fc__pub_pending_t **pp = pending_slot(pub, op->channel), *p = *pp;
  if (op->batch.status != 0) {
    const fc_store_event_t *first = &op->batch.events[0];
    if (first->seq - 1 < pub->seq) pub->seq = first->seq - 1;
    if (first->n < p->next_n) p->next_n = first->n;
  }
  if (--p->outstanding == 0) {
    *pp = p->next;
    free(p);
  }
}

static void fan_out(fc_pub_op_t *op) {
  fc_store_batch_t *b = &op->batch;
  fc_event_in_t stack[16];
  fc_event_in_t *in = b->n <= FC_ARRAY_LEN(stack) ? stack : fc_xmalloc(b->n * sizeof *in);
  for (size_t i = 0; i < b->n; i++) in[i] = fc__pub_event_in(&b->events[i]);
  fc_hub_publish(op->pub->opts.hub, op->channel, in, b->n, &op->result);
  atomic_fetch_add(&op->pub->published, b->n);
  if (in != stack) free(in);
}

static void on_done(fc_store_batch_t *b) {
  fc_pub_op_t *op = b->ud;
  if (op->numbered) settle(op);
  bool numbers = fc_store_numbers(op->pub->opts.store);
  if (b->status == 0 && b->purge) {
    fc_hub_purge(op->pub->opts.hub, op->channel, numbers ? b->purge_upto : UINT64_MAX);
  } else if (b->status == 0 && numbers) { /* cluster.c */
    fc__pub_apply(op->pub, op->channel, b->events, b->n, true, &op->result);
    atomic_fetch_add(&op->pub->published, b->n);
  } else if (b->status == 0) {
    fan_out(op);
  }
  /* The submitter, still inside fc_pub_submit, answers it itself. */
  if (atomic_exchange(&op->state, OP_ENDED) == OP_SUBMITTING) return;
  hand_back(op, false);
}

void fc_pub_submit(fc_pub_op_t *op) {
  fc_store_batch_t *b = &op->batch;
  if (!op->channel) { /* it could not be opened (storage read failed) */
    b->status = -EIO;
    answer(op);
    return;
  }
  op->t0_us = mono_us();
  b->n = op->ntev;
  b->events = b->n > 1 ? fc_xcalloc(b->n, sizeof *b->events) : &op->ev1;
  for (size_t i = 0; i < b->n; i++) {
    const fc__pub_text_ev_t *t = &op->tev[i];
    b->events[i] = (fc_store_event_t){.name = {op->text.data + t->name, t->name_len},
                                      .data = {op->text.data + t->data, t->data_len},
                                      .from = {op->text.data + t->from, t->from_len},
                                      .is_json = t->is_json};
  }
  b->channel = fc_channel_name(op->channel);
  b->keep = fc_channel_retention(op->channel);
  b->max_age_s = fc_channel_max_age(op->channel);
  b->number = number;
  b->done = on_done;
  b->ud = op;
  atomic_store(&op->state, OP_SUBMITTING);
  fc_store_append(op->pub->opts.store, b);
  if (atomic_exchange(&op->state, OP_SUBMITTED) != OP_ENDED) return; /* on_done hands it back */
  /* It ended already (the memory store): answer now, unless answers that
   * ended before wait on this loop: then after them, in order. */
  hand_back(op, true);
}
