/* The loops' mailboxes over a real two-loop net: messages posted from other
 * threads run on the loop they were posted to, in the order they were posted,
 * each by its own receiver; a message may be posted again by its receiver;
 * what is left when the loops end runs in fc_net_deliver_rest
 * (src/net/mailbox.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "loopback.h"

#define POSTERS 3
#define PER_POSTER 2000
#define REPOSTS 5

typedef struct {
  fc_msg_t msg;
  unsigned poster, seq, loop; /* the loop it was posted to */
} note_t;

/* Written by loop threads (each receiver's record of a loop only by that
 * loop), read by the test after the run. */
static struct {
  fc_net_t *net;
  int rx_note, rx_echo;
  note_t notes[POSTERS][PER_POSTER];
  unsigned next_seq[2][POSTERS]; /* per loop and poster: the seq expected next */
  unsigned out_of_order, wrong_loop, ran[2];
  fc_msg_t echo;
  atomic_uint echoes;
  atomic_uint done;
  note_t late;
  unsigned late_ran;
} g;

/* Once every note and every echo ran (fc_net_stop may run twice). */
static void maybe_stop(void) {
  if (atomic_load(&g.done) == POSTERS * PER_POSTER && atomic_load(&g.echoes) == REPOSTS) fc_net_stop(g.net);
}

static void on_note(fc_loop_t *l, fc_msg_t *m, void *ud) {
  note_t *n = (note_t *)m;
  unsigned li = fc_loop_index(l);
  if (ud != &g || n->loop != li) g.wrong_loop++;
  if (n == &g.late) {
    g.late_ran++;
    return;
  }
  if (g.next_seq[li][n->poster] > n->seq) g.out_of_order++;
  g.next_seq[li][n->poster] = n->seq + 1;
  g.ran[li]++;
  atomic_fetch_add(&g.done, 1);
  maybe_stop();
}

/* Posts itself again to the same loop until it has run REPOSTS times. */
static void on_echo(fc_loop_t *l, fc_msg_t *m, void *ud) {
  (void)ud;
  if (atomic_fetch_add(&g.echoes, 1) + 1 < REPOSTS) fc_net_post(g.net, fc_loop_index(l), m);
  else maybe_stop();
}

static void *poster(void *arg) {
  unsigned p = (unsigned)(uintptr_t)arg;
  for (unsigned i = 0; i < PER_POSTER; i++) {
    note_t *n = &g.notes[p][i];
    *n = (note_t){.msg.receiver = (unsigned)g.rx_note, .poster = p, .seq = i, .loop = (i + p) % 2};
    fc_net_post(g.net, n->loop, &n->msg);
  }
  return NULL;
}

static void messages_run_in_order_on_their_loop(void **state) {
  (void)state;
  char err[256] = "";
  fc_net_opts_t o = {.host = "127.0.0.1", .port = 0, .threads = 2, .stop_grace_ms = 1000, .fd_reserve = 16};
  g.net = fc_net_new(&o, NULL, err, sizeof err);
  assert_non_null(g.net);
  g.rx_note = fc_net_receiver(g.net, on_note, &g);
  g.rx_echo = fc_net_receiver(g.net, on_echo, NULL);
  assert_int_equal(g.rx_note, 0);
  assert_int_equal(g.rx_echo, 1);
  g.echo.receiver = (unsigned)g.rx_echo;
  fc_net_post(g.net, 1, &g.echo);
  pthread_t t[POSTERS];
  for (unsigned p = 0; p < POSTERS; p++) pthread_create(&t[p], NULL, poster, (void *)(uintptr_t)p);
  fc_net_run(g.net);
  for (unsigned p = 0; p < POSTERS; p++) pthread_join(t[p], NULL);

  /* A message posted after the loops ended runs in fc_net_deliver_rest. */
  g.late = (note_t){.msg.receiver = (unsigned)g.rx_note, .loop = 1};
  fc_net_post(g.net, 1, &g.late.msg);
  assert_int_equal(g.late_ran, 0);
  fc_net_deliver_rest(g.net);
  fc_net_free(g.net);

  assert_int_equal(atomic_load(&g.done), POSTERS * PER_POSTER);
  assert_int_equal(g.ran[0] + g.ran[1], POSTERS * PER_POSTER);
  assert_int_equal(g.ran[0], POSTERS * PER_POSTER / 2);
  assert_int_equal(g.out_of_order, 0);
  assert_int_equal(g.wrong_loop, 0);
  assert_int_equal(g.echoes, REPOSTS);
  assert_int_equal(g.late_ran, 1);
}

static void receivers_are_bounded(void **state) {
  (void)state;
  char err[256] = "";
  fc_net_opts_t o = {.host = "127.0.0.1", .port = 0, .threads = 1, .stop_grace_ms = 1000, .fd_reserve = 16};
  fc_net_t *net = fc_net_new(&o, NULL, err, sizeof err);
  assert_non_null(net);
  for (int i = 0; i < FC_NET_MAX_RECEIVERS; i++) assert_int_equal(fc_net_receiver(net, on_echo, NULL), i);
  assert_int_equal(fc_net_receiver(net, on_echo, NULL), -ENOSPC);
  fc_net_stop(net);
  fc_net_run(net);
  fc_net_free(net);
}

int main(void) {
  fc_log_set_level(FC_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(messages_run_in_order_on_their_loop),
      cmocka_unit_test(receivers_are_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
