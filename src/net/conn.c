/* Connections: reading into the loop's shared buffer, and write queues of
 * shared frames flushed once per loop iteration. */
#include "net/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WRITE (64u << 20) /* bytes per write: `inflight` is 32-bit */
#define HOLD_BYTES_MAX (64u << 10)

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  fc_conn_t *c = h->data;
  buf->base = c->loop->readbuf;
  buf->len = sizeof c->loop->readbuf;
}

static void close_now(fc_conn_t *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  fc_conn_t *c = s->data;
  if (c->lingering) {
    if (n < 0) close_now(c); /* input after our answer is dropped */
    return;
  }
  if (n > 0) {
    if (c->closing) return;
    if (!c->filter) c->h->on_data(c, buf->base, (size_t)n);
    else if (c->filter->on_read(c, buf->base, (size_t)n) < 0) fc_conn_close(c, true);
  } else if (n < 0) {
    fc_conn_read_stop(c);
    if (!c->closing) c->h->on_eof(c);
  }
}

void fc_conn_read_start(fc_conn_t *c) {
  if (c->reading || c->closing || (c->close_when_flushed && !c->lingering)) return;
  c->reading = true;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void fc_conn_read_stop(fc_conn_t *c) {
  if (!c->reading) return;
  c->reading = false;
  uv_read_stop((uv_stream_t *)&c->tcp);
}

int fc__conn_open(fc_loop_t *l, int fd, fc__peer_t *peer) {
  fc_conn_t *c = fc_xcalloc(1, sizeof *c);
  int rc = uv_tcp_init(&l->uv, &c->tcp);
  if (rc < 0) {
    free(c);
    close(fd);
    return rc;
  }
  c->tcp.data = c;
  c->loop = l;
  c->q = c->qinline;
  c->qcap = FC__QINLINE;
  if ((rc = uv_tcp_open(&c->tcp, fd)) < 0) {
    close(fd);
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return rc;
  }
  c->peer = peer;
  uv_tcp_nodelay(&c->tcp, 1);
  c->next = l->conns;
  if (c->next) c->next->prev = c;
  l->conns = c;
  l->nconns++;
  l->net->opts.h.on_accept(c);
  fc_conn_read_start(c);
  return 0;
}

/* Back to the inline ring; the queue is empty. */
static void ring_inline(fc_conn_t *c) {
  if (c->q != c->qinline) free(c->q);
  c->q = c->qinline;
  c->qcap = FC__QINLINE;
  c->qhead = 0;
}

static void queue_clear(fc_conn_t *c) {
  while (c->qlen) {
    fc_frame_unref(c->q[c->qhead]);
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
  }
  c->qoff = 0;
  ring_inline(c);
  c->queued = 0;
}

static void on_closed(uv_handle_t *h) {
  fc_conn_t *c = h->data;
  fc_loop_t *l = c->loop;
  if (c->h && c->h->on_close) c->h->on_close(c);
  if (c->filter) c->filter->on_close(c);
  queue_clear(c);
  if (c->prev) c->prev->next = c->next;
  else l->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  l->nconns--;
  fc__net_release(l->net, c->peer);
  /* On a dirty list it stays, to be freed by the flush that reaches it: no
   * walk of a list that may hold every subscriber of the loop. */
  if (c->dirty) c->dead = true;
  else free(c);
  fc__loop_maybe_finish(l);
}

static void close_now(fc_conn_t *c) {
  if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
  c->closing = true;
  fc_conn_read_stop(c);
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* A filter's goodbye goes out ahead of a flushing or lingering close. */
static void filter_shutdown(fc_conn_t *c) {
  if (c->filter && c->filter->on_shutdown && !c->close_when_flushed && !c->lingering) c->filter->on_shutdown(c);
}

void fc_conn_close(fc_conn_t *c, bool flush) {
  if (c->closing) return;
  if (flush) filter_shutdown(c);
  if (flush && c->qlen > 0) {
    c->close_when_flushed = true;
    fc_conn_read_stop(c);
    return;
  }
  c->closing = true;
  /* A write in flight keeps its frames until its callback: let libuv cancel it. */
  close_now(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

static void start_linger(fc_conn_t *c) {
  c->linger_since = uv_now(&c->loop->uv);
  uv_shutdown_t *req = fc_xmalloc(sizeof *req);
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    free(req);
    close_now(c);
    return;
  }
  fc_conn_read_start(c);
}

void fc_conn_close_linger(fc_conn_t *c) {
  if (c->closing || c->lingering) return;
  filter_shutdown(c);
  c->lingering = true;
  if (c->qlen == 0) start_linger(c);
  else c->close_when_flushed = true;
}

/* A ring grown on the heap goes back to the inline one once the connection
 * has written nothing for this long: kept while it is busy, so a stream that
 * writes often does not churn it. */
#define RING_IDLE_MS 2000

void fc__conn_sweep(fc_loop_t *l, uint64_t now) {
  for (fc_conn_t *c = l->conns; c; c = c->next) {
    if (c->lingering && !c->closing && c->linger_since && now - c->linger_since > 2000) {
      close_now(c);
    } else if (c->q != c->qinline && c->qlen == 0 && !c->wreq && now - c->progress_ms > RING_IDLE_MS) {
      ring_inline(c);
    }
  }
}

void fc__conn_close_all(fc_loop_t *l) {
  for (fc_conn_t *c = l->conns; c; c = c->next) close_now(c);
}

static void mark_dirty(fc_conn_t *c) {
  if (c->dirty) return;
  fc_conn_t **list = c->bulk ? &c->loop->bulk_dirty : &c->loop->dirty;
  c->dirty = true;
  c->dirty_next = *list;
  *list = c;
}

static int enqueue_raw(fc_conn_t *c, fc_frame_t *f, bool bounded) {
  if (c->closing || c->close_when_flushed || c->lingering) return -EPIPE;
  if (bounded && c->bound && c->queued + f->len > c->bound) return -ENOBUFS;
  if (c->queued == 0) c->progress_ms = uv_now(&c->loop->uv);
  if (c->qlen == c->qcap) {
    uint32_t cap = c->qcap < 8 ? 8 : c->qcap * 2;
    fc_frame_t **q = fc_xmalloc(cap * sizeof *q);
    for (uint32_t i = 0; i < c->qlen; i++) q[i] = c->q[(c->qhead + i) % c->qcap];
    if (c->q != c->qinline) free(c->q);
    c->q = q;
    c->qhead = 0;
    c->qcap = cap;
  }
  c->q[(c->qhead + c->qlen++) % c->qcap] = fc_frame_ref(f);
  c->queued += f->len;
  mark_dirty(c);
  /* A hold is for small events: a stream that could write (no write of its
   * own still in flight) and has this much to write ends it, long before its
   * queue's bound would drop a reader that is not slow. */
  if (c->bulk && !c->wreq && c->queued > HOLD_BYTES_MAX) c->loop->bulk_due = 0;
  return 0;
}

/* Through the filter, when there is one: it seals the bytes into frames of its own. */
static int filter_send(fc_conn_t *c, const void *p, size_t n, bool bounded) {
  if (c->closing || c->close_when_flushed || c->lingering) return -EPIPE;
  if (bounded && c->bound && c->queued + n > c->bound) return -ENOBUFS;
  return c->filter->send(c, p, n);
}

static int enqueue(fc_conn_t *c, fc_frame_t *f, bool bounded) {
  if (c->filter) return filter_send(c, f->bytes, f->len, bounded);
  return enqueue_raw(c, f, bounded);
}

int fc_conn_send(fc_conn_t *c, fc_frame_t *f) { return enqueue(c, f, true); }

int fc_conn_send_raw(fc_conn_t *c, fc_frame_t *f) { return enqueue_raw(c, f, false); }

static int send_copy(fc_conn_t *c, const void *p, size_t n, bool bounded) {
  if (c->filter) return filter_send(c, p, n, bounded);
  fc_frame_t *f = fc_frame_copy(p, n);
  int rc = enqueue(c, f, bounded);
  fc_frame_unref(f);
  return rc;
}

int fc_conn_send_copy(fc_conn_t *c, const void *p, size_t n) { return send_copy(c, p, n, true); }

int fc_conn_send_control(fc_conn_t *c, const void *p, size_t n) { return send_copy(c, p, n, false); }

static void write_some(fc_conn_t *c, bool batch);

#define MAX_SPARE_WREQS 1024

/* Write requests come from a per-loop free list, so an idle connection holds
 * none and a busy one allocates nothing per write. */
static uv_write_t *wreq_get(fc_loop_t *l) {
  uv_write_t *w = l->spare_wreqs;
  if (!w) return fc_xmalloc(sizeof *w);
  l->spare_wreqs = w->data;
  l->nspare--;
  return w;
}

static void wreq_put(fc_loop_t *l, uv_write_t *w) {
  if (l->nspare >= MAX_SPARE_WREQS) {
    free(w);
    return;
  }
  w->data = l->spare_wreqs;
  l->spare_wreqs = w;
  l->nspare++;
}

/* Drops a written frame's reference at the end of the pass (fc_loop_t.unrefs). */
static void unref_later(fc_loop_t *l, fc_frame_t *f) {
  /* Fibonacci hashing: events sit at a fixed stride, which a plain shift
   * would crowd into a few slots. */
  size_t i = (size_t)((((uint64_t)(uintptr_t)f * 0x9E3779B97F4A7C15ull) >> 32) % FC_ARRAY_LEN(l->unrefs));
  if (l->unrefs[i].frame != f) {
    fc_frame_unref_n(l->unrefs[i].frame, l->unrefs[i].n);
    l->unrefs[i].frame = f;
    l->unrefs[i].n = 0;
  }
  l->unrefs[i].n++;
}

void fc__conn_drop_refs(fc_loop_t *l) {
  for (size_t i = 0; i < FC_ARRAY_LEN(l->unrefs); i++) {
    fc_frame_unref_n(l->unrefs[i].frame, l->unrefs[i].n);
    l->unrefs[i].frame = NULL;
    l->unrefs[i].n = 0;
  }
}

/* Drops `n` written bytes from the head of the queue. */
static void consume(fc_conn_t *c, size_t n) {
  c->queued -= n;
  c->written += n;
  if (n) c->progress_ms = uv_now(&c->loop->uv);
  while (c->qlen > 0) { /* also drops empty frames at the head */
    fc_frame_t *f = c->q[c->qhead];
    size_t left = f->len - c->qoff;
    if (n < left) {
      c->qoff += (uint32_t)n;
      return;
    }
    n -= left;
    c->qoff = 0;
    unref_later(c->loop, f);
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
  }
}

/* The queue is empty: close if that was waited for, else tell the handler. */
static void drained(fc_conn_t *c) {
  if (c->close_when_flushed) {
    if (c->lingering) start_linger(c);
    else close_now(c);
  } else if (c->h->on_drained) {
    c->h->on_drained(c);
  }
}

static void on_write(uv_write_t *req, int status) {
  fc_conn_t *c = req->data;
  c->wreq = NULL;
  wreq_put(c->loop, req);
  consume(c, c->inflight);
  c->inflight = 0;
  if (c->closing) return; /* status is UV_ECANCELED: on_closed frees the rest */
  if (status < 0) {
    close_now(c);
    return;
  }
  if (c->qlen > 0) write_some(c, false);
  else drained(c);
}

uint32_t fc__conn_gather(fc_conn_t *c, uv_buf_t *bufs, uint32_t max, size_t *total) {
  uint32_t n = c->qlen < max ? c->qlen : max;
  *total = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (*total >= MAX_WRITE) return i;
    fc_frame_t *f = c->q[(c->qhead + i) % c->qcap];
    size_t off = i == 0 ? c->qoff : 0;
    bufs[i] = uv_buf_init((char *)f->bytes + off, (unsigned)(f->len - off));
    *total += f->len - off;
  }
  return n;
}

/* What a write attempt left: nothing more to do now (drained or closed),
 * more queued to write at once, or a full socket (wait for writability). */
typedef enum { TRY_DONE, TRY_MORE, TRY_FULL } try_t;

/* Takes a write attempt's result: `w` bytes of `total` written, or a
 * negative errno (a failure closes the connection: TRY_DONE). */
static try_t tried(fc_conn_t *c, int w, size_t total) {
  atomic_fetch_add_explicit(&c->loop->writes, 1, memory_order_relaxed);
  if (w == UV_EAGAIN) w = 0;
  if (w < 0) {
    close_now(c);
    return TRY_DONE;
  }
  consume(c, (size_t)w);
  if ((size_t)w < total) return TRY_FULL;
  if (c->qlen > 0) return TRY_MORE;
  drained(c);
  return TRY_DONE;
}

void fc__conn_tried(fc_conn_t *c, int w, size_t total) {
  if (c->closing) return; /* closed meanwhile by another's callback: on_closed frees the queue */
  if (tried(c, w, total) != TRY_DONE) write_some(c, false);
}

/* Writes what is queued: with `batch`, in the loop's io_uring submission
 * when it has one (the results come back through fc__conn_tried); else first
 * straight into the socket (uv_try_write, no request and no change to the
 * poll set), and only what the socket did not take through a uv_write that
 * completes later. */
static void write_some(fc_conn_t *c, bool batch) {
  if (c->wreq || c->qlen == 0 || c->closing) return;
  if (batch && fc__wbatch_add(c->loop, c)) return;
  uv_buf_t bufs[FC__MAX_IOV];
  size_t total;
  uint32_t n;
  try_t more;
  do {
    n = fc__conn_gather(c, bufs, FC__MAX_IOV, &total);
    more = tried(c, uv_try_write((uv_stream_t *)&c->tcp, bufs, n), total);
  } while (more == TRY_MORE);
  if (more == TRY_DONE) return;
  n = fc__conn_gather(c, bufs, FC__MAX_IOV, &total);
  c->wreq = wreq_get(c->loop);
  c->wreq->data = c;
  c->inflight = total;
  atomic_fetch_add_explicit(&c->loop->writes, 1, memory_order_relaxed);
  if (uv_write(c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write) < 0) {
    c->inflight = 0;
    wreq_put(c->loop, c->wreq);
    c->wreq = NULL;
    close_now(c);
  }
}

/* Writes every connection on `list` and returns how many; with `batch`, in
 * one io_uring submission where the loop has one. With `repeats` (stream
 * passes) it also stamps each with `now_ms` and counts those it had stamped
 * `recent_ms` or less before. */
static size_t flush_list(fc_loop_t *l, fc_conn_t **list, bool batch, uint32_t now_ms, uint32_t recent_ms,
                         size_t *repeats) {
  fc_conn_t *c = *list;
  *list = NULL;
  size_t n = 0;
  for (fc_conn_t *next; c; c = next) {
    next = c->dirty_next;
    if (c->dead) {
      free(c);
      continue;
    }
    n++;
    c->dirty = false;
    c->dirty_next = NULL;
    if (repeats) {
      *repeats += c->last_write_ms && now_ms - c->last_write_ms <= recent_ms;
      c->last_write_ms = now_ms ? now_ms : 1;
    }
    write_some(c, batch);
  }
  fc__wbatch_flush(l);
  return n;
}

void fc__conn_free_dead(fc_loop_t *l) {
  fc_conn_t *lists[] = {l->dirty, l->bulk_dirty};
  for (size_t i = 0; i < FC_ARRAY_LEN(lists); i++)
    for (fc_conn_t *c = lists[i], *next; c; c = next) {
      next = c->dirty_next;
      free(c); /* the loop has no connection left: every one here is dead */
    }
  l->dirty = l->bulk_dirty = NULL;
}

static void on_bulk_due(uv_timer_t *t) { fc__conn_flush_all(t->data); }

/* Subscriber streams are written at once, as answers are, unless the loop is
 * busy with them: when a pass over them took 1 ms or more, and at least half
 * of the streams it wrote had been written in the pass before, the next pass
 * waits as long again (at most coalesce_ms). Events published meanwhile then
 * go out in the same writes, and a TCP send per subscriber is the cost that
 * matters; the loop reads and answers publishers in between. Streams of
 * quiet channels, or a loop that is not busy, never wait. */
static void flush_streams(fc_loop_t *l) {
  if (!l->bulk_dirty) return;
  uint64_t now = uv_hrtime();
  if (now < l->bulk_due) {
    if (!uv_is_active((uv_handle_t *)&l->bulk_timer))
      uv_timer_start(&l->bulk_timer, on_bulk_due, (l->bulk_due - now + 999999) / 1000000, 0);
    return;
  }
  size_t repeats = 0;
  /* A pass that follows a hold writes each stream with its own writev: the
   * hold lasts as long as the pass, so a cheaper pass would only shorten it
   * and put fewer events in each write (measured: 2.5x the writes, and more
   * CPU per delivery for server and client). Unheld passes are latency's. */
  size_t n = flush_list(l, &l->bulk_dirty, !l->bulk_holding, (uint32_t)(now / 1000000), l->bulk_recent_ms, &repeats);
  uint64_t took = uv_hrtime() - now, cap = (uint64_t)l->net->opts.coalesce_ms * 1000000;
  uint64_t hold = took >= 1000000 && 2 * repeats >= n ? (took < cap ? took : cap) : 0;
  atomic_fetch_add_explicit(&l->bulk_passes, 1, memory_order_relaxed);
  if (hold) atomic_fetch_add_explicit(&l->bulk_held, 1, memory_order_relaxed);
  l->bulk_due = now + took + hold;
  l->bulk_holding = hold > 0;
  l->bulk_recent_ms = (uint32_t)(2 * (took + hold) / 1000000) + 1;
}

/* The end of a loop pass: answers, then streams (unless held), then the
 * references to what was written. */
void fc__conn_flush_all(fc_loop_t *l) {
  flush_list(l, &l->dirty, true, 0, 0, NULL);
  flush_streams(l);
  fc__conn_drop_refs(l);
}

void fc_conn_peer(fc_conn_t *c, char *out, size_t len) {
  struct sockaddr_storage ss;
  int n = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n) != 0) {
    snprintf(out, len, "-");
    return;
  }
  char ip[64] = "";
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(out, len, "%s:%d", ip, ntohs(a->sin_port));
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(out, len, "[%s]:%d", ip, ntohs(a->sin6_port));
  }
}

void fc_conn_set_filter(fc_conn_t *c, const fc_conn_filter_t *f, void *state) {
  c->filter = f;
  c->filter_state = state;
}

void *fc_conn_filter_state(const fc_conn_t *c, const fc_conn_filter_t *f) {
  return c->filter == f ? c->filter_state : NULL;
}

void fc_conn_deliver(fc_conn_t *c, const char *p, size_t n) {
  if (!c->closing && !c->lingering) c->h->on_data(c, p, n);
}

void fc_conn_eof(fc_conn_t *c) {
  if (c->closing || c->lingering) return;
  fc_conn_read_stop(c);
  c->h->on_eof(c);
}

void fc_conn_set_handler(fc_conn_t *c, const fc_conn_handler_t *h, void *ud) {
  c->h = h;
  c->ud = ud;
}

void *fc_conn_ud(const fc_conn_t *c) { return c->ud; }

fc_loop_t *fc_conn_loop(const fc_conn_t *c) { return c->loop; }

bool fc_conn_closing(const fc_conn_t *c) { return c->closing; }

size_t fc_conn_queued(const fc_conn_t *c) { return c->queued; }

uint64_t fc_conn_written(const fc_conn_t *c) { return c->written; }

uint64_t fc_conn_stalled_ms(const fc_conn_t *c, uint64_t now_ms) {
  return c->queued && now_ms > c->progress_ms ? now_ms - c->progress_ms : 0;
}

void fc_conn_set_bound(fc_conn_t *c, size_t bytes) { c->bound = bytes; }

size_t fc_conn_bound(const fc_conn_t *c) { return c->bound; }

void fc_conn_set_bulk(fc_conn_t *c, bool bulk) { c->bulk = bulk; }
