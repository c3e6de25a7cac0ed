/* The Redis store: cluster mode. One thread runs a libuv loop with two
 * hiredis connections: `cmd` commits batches (those of one channel queued
 * one after another as one script, redis_lua.h), pipelined, and ends them in
 * reply order; `sub` holds one subscription per channel this node holds and
 * hands every commit on them, from any node, to the bus callback. Either
 * connection lost: batches fail at once (-ENOTCONN) until both are back
 * (reconnects with backoff and jitter); each subscription that holds again
 * starts with a catch-up of its channel. */
#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "store/redis_lua.h"
#include "store/redis_store.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 1000
#define GROUP_MAX_EVENTS 1000 /* events one commit script writes at most */

static void connect_all(fc__redis_t *r);

/* ---- connection state ----------------------------------------------------- */

static void set_up(fc__redis_t *r) {
  bool up = r->cmd_up && r->sub_up;
  atomic_store(&r->reachable, r->cmd_up || r->sub_up);
  if (up == atomic_load(&r->up)) return;
  atomic_store(&r->up, up);
  if (r->stopping) return; /* the connections close on purpose */
  if (up) {
    fc_log(FC_LOG_INFO, "redis up", "host=%s port=%d", r->url.host, r->url.port);
    if (r->lost) atomic_fetch_add(&r->reconnects, 1);
    r->backoff_ms = BACKOFF_MIN_MS;
  } else {
    fc_log(FC_LOG_WARN, "redis down", "host=%s port=%d (publishes answer 503 until it is back)", r->url.host,
           r->url.port);
    r->lost = true;
  }
}

/* A connect still pending after CONNECT_TIMEOUT_MS (a host that does not
 * answer at all) is given up here. */
static void drop_stale(redisAsyncContext **ac, bool up, uint64_t started) {
  if (*ac && !up && fc_mono_ms() - started >= CONNECT_TIMEOUT_MS) {
    redisAsyncFree(*ac);
    *ac = NULL;
  }
}

static void on_retry(uv_timer_t *t) {
  fc__redis_t *r = t->data;
  drop_stale(&r->cmd, r->cmd_up, r->cmd_started);
  drop_stale(&r->sub, r->sub_up, r->sub_started);
  connect_all(r);
}

/* Tries again after the backoff, with jitter (half to all of it). */
static void schedule_retry(fc__redis_t *r) {
  if (r->stopping || uv_is_active((uv_handle_t *)&r->retry)) return;
  unsigned ms = r->backoff_ms / 2 + (unsigned)(rand() % (int)(r->backoff_ms / 2 + 1));
  r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
  uv_timer_start(&r->retry, on_retry, ms, 0);
}

static void on_handshake(redisAsyncContext *ac, void *reply, void *ud) {
  (void)ud;
  redisReply *rep = reply;
  if (rep && rep->type == REDIS_REPLY_ERROR) {
    fc_log(FC_LOG_ERROR, "redis refused the connection", "error=\"%s\"", rep->str);
    redisAsyncDisconnect(ac);
  }
}

/* Debian's hiredis 0.14 libuv adapter drops a poll error, which is how
 * libuv reports a connection reset (Redis killed with commands in flight):
 * hiredis never learns the connection is gone, and its commands wait
 * forever. These hooks replace the adapter's with the fix hiredis made
 * upstream (1.0): on an error, hiredis reads and writes, and finds it. */
static void on_poll(uv_poll_t *h, int status, int events) {
  redisLibuvEvents *p = h->data;
  int ev = status ? p->events : events;
  if (p->context && (ev & UV_READABLE)) redisAsyncHandleRead(p->context);
  if (p->context && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

static void poll_set(redisLibuvEvents *p, int events) {
  p->events = events;
  if (events) uv_poll_start(&p->handle, events, on_poll);
  else uv_poll_stop(&p->handle);
}

static void add_read(void *d) { poll_set(d, ((redisLibuvEvents *)d)->events | UV_READABLE); }
static void del_read(void *d) { poll_set(d, ((redisLibuvEvents *)d)->events & ~UV_READABLE); }
static void add_write(void *d) { poll_set(d, ((redisLibuvEvents *)d)->events | UV_WRITABLE); }
static void del_write(void *d) { poll_set(d, ((redisLibuvEvents *)d)->events & ~UV_WRITABLE); }

/* A new connection, authenticated and on its database (queued ahead of
 * everything else), or NULL (tried again later). */
static redisAsyncContext *open_async(fc__redis_t *r, redisConnectCallback *on_conn, redisDisconnectCallback *on_disc) {
  redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
  if (!ac) return NULL;
  if (ac->err) {
    fc_log(FC_LOG_DEBUG, "redis connect failed", "error=\"%s\"", ac->errstr);
    redisAsyncFree(ac);
    return NULL;
  }
  ac->data = r;
  if (redisLibuvAttach(ac, &r->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    return NULL;
  }
  ac->ev.addRead = add_read, ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write, ac->ev.delWrite = del_write;
  redisAsyncSetConnectCallback(ac, on_conn);
  redisAsyncSetDisconnectCallback(ac, on_disc);
  if (r->url.password[0] && r->url.user[0])
    redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s %s", r->url.user, r->url.password);
  else if (r->url.password[0]) redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s", r->url.password);
  redisAsyncCommand(ac, on_handshake, NULL, "SELECT %u", r->url.db);
  return ac;
}

static void flush_queue(fc__redis_t *r);

/* A connection failed or ended (hiredis frees it): tried again later. */
static void conn_lost(fc__redis_t *r, redisAsyncContext **ac, bool *up) {
  *ac = NULL;
  *up = false;
  set_up(r);
  schedule_retry(r);
}

static void on_cmd_connect(const redisAsyncContext *ac, int status) {
  fc__redis_t *r = ac->data;
  if (status != REDIS_OK) {
    conn_lost(r, &r->cmd, &r->cmd_up);
    return;
  }
  /* After a Redis restart its script cache is empty: load them again first. */
  redisAsyncCommand(r->cmd, on_handshake, NULL, "SCRIPT LOAD %s", FC_REDIS_APPEND_LUA);
  redisAsyncCommand(r->cmd, on_handshake, NULL, "SCRIPT LOAD %s", FC_REDIS_PURGE_LUA);
  r->cmd_up = true;
  set_up(r);
  flush_queue(r);
}

static void on_cmd_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  fc__redis_t *r = ac->data;
  conn_lost(r, &r->cmd, &r->cmd_up);
}

/* ---- the bus -------------------------------------------------------------- */

static void deliver(fc__redis_t *r, const fc_bus_msg_t *m) {
  pthread_mutex_lock(&r->lock);
  fc_bus_cb cb = r->bus_cb;
  void *ud = r->bus_ud;
  pthread_mutex_unlock(&r->lock);
  if (cb) cb(ud, m);
}

/* ---- the channels subscribed to ------------------------------------------- */

static fc__redis_sub_t **sub_slot(fc__redis_t *r, const char *name, size_t len, uint32_t h) {
  fc__redis_sub_t **pp = &r->subs[h & (r->subs_cap - 1)];
  while (*pp && !((*pp)->hash == h && !strncmp((*pp)->name, name, len) && !(*pp)->name[len])) pp = &(*pp)->next;
  return pp;
}

static bool subscribed(fc__redis_t *r, const char *name, size_t len) {
  return r->subs_cap && *sub_slot(r, name, len, fc_hash_fnv1a(name, len));
}

static void subs_grow(fc__redis_t *r) {
  size_t cap = r->subs_cap ? 2 * r->subs_cap : 64;
  fc__redis_sub_t **b = fc_xcalloc(cap, sizeof *b);
  for (size_t i = 0; i < r->subs_cap; i++) {
    for (fc__redis_sub_t *e = r->subs[i], *next; e; e = next) {
      next = e->next;
      e->next = b[e->hash & (cap - 1)];
      b[e->hash & (cap - 1)] = e;
    }
  }
  free(r->subs);
  r->subs = b;
  r->subs_cap = cap;
}

static void on_bus(redisAsyncContext *ac, void *reply, void *ud);

/* Subscribes to `n` channels' Pub/Sub channels in one command. */
static void subscribe(fc__redis_t *r, const char *const *names, size_t n) {
  if (!r->sub_up || !n) return;
  const char **argv = fc_xmalloc((n + 1) * sizeof *argv);
  size_t *lens = fc_xmalloc((n + 1) * sizeof *lens);
  char **full = fc_xmalloc(n * sizeof *full);
  argv[0] = "SUBSCRIBE", lens[0] = 9;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(r->bus) + strlen(names[i]) + 1;
    full[i] = fc_xmalloc(len);
    snprintf(full[i], len, "%s%s", r->bus, names[i]);
    argv[i + 1] = full[i], lens[i + 1] = len - 1;
  }
  redisAsyncCommandArgv(r->sub, on_bus, NULL, (int)n + 1, argv, lens);
  for (size_t i = 0; i < n; i++) free(full[i]);
  free(full);
  free(argv);
  free(lens);
}

/* This node took a channel into memory (`on`) or let it go. */
static void set_interest(fc__redis_t *r, const char *name, bool on) {
  size_t len = strlen(name);
  uint32_t h = fc_hash_fnv1a(name, len);
  if (on && r->nsubs >= r->subs_cap) subs_grow(r);
  fc__redis_sub_t **pp = r->subs_cap ? sub_slot(r, name, len, h) : NULL;
  if (on && pp && !*pp) {
    fc__redis_sub_t *e = fc_xmalloc(sizeof *e + len + 1);
    e->next = NULL;
    e->hash = h;
    memcpy(e->name, name, len + 1);
    *pp = e;
    r->nsubs++;
    subscribe(r, &name, 1);
  } else if (!on && pp && *pp) {
    fc__redis_sub_t *e = *pp;
    *pp = e->next;
    r->nsubs--;
    free(e);
    if (r->sub_up) redisAsyncCommand(r->sub, NULL, NULL, "UNSUBSCRIBE %s%s", r->bus, name);
  }
}

/* A new bus connection subscribes to every channel held, in slices. */
static void subscribe_all(fc__redis_t *r) {
  enum { SLICE = 256 };
  const char *names[SLICE];
  size_t k = 0;
  for (size_t i = 0; i < r->subs_cap; i++) {
    for (fc__redis_sub_t *e = r->subs[i]; e; e = e->next) {
      names[k++] = e->name;
      if (k == SLICE) subscribe(r, names, k), k = 0;
    }
  }
  subscribe(r, names, k);
}

static void subs_free(fc__redis_t *r) {
  for (size_t i = 0; i < r->subs_cap; i++)
    for (fc__redis_sub_t *e = r->subs[i], *next; e; e = next) next = e->next, free(e);
  free(r->subs);
}

/* A subscription is confirmed: from now on the channel's commits come here,
 * and what came before is read back (a channel that just came into memory,
 * or every channel after the bus was away). Then commits as they come. */
static void on_bus(redisAsyncContext *ac, void *reply, void *ud) {
  (void)ud;
  fc__redis_t *r = ac->data;
  redisReply *rep = reply;
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || rep->element[0]->type != REDIS_REPLY_STRING ||
      rep->element[1]->type != REDIS_REPLY_STRING)
    return;
  const char *kind = rep->element[0]->str;
  size_t plen = strlen(r->bus);
  if (!strcmp(kind, "subscribe") && rep->element[1]->len > plen) {
    fc_str_t name = {rep->element[1]->str + plen, rep->element[1]->len - plen};
    if (!subscribed(r, name.base, name.len)) return; /* let go meanwhile */
    if (r->lost) atomic_fetch_add(&r->catch_ups, 1);
    deliver(r, &(fc_bus_msg_t){.kind = FC_BUS_CATCH_UP, .channel = name});
    return;
  }
  if (strcmp(kind, "message") || rep->element[2]->type != REDIS_REPLY_STRING) return;
  fc_bus_msg_t m;
  if (fc__redis_parse_bus(rep->element[2]->str, rep->element[2]->len, &m, &r->evs, &r->evcap) < 0) {
    fc_log(FC_LOG_WARN, "redis bus: a message flowcast did not write", "channel=%s", rep->element[1]->str);
    return;
  }
  deliver(r, &m);
}

static void on_sub_connect(const redisAsyncContext *ac, int status) {
  fc__redis_t *r = ac->data;
  if (status != REDIS_OK) {
    conn_lost(r, &r->sub, &r->sub_up);
    return;
  }
  r->sub_up = true;
  set_up(r);
  subscribe_all(r);
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  fc__redis_t *r = ac->data;
  conn_lost(r, &r->sub, &r->sub_up);
}

static void connect_all(fc__redis_t *r) {
  if (r->stopping) return;
  if (!r->cmd) r->cmd = open_async(r, on_cmd_connect, on_cmd_disconnect), r->cmd_started = fc_mono_ms();
  if (!r->sub) r->sub = open_async(r, on_sub_connect, on_sub_disconnect), r->sub_started = fc_mono_ms();
  if (!r->cmd_up || !r->sub_up) schedule_retry(r); /* also the watch on pending connects */
}

/* ---- commits -------------------------------------------------------------- */

/* A group: batches of one channel queued one after another, committed by
 * one script (as the SQLite writer groups them in one transaction), chained
 * by `next` from the first, which carries the group's state (status, epoch,
 * tries). Ends every batch of the group in order, with the first's status. */
static void end_group(fc__redis_t *r, fc_store_batch_t *g) {
  int status = g->status;
  if (status == 0 && !g->purge) atomic_fetch_add(&r->groups, 1);
  for (fc_store_batch_t *b = g, *next; b; b = next) {
    next = b->next; /* done() may free b */
    b->status = status;
    if (status == 0 && !b->purge) {
      uint64_t last = b->events[b->n - 1].seq;
      uint64_t cur = atomic_load(&r->last_seq);
      while (cur < last && !atomic_compare_exchange_weak(&r->last_seq, &cur, last)) {}
      atomic_fetch_add(&r->events, b->n);
    } else if (status != 0) {
      atomic_fetch_add(&r->failures, 1);
    }
    b->done(b);
  }
}

static void send_group(fc__redis_t *r, fc_store_batch_t *g);

/* Redis answered without flowcast's data (restarted empty, or flushed): the
 * node's own view raises the counters again before anything else commits,
 * so that ids and ordinals keep increasing; then this node takes the new
 * epoch (or makes it). Commits already sent in the old one were refused. */
static void reseed(fc__redis_t *r) {
  fc_log(FC_LOG_ERROR, "redis lost flowcast's data",
         "host=%s port=%d (fc:epoch changed: events stored before are gone; ids go on from this node's last)",
         r->url.host, r->url.port);
  deliver(r, &(fc_bus_msg_t){.kind = FC_BUS_RESEED});
  r->gen++;
  if (fc__redis_epoch(r) < 0) fc_log(FC_LOG_ERROR, "redis: cannot read or make fc:epoch", "host=%s", r->url.host);
}

/* The script's answer: {first id, first ordinal, ms}, for the group's
 * events in order. */
static void on_commit(redisAsyncContext *ac, void *reply, void *ud) {
  fc__redis_t *r = ac->data;
  fc_store_batch_t *g = ud;
  redisReply *rep = reply;
  if (!rep) {
    g->status = -ENOTCONN;
  } else if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "FCEPOCH")) {
    /* Nothing was stored: once the counters are seeded again (by the first
     * refusal of this epoch), the group goes again, a few times at most. */
    g->status = -EIO;
    if (g->store_gen == r->gen) reseed(r);
    if (g->store_gen != r->gen && g->store_tries++ < 3 && r->cmd_up) {
      if (r->wait_replicas) g->store_skip_waits++; /* the old WAIT's answer is still to come */
      send_group(r, g);
      return;
    }
  } else if (rep->type == REDIS_REPLY_ERROR) {
    fc_log(FC_LOG_ERROR, "redis commit failed", "channel=%s error=\"%s\"", g->channel, rep->str);
    g->status = -EIO;
  } else if (g->purge ? rep->type != REDIS_REPLY_INTEGER : rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
    g->status = -EIO;
  } else {
    if (g->purge) g->purge_upto = (uint64_t)rep->integer;
    g->status = 0;
    uint64_t k = 0;
    for (fc_store_batch_t *b = g; !g->purge && b; b = b->next) {
      for (size_t i = 0; i < b->n; i++, k++) {
        b->events[i].seq = (uint64_t)rep->element[0]->integer + k;
        b->events[i].n = (uint64_t)rep->element[1]->integer + k;
        b->events[i].time_ms = rep->element[2]->integer;
      }
    }
  }
  if (g->wait_lost) g->status = g->status ? g->status : -ENOTCONN;
  if (!r->wait_replicas || g->wait_lost) end_group(r, g);
}

/* WAIT's answer, right after the commit's: how many replicas have it. */
static void on_wait(redisAsyncContext *ac, void *reply, void *ud) {
  fc__redis_t *r = ac->data;
  fc_store_batch_t *g = ud;
  redisReply *rep = reply;
  if (g->store_skip_waits) { /* the WAIT of a try that was refused */
    g->store_skip_waits--;
    return;
  }
  if (g->status == 0 && (!rep || rep->type != REDIS_REPLY_INTEGER || rep->integer < (long long)r->wait_replicas)) {
    fc_log(FC_LOG_WARN, "redis replicas did not confirm a commit", "channel=%s wanted=%u got=%lld", g->channel,
           r->wait_replicas, rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1);
    g->status = -ETIMEDOUT;
  }
  end_group(r, g);
}

/* A command's arguments, binary-safe. */
typedef struct {
  const char **v;
  size_t *len;
  size_t n;
} args_t;

static void arg(args_t *a, const char *s, size_t len) {
  a->v[a->n] = s ? s : "";
  a->len[a->n++] = len;
}

static void argz(args_t *a, const char *s) { arg(a, s, strlen(s)); }

static void send_group(fc__redis_t *r, fc_store_batch_t *g) {
  char stream[300], meta[300], maxlen[24], age[24];
  snprintf(stream, sizeof stream, "fc:s:%s", g->channel);
  snprintf(meta, sizeof meta, "fc:m:%s", g->channel);
  size_t events = 0;
  for (fc_store_batch_t *b = g; b; b = b->next) events += b->n;
  size_t cap = 13 + 4 * events;
  g->store_gen = r->gen;
  args_t a = {fc_xmalloc(cap * sizeof *a.v), fc_xmalloc(cap * sizeof *a.len), 0};
  argz(&a, "EVALSHA");
  if (g->purge) {
    const char *keys[] = {r->sha_purge, "4", stream, meta, "fc:seq", "fc:epoch", g->channel, r->bus, r->epoch};
    for (size_t i = 0; i < FC_ARRAY_LEN(keys); i++) argz(&a, keys[i]);
  } else {
    /* The store keeps at least twice the channel's retention (store.h). */
    snprintf(maxlen, sizeof maxlen, "%u", g->keep > 5 ? 2 * g->keep : 10);
    snprintf(age, sizeof age, "%llu", (unsigned long long)g->max_age_s);
    const char *keys[] = {r->sha_append, "5",        stream, meta,   "fc:seq", "fc:channels",
                          "fc:epoch",    g->channel, maxlen, r->bus, age,      r->epoch};
    for (size_t i = 0; i < FC_ARRAY_LEN(keys); i++) argz(&a, keys[i]);
    for (fc_store_batch_t *b = g; b; b = b->next) {
      for (size_t i = 0; i < b->n; i++) {
        const fc_store_event_t *e = &b->events[i];
        arg(&a, e->name.base, e->name.len);
        arg(&a, e->data.base, e->data.len);
        arg(&a, e->from.base, e->from.len);
        argz(&a, e->is_json ? "1" : "0");
      }
    }
  }
  /* A connection on its way out takes no command: the group ends now. */
  if (redisAsyncCommandArgv(r->cmd, on_commit, g, (int)a.n, a.v, a.len) != REDIS_OK) {
    g->status = -ENOTCONN;
    end_group(r, g);
  } else if (r->wait_replicas && redisAsyncCommand(r->cmd, on_wait, g, "WAIT %u 1000", r->wait_replicas) != REDIS_OK) {
    g->wait_lost = true; /* on_commit ends it */
  }
  free(a.v);
  free(a.len);
}

/* May batch `b` join group `g` (the same channel and rules, events only)? */
static bool joins(const fc_store_batch_t *g, const fc_store_batch_t *b, size_t events) {
  return !g->purge && !b->purge && g->keep == b->keep && g->max_age_s == b->max_age_s &&
         events + b->n <= GROUP_MAX_EVENTS && !strcmp(g->channel, b->channel);
}

/* Sends what other threads queued, batches of one channel that follow one
 * another as one group (or fails it while Redis is away). */
static void flush_queue(fc__redis_t *r) {
  pthread_mutex_lock(&r->lock);
  fc_store_batch_t *b = r->head;
  r->head = r->tail = NULL;
  pthread_mutex_unlock(&r->lock);
  while (b) {
    fc_store_batch_t *g = b, *last = b;
    size_t events = b->n;
    for (b = b->next; b && joins(g, b, events); b = b->next) {
      events += b->n;
      last = b;
    }
    last->next = NULL;
    if (r->cmd_up) {
      send_group(r, g);
    } else {
      g->status = -ENOTCONN;
      end_group(r, g);
    }
  }
}

/* ---- the thread ----------------------------------------------------------- */

static void close_cb(uv_handle_t *h) { (void)h; }

static void on_wake(uv_async_t *a) {
  fc__redis_t *r = a->data;
  pthread_mutex_lock(&r->lock);
  fc__redis_interest_t *in = r->ihead;
  r->ihead = r->itail = NULL;
  bool stopping = r->stopping;
  pthread_mutex_unlock(&r->lock);
  flush_queue(r);
  for (fc__redis_interest_t *next; in; in = next) {
    next = in->next;
    if (!stopping) set_interest(r, in->name, in->on);
    free(in);
  }
  if (!stopping) return;
  /* Replies to what was sent still arrive; then the connections close. */
  if (r->cmd) redisAsyncDisconnect(r->cmd);
  if (r->sub) redisAsyncDisconnect(r->sub);
  uv_close((uv_handle_t *)&r->wake, close_cb);
  uv_close((uv_handle_t *)&r->retry, close_cb);
  uv_close((uv_handle_t *)&r->age, close_cb);
}

static void on_age(uv_timer_t *t) {
  fc__redis_t *r = t->data;
  r->aged(r->aged_ud, fc_now_ms());
}

static void *run(void *arg) {
  fc__redis_t *r = arg;
  prctl(PR_SET_NAME, "fc-redis");
  connect_all(r);
  if (r->aged) uv_timer_start(&r->age, on_age, 1000, 1000);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* ---- the store's operations ------------------------------------------------ */

static const fc__store_ops_t redis_ops;

static void rd_append(fc_store_t *base, fc_store_batch_t *b) {
  fc__redis_t *r = (fc__redis_t *)base;
  b->next = NULL;
  pthread_mutex_lock(&r->lock);
  if (r->tail) r->tail->next = b;
  else r->head = b;
  r->tail = b;
  pthread_mutex_unlock(&r->lock);
  uv_async_send(&r->wake);
}

static void rd_interest(fc_store_t *base, const char *channel, bool on) {
  fc__redis_t *r = (fc__redis_t *)base;
  size_t len = strlen(channel);
  fc__redis_interest_t *in = fc_xmalloc(sizeof *in + len + 1);
  in->next = NULL;
  in->on = on;
  memcpy(in->name, channel, len + 1);
  pthread_mutex_lock(&r->lock);
  if (r->itail) r->itail->next = in;
  else r->ihead = in;
  r->itail = in;
  pthread_mutex_unlock(&r->lock);
  uv_async_send(&r->wake);
}

static void rd_listen(fc_store_t *base, fc_bus_cb cb, void *ud) {
  fc__redis_t *r = (fc__redis_t *)base;
  pthread_mutex_lock(&r->lock);
  r->bus_cb = cb;
  r->bus_ud = ud;
  pthread_mutex_unlock(&r->lock);
}

static uint64_t rd_last_seq(fc_store_t *base) { return atomic_load(&((fc__redis_t *)base)->last_seq); }

static bool rd_stats(fc_store_t *base, fc_store_stats_t *out) {
  fc__redis_t *r = (fc__redis_t *)base;
  out->groups = atomic_load(&r->groups);
  out->events = atomic_load(&r->events);
  out->failures = atomic_load(&r->failures);
  return true;
}

static bool rd_link(fc_store_t *base, fc_store_link_t *out) {
  fc__redis_t *r = (fc__redis_t *)base;
  out->up = atomic_load(&r->up);
  out->reconnects = atomic_load(&r->reconnects);
  out->catch_ups = atomic_load(&r->catch_ups);
  return true;
}

static void rd_close(fc_store_t *base) {
  fc__redis_t *r = (fc__redis_t *)base;
  if (r->thread) {
    pthread_mutex_lock(&r->lock);
    atomic_store(&r->stopping, true);
    pthread_mutex_unlock(&r->lock);
    uv_async_send(&r->wake);
    pthread_join(r->thread, NULL);
    uv_loop_close(&r->loop);
  }
  for (fc__redis_interest_t *in = r->ihead, *next; in; in = next) next = in->next, free(in);
  subs_free(r);
  if (r->sync) redisFree(r->sync);
  pthread_mutex_destroy(&r->sync_lock);
  pthread_mutex_destroy(&r->lock);
  free(r->evs);
  free(r);
}

const char *fc_store_redis_where(fc_store_t *base) {
  return base->ops == &redis_ops ? ((fc__redis_t *)base)->where : "";
}

static const fc__store_ops_t redis_ops = {
    .close = rd_close,
    .last_seq = rd_last_seq,
    .append = rd_append,
    .load = fc__redis_load,
    .channels = fc__redis_channels,
    .stats = rd_stats,
    .listen = rd_listen,
    .interest = rd_interest,
    .range = fc__redis_range,
    .link = rd_link,
    .shared_secret = fc__redis_shared_secret,
    .claim = fc__redis_claim,
    .reseed = fc__redis_reseed,
    .durable = true,
    .numbers = true,
};

/* The start-up checks on the blocking connection: Redis answers, takes the
 * password, has streams, loads the scripts; the cluster's last id. */
static int check(fc__redis_t *r, char *err, size_t errlen) {
  r->sync = fc__redis_connect(&r->url, 3000, err, errlen);
  if (!r->sync) return -ENOTCONN;
  if (fc__redis_check_version(r->sync, err, errlen) < 0 ||
      fc__redis_load_script(r->sync, FC_REDIS_APPEND_LUA, r->sha_append, err, errlen) < 0 ||
      fc__redis_load_script(r->sync, FC_REDIS_PURGE_LUA, r->sha_purge, err, errlen) < 0)
    return -EIO;
  redisReply *rep = redisCommand(r->sync, "GET fc:seq");
  if (!rep || (rep->type != REDIS_REPLY_STRING && rep->type != REDIS_REPLY_NIL)) {
    snprintf(err, errlen, "Redis: cannot read fc:seq: %s",
             rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                   : "not a number (is this Redis used by another program?)");
    if (rep) freeReplyObject(rep);
    return -EIO;
  }
  atomic_store(&r->last_seq, rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0);
  freeReplyObject(rep);
  if (fc__redis_epoch(r) < 0) {
    snprintf(err, errlen, "Redis: cannot read or make fc:epoch");
    return -EIO;
  }
  return 0;
}

fc_store_t *fc_store_redis_open(const fc_store_redis_opts_t *opts, char *err, size_t errlen) {
  fc__redis_t *r = fc_xcalloc(1, sizeof *r);
  r->base.ops = &redis_ops;
  r->wait_replicas = opts->wait_replicas;
  r->aged = opts->aged;
  r->aged_ud = opts->aged_ud;
  r->backoff_ms = BACKOFF_MIN_MS;
  pthread_mutex_init(&r->sync_lock, NULL);
  pthread_mutex_init(&r->lock, NULL);
  if (fc__redis_url_parse(opts->url, &r->url, err, errlen) < 0 || check(r, err, errlen) < 0) {
    rd_close(&r->base);
    return NULL;
  }
  snprintf(r->bus, sizeof r->bus, "fc:bus:%u:", r->url.db);
  snprintf(r->where, sizeof r->where, "%s:%d/%u", r->url.host, r->url.port, r->url.db);
  uv_loop_init(&r->loop);
  uv_async_init(&r->loop, &r->wake, on_wake);
  uv_timer_init(&r->loop, &r->retry);
  uv_timer_init(&r->loop, &r->age);
  r->wake.data = r->retry.data = r->age.data = r;
  if (pthread_create(&r->thread, NULL, run, r) != 0) {
    snprintf(err, errlen, "cannot start the Redis thread");
    r->thread = 0;
    uv_close((uv_handle_t *)&r->wake, NULL);
    uv_close((uv_handle_t *)&r->retry, NULL);
    uv_close((uv_handle_t *)&r->age, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    rd_close(&r->base);
    return NULL;
  }
  return &r->base;
}
