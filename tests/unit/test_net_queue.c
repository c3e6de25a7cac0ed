/* The net write queue over a real loop and a loopback TCP connection:
 * frames go out in order and coalesce into one write per tick, the byte bound
 * refuses what would pass it (control bytes excepted), a closing connection
 * refuses everything, and a queue larger than the socket takes is written in
 * parts as the peer reads, then reports itself drained (src/net/conn.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "loopback.h"

#define BIG_FRAMES 64
#define BIG_FRAME_BYTES (64 * 1024)
#define BIG_TOTAL ((size_t)BIG_FRAMES * BIG_FRAME_BYTES)

typedef enum { MODE_ORDER, MODE_BOUND, MODE_DRAIN } mode_t_;

/* What the loop's callbacks saw; written on the loop thread, read by the
 * client thread only through the atomics, by the test after the run. */
static struct {
  mode_t_ mode;
  fc_net_t *net;
  fc_conn_t *c;
  int rc[4];
  size_t queued[3];
  size_t bound;
  unsigned refs_after_refusal;
  atomic_int wakes;
  fc_msg_t step; /* the drain client's "look now" */
  atomic_int drained;
  atomic_int closed;
  size_t queued_at_wake[2];
  /* the client's findings */
  char got[64];
  size_t ngot;
  bool eof;
  uint64_t writes;
  bool big_ok;
  size_t big_read;
} g;

static void on_data(fc_conn_t *c, const char *p, size_t n) { (void)c, (void)p, (void)n; }
static void on_eof(fc_conn_t *c) { fc_conn_close(c, false); }
static void on_drained(fc_conn_t *c) {
  (void)c;
  atomic_fetch_add(&g.drained, 1);
}
static void on_closed(fc_conn_t *c) {
  (void)c;
  g.c = NULL;
  atomic_store(&g.closed, 1);
}
static const fc_conn_handler_t conn_h = {on_data, on_eof, on_drained, on_closed};

static fc_frame_t alpha = FC_FRAME_STATIC("alpha|");

/* The byte `i` of the big queue: frame number and offset both show. */
static char big_byte(size_t i) { return (char)('A' + (i / BIG_FRAME_BYTES) % 26 + (i % 7)); }

static void queue_big(fc_conn_t *c) {
  for (size_t f = 0; f < BIG_FRAMES; f++) {
    char *p = malloc(BIG_FRAME_BYTES);
    for (size_t i = 0; i < BIG_FRAME_BYTES; i++) p[i] = big_byte(f * BIG_FRAME_BYTES + i);
    fc_frame_t *fr = fc_frame_take(p, BIG_FRAME_BYTES);
    g.rc[0] |= fc_conn_send(c, fr);
    fc_frame_unref(fr); /* the queue holds its own reference */
  }
}

static void on_accept(fc_conn_t *c) {
  fc_conn_set_handler(c, &conn_h, NULL);
  g.c = c;
  if (g.mode == MODE_ORDER) {
    fc_frame_t *beta = fc_frame_copy("beta|", 5);
    g.rc[0] = fc_conn_send(c, &alpha);
    g.rc[1] = fc_conn_send(c, beta);
    fc_frame_unref(beta);
    g.rc[2] = fc_conn_send_copy(c, "gamma|", 6);
    g.queued[0] = fc_conn_queued(c); /* nothing is written before the loop's check phase */
  } else if (g.mode == MODE_BOUND) {
    fc_conn_set_bound(c, 10);
    g.bound = fc_conn_bound(c);
    fc_frame_t *eight = fc_frame_copy("12345678", 8), *four = fc_frame_copy("abcd", 4);
    g.rc[0] = fc_conn_send(c, eight);
    g.rc[1] = fc_conn_send(c, four); /* 12 > 10: refused, nothing queued */
    g.refs_after_refusal = atomic_load(&four->refs);
    g.queued[0] = fc_conn_queued(c);
    g.rc[2] = fc_conn_send_control(c, "CTRL", 4); /* the bound never refuses control bytes */
    g.queued[1] = fc_conn_queued(c);
    fc_conn_close(c, true);
    g.rc[3] = fc_conn_send(c, four); /* closing */
    fc_frame_unref(eight);
    fc_frame_unref(four);
  } else {
    queue_big(c);
    g.queued[0] = fc_conn_queued(c);
  }
}

/* The drain client's steps, posted to the loop's mailbox. */
static void on_step(fc_loop_t *l, fc_msg_t *m, void *ud) {
  (void)l, (void)m, (void)ud;
  int w = atomic_load(&g.wakes);
  if (w < 2 && g.c) g.queued_at_wake[w] = fc_conn_queued(g.c);
  if (w == 0 && g.c) g.rc[1] = fc_conn_send_copy(g.c, "tail", 4); /* queued behind a write in progress */
  atomic_fetch_add(&g.wakes, 1);
}

static void on_stop(fc_loop_t *l) {
  (void)l;
  if (g.c) fc_conn_close(g.c, false);
}

static void wait_wakes(int n) {
  for (int i = 0; i < 500 && atomic_load(&g.wakes) < n; i++) lb_sleep_ms(5);
}

static void *client(void *arg) {
  (void)arg;
  int fd = lb_connect(g.net, g.mode == MODE_DRAIN ? 4096 : 0);
  if (fd < 0) goto out;
  if (g.mode == MODE_ORDER) {
    g.ngot = lb_read(fd, g.got, sizeof g.got, 17, 2000, &g.eof);
    /* the write's count is taken just after the bytes leave: wait for it */
    for (int i = 0; i < 400 && !atomic_load(&g.drained); i++) lb_sleep_ms(5);
    fc_net_stats_t st;
    fc_net_stats(g.net, &st);
    g.writes = st.writes;
  } else if (g.mode == MODE_BOUND) {
    g.ngot = lb_read(fd, g.got, sizeof g.got, 0, 2000, &g.eof);
  } else {
    lb_sleep_ms(200); /* the server's writes stall on a full socket */
    fc_net_post(g.net, 0, &g.step);
    wait_wakes(1);
    size_t cap = BIG_TOTAL + 64;
    char *buf = malloc(cap);
    g.big_read = lb_read(fd, buf, cap, BIG_TOTAL + 4, 2000, NULL);
    g.big_ok = g.big_read == BIG_TOTAL + 4 && memcmp(buf + BIG_TOTAL, "tail", 4) == 0;
    for (size_t i = 0; g.big_ok && i < BIG_TOTAL; i++) g.big_ok = buf[i] == big_byte(i);
    free(buf);
    for (int i = 0; i < 400 && !atomic_load(&g.drained); i++) lb_sleep_ms(5);
    fc_net_post(g.net, 0, &g.step);
    wait_wakes(2);
  }
  close(fd);
out:
  fc_net_stop(g.net);
  return NULL;
}

static void run(mode_t_ mode) {
  memset(&g, 0, sizeof g);
  g.mode = mode;
  g.net = lb_net((fc_net_handlers_t){.on_accept = on_accept, .on_stop = on_stop});
  assert_non_null(g.net);
  g.step.receiver = (unsigned)fc_net_receiver(g.net, on_step, NULL);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, client, NULL), 0);
  fc_net_run(g.net);
  pthread_join(t, NULL);
  fc_net_free(g.net);
}

static void frames_in_order_one_write(void **state) {
  (void)state;
  run(MODE_ORDER);
  assert_int_equal(g.rc[0], 0);
  assert_int_equal(g.rc[1], 0);
  assert_int_equal(g.rc[2], 0);
  assert_int_equal(g.queued[0], 17);
  assert_int_equal(g.ngot, 17);
  assert_memory_equal(g.got, "alpha|beta|gamma|", 17);
  assert_int_equal(g.writes, 1); /* queued in one tick: one writev */
  assert_int_equal(atomic_load(&g.drained), 1);
  assert_int_equal(atomic_load(&g.closed), 1);
}

static void byte_bound_and_closing(void **state) {
  (void)state;
  run(MODE_BOUND);
  assert_int_equal(g.bound, 10);
  assert_int_equal(g.rc[0], 0);
  assert_int_equal(g.rc[1], -ENOBUFS);
  assert_int_equal(g.refs_after_refusal, 1); /* a refused frame is not referenced */
  assert_int_equal(g.queued[0], 8);
  assert_int_equal(g.rc[2], 0);
  assert_int_equal(g.queued[1], 12);
  assert_int_equal(g.rc[3], -EPIPE);
  /* close(flush) writes what was queued, then the peer sees the end */
  assert_int_equal(g.ngot, 12);
  assert_memory_equal(g.got, "12345678CTRL", 12);
  assert_true(g.eof);
}

static void partial_writes_then_drained(void **state) {
  (void)state;
  run(MODE_DRAIN);
  assert_int_equal(g.rc[0], 0);
  assert_int_equal(g.queued[0], BIG_TOTAL);
  /* while the peer does not read, part of the queue is out and part waits */
  assert_true(g.queued_at_wake[0] > 0);
  assert_true(g.queued_at_wake[0] < BIG_TOTAL);
  assert_int_equal(g.rc[1], 0);
  assert_int_equal(g.big_read, BIG_TOTAL + 4);
  assert_true(g.big_ok); /* every byte in order across the partial writes */
  assert_true(atomic_load(&g.drained) >= 1);
  assert_int_equal(g.queued_at_wake[1], 0);
}

int main(void) {
  fc_log_set_level(FC_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(frames_in_order_one_write),
      cmocka_unit_test(byte_bound_and_closing),
      cmocka_unit_test(partial_writes_then_drained),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
