/* The hub without sockets: history ring eviction, replay, resume, gaps,
 * fan-out through inboxes, and the no-loss/no-duplicate rule at subscribe. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hub/internal.h"

static int notified[4];
static void on_notify(unsigned thread, void *ud) {
  (void)ud;
  notified[thread]++;
}

/* A subscriber that records the ids it was given. */
typedef struct {
  fc_sub_link_t link;
  uint64_t got[64];
  size_t n;
} rec_t;

static void on_deliver(fc_sub_link_t *l, fc_event_t *ev) {
  rec_t *r = l->owner;
  r->got[r->n++] = ev->seq;
}

static fc_hub_t *hub_make(unsigned threads, unsigned retention) {
  memset(notified, 0, sizeof notified);
  return fc_hub_new(&(fc_hub_opts_t){.threads = threads, .retention = retention, .notify = on_notify});
}

/* Publishes one event numbered as src/pub does: the next id and ordinal
 * (the hub gives none of its own). */
static uint64_t pub(fc_hub_t *hub, fc_channel_t *ch, const char *data) {
  fc_event_in_t in = {.data = {data, strlen(data)},
                      .is_json = false,
                      .seq = fc_hub_last_seq(hub) + 1,
                      .n = fc_channel_next_n(hub, ch),
                      .time_ms = fc_now_ms()};
  fc_publish_result_t r;
  fc_hub_publish(hub, ch, &in, 1, &r);
  return r.last_seq;
}

static void rec_init(rec_t *r, fc_channel_t *ch) {
  memset(r, 0, sizeof *r);
  r->link.channel = ch;
  r->link.deliver = on_deliver;
  r->link.owner = r;
}

static void eviction_keeps_newest(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 3);
  fc_channel_t *ch = fc_hub_channel(hub, "a", 1, true);
  for (int i = 0; i < 5; i++) pub(hub, ch, "x");
  fc_backlog_t h;
  fc_hub_history(hub, ch, 0, 100, &h);
  assert_int_equal(h.nevents, 3);
  assert_int_equal(h.events[0]->seq, 3);
  assert_int_equal(h.events[2]->seq, 5);
  assert_int_equal(h.events[2]->n, 5); /* ordinal within the channel */
  fc_backlog_dispose(&h);
  fc_hub_history(hub, ch, 3, 1, &h); /* after + limit */
  assert_int_equal(h.nevents, 1);
  assert_int_equal(h.events[0]->seq, 4);
  fc_backlog_dispose(&h);
  fc_hub_free(hub);
}

static void replay_newest_n(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 10);
  fc_channel_t *ch = fc_hub_channel(hub, "a", 1, true);
  for (int i = 0; i < 5; i++) pub(hub, ch, "x");
  rec_t r;
  rec_init(&r, ch);
  fc_sub_link_t *links[] = {&r.link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.replay = 2}, &b);
  assert_int_equal(b.nevents, 2);
  assert_int_equal(b.events[0]->seq, 4);
  assert_int_equal(b.events[1]->seq, 5);
  assert_int_equal(b.ngaps, 0);
  fc_backlog_dispose(&b);
  fc_hub_unsubscribe(hub, 0, &r.link);
  fc_hub_free(hub);
}

static void resume_after_id(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 10);
  fc_channel_t *ch = fc_hub_channel(hub, "a", 1, true);
  for (int i = 0; i < 5; i++) pub(hub, ch, "x");
  rec_t r;
  rec_init(&r, ch);
  fc_sub_link_t *links[] = {&r.link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.has_after = true, .after = 3}, &b);
  assert_int_equal(b.nevents, 2);
  assert_int_equal(b.events[0]->seq, 4);
  assert_int_equal(b.ngaps, 0);
  fc_backlog_dispose(&b);
  fc_hub_unsubscribe(hub, 0, &r.link);
  assert_null(r.link.channel);
  /* Resuming at the newest id gives nothing, and no gap. */
  r.link.channel = ch;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.has_after = true, .after = 5}, &b);
  assert_int_equal(b.nevents, 0);
  assert_int_equal(b.ngaps, 0);
  fc_backlog_dispose(&b);
  fc_hub_unsubscribe(hub, 0, &r.link);
  fc_hub_free(hub);
}

static void gap_counts_evicted(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 3);
  fc_channel_t *ch = fc_hub_channel(hub, "a", 1, true);
  for (int i = 0; i < 6; i++) pub(hub, ch, "x"); /* 1..3 evicted, 4..6 kept */
  rec_t r;
  rec_init(&r, ch);
  fc_sub_link_t *links[] = {&r.link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.has_after = true, .after = 1}, &b);
  assert_int_equal(b.ngaps, 1);
  assert_int_equal(b.gaps[0].lost, 2); /* ids 2 and 3 */
  assert_true(b.gaps[0].exact);
  assert_int_equal(b.gaps[0].next_seq, 4);
  assert_int_equal(b.nevents, 3);
  fc_backlog_dispose(&b);
  fc_hub_unsubscribe(hub, 0, &r.link);
  /* From before the first event: everything evicted was lost. */
  r.link.channel = ch;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.has_after = true, .after = 0}, &b);
  assert_int_equal(b.ngaps, 1);
  assert_int_equal(b.gaps[0].lost, 3);
  assert_true(b.gaps[0].exact);
  fc_backlog_dispose(&b);
  fc_hub_unsubscribe(hub, 0, &r.link);
  fc_hub_free(hub);
}

static void gap_beyond_window_is_a_bound(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 2);
  fc_channel_t *ch = fc_hub_channel(hub, "a", 1, true);
  fc_channel_t *other = fc_hub_channel(hub, "b", 1, true);
  pub(hub, ch, "x");                             /* 1 */
  uint64_t mark = pub(hub, other, "y");          /* 2, in another channel */
  for (int i = 0; i < 8; i++) pub(hub, ch, "x"); /* 3..10: 7 of ch's 9 evicted */
  rec_t r;
  rec_init(&r, ch);
  fc_sub_link_t *links[] = {&r.link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.has_after = true, .after = mark}, &b);
  assert_int_equal(b.ngaps, 1);
  /* 6 were lost (3..8); the window remembers the last 2 evicted ids only. */
  assert_false(b.gaps[0].exact);
  assert_true(b.gaps[0].lost >= 2 && b.gaps[0].lost <= 6);
  fc_backlog_dispose(&b);
  fc_hub_unsubscribe(hub, 0, &r.link);
  fc_hub_free(hub);
}

static void live_fanout_without_duplicates(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(2, 10);
  fc_channel_t *ch = fc_hub_channel(hub, "a", 1, true);
  rec_t a, b2, c;
  rec_init(&a, ch);
  rec_init(&b2, ch);
  rec_init(&c, ch);
  fc_sub_link_t *la[] = {&a.link}, *lb[] = {&b2.link}, *lc[] = {&c.link};
  fc_backlog_t bl;
  fc_hub_subscribe(hub, 0, la, 1, &(fc_resume_t){.replay = 0}, &bl);
  fc_backlog_dispose(&bl);
  fc_hub_subscribe(hub, 1, lc, 1, &(fc_resume_t){.replay = 0}, &bl);
  fc_backlog_dispose(&bl);
  uint64_t id = pub(hub, ch, "x"); /* queued for threads 0 and 1 */
  assert_int_equal(notified[0], 1);
  assert_int_equal(notified[1], 1);
  /* b subscribes while the event is still in thread 0's inbox: it gets it in
   * its backlog, and must not get it a second time from the inbox. */
  fc_hub_subscribe(hub, 0, lb, 1, &(fc_resume_t){.replay = 5}, &bl);
  assert_int_equal(bl.nevents, 1);
  assert_int_equal(bl.events[0]->seq, id);
  fc_backlog_dispose(&bl);
  fc_hub_drain(hub, 0);
  fc_hub_drain(hub, 1);
  assert_int_equal(a.n, 1);
  assert_int_equal(a.got[0], id);
  assert_int_equal(b2.n, 0);
  assert_int_equal(c.n, 1);
  /* Unsubscribed links get nothing more; nothing is queued for empty threads. */
  fc_hub_unsubscribe(hub, 1, &c.link);
  pub(hub, ch, "y");
  assert_int_equal(notified[1], 1);
  fc_hub_drain(hub, 0);
  assert_int_equal(a.n, 2);
  assert_int_equal(b2.n, 1);
  fc_hub_unsubscribe(hub, 0, &a.link);
  fc_hub_unsubscribe(hub, 0, &b2.link);
  fc_hub_free(hub);
}

static void multi_channel_backlog_in_id_order(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 10);
  fc_channel_t *x = fc_hub_channel(hub, "x", 1, true), *y = fc_hub_channel(hub, "y", 1, true);
  pub(hub, x, "1");
  pub(hub, y, "2");
  pub(hub, x, "3");
  pub(hub, y, "4");
  rec_t rx, ry;
  rec_init(&rx, x);
  rec_init(&ry, y);
  fc_sub_link_t *links[] = {&rx.link, &ry.link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 2, &(fc_resume_t){.has_after = true, .after = 1}, &b);
  assert_int_equal(b.nevents, 3);
  assert_int_equal(b.events[0]->seq, 2);
  assert_int_equal(b.events[1]->seq, 3);
  assert_int_equal(b.events[2]->seq, 4);
  fc_backlog_dispose(&b);
  fc_hub_unsubscribe(hub, 0, &rx.link);
  fc_hub_unsubscribe(hub, 0, &ry.link);
  fc_hub_free(hub);
}

static void purge_and_list(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 10);
  fc_channel_t *b = fc_hub_channel(hub, "b", 1, true);
  fc_hub_channel(hub, "a", 1, true);
  pub(hub, b, "1");
  uint64_t last = pub(hub, b, "2");
  size_t n;
  fc_channel_info_t *list = fc_hub_list(hub, "", 10, &n);
  assert_int_equal(n, 2);
  assert_string_equal(list[0].name, "a");
  assert_int_equal(list[1].retained, 2);
  assert_int_equal(list[1].last_seq, last);
  free(list);
  fc_hub_purge(hub, b, UINT64_MAX);
  fc_backlog_t h;
  fc_hub_history(hub, b, 0, 100, &h);
  assert_int_equal(h.nevents, 0);
  fc_backlog_dispose(&h);
  assert_true(pub(hub, b, "3") > last); /* ids keep increasing */
  assert_null(fc_hub_channel(hub, "nope", 4, false));
  assert_null(fc_hub_channel(hub, "bad name", 8, true));
  fc_hub_free(hub);
}

static void many_channels_grow_table(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 1);
  char name[32];
  for (int i = 0; i < 1000; i++) {
    int n = snprintf(name, sizeof name, "c%d", i);
    pub(hub, fc_hub_channel(hub, name, (size_t)n, true), "x");
  }
  for (int i = 0; i < 1000; i++) {
    int n = snprintf(name, sizeof name, "c%d", i);
    fc_channel_t *ch = fc_hub_channel(hub, name, (size_t)n, false);
    assert_non_null(ch);
    assert_string_equal(fc_channel_name(ch), name);
  }
  assert_int_equal(fc_hub_last_seq(hub), 1000);
  fc_hub_free(hub);
}

/* ---- channel lifetime ---------------------------------------------------- */

#define LATER (fc_mono_ms() + 3600 * 1000) /* a sweep time past any idle limit */

static void unused_channels_are_swept(void **state) {
  (void)state;
  fc_hub_t *hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 10, .idle_ms = 1000});
  fc_channel_t *empty = fc_hub_channel(hub, "empty", 5, true);
  fc_channel_t *kept = fc_hub_channel(hub, "kept", 4, true);
  fc_channel_t *subbed = fc_hub_channel(hub, "subbed", 6, true);
  pub(hub, kept, "x");
  rec_t r;
  rec_init(&r, subbed);
  fc_sub_link_t *links[] = {&r.link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.replay = 0}, &b);
  fc_backlog_dispose(&b);
  fc_channel_unref(empty);
  fc_channel_unref(subbed);
  assert_int_equal(fc_hub_sweep(hub, fc_mono_ms()), 0); /* not idle long enough yet */
  assert_int_equal(fc_hub_sweep(hub, LATER), 1);        /* only "empty" */
  assert_int_equal(fc_hub_channel_count(hub), 2);
  assert_null(fc_hub_channel(hub, "empty", 5, false));
  /* Without storage, retained events are the only copy: "kept" stays unreferenced. */
  fc_channel_unref(kept);
  assert_int_equal(fc_hub_sweep(hub, LATER), 0);
  /* A subscriber keeps its channel; once it leaves, the channel may go. */
  fc_hub_unsubscribe(hub, 0, &r.link);
  assert_int_equal(fc_hub_sweep(hub, LATER), 1);
  assert_int_equal(fc_hub_channel_count(hub), 1);
  fc_hub_free(hub);
}

/* A toy store: one channel's events, loaded through the hub's hook. */
typedef struct {
  const char *name;
  uint64_t first_seq, last_seq, next_n;
  fc_event_in_t evs[16];
  size_t n;
  int loads;
  fc_hub_t *hub; /* checked: its lock is not held while storage is read */
} toy_store_t;

static int toy_load(void *ud, fc_channel_t *ch, unsigned limit) {
  toy_store_t *t = ud;
  t->loads++;
  if (t->hub) {
    assert_int_equal(pthread_mutex_trylock(&t->hub->lock), 0);
    pthread_mutex_unlock(&t->hub->lock);
  }
  if (strcmp(fc_channel_name(ch), t->name)) return 0;
  fc_hub_restore_counters(ch, t->first_seq, t->last_seq, t->next_n);
  size_t from = t->n > limit ? t->n - limit : 0;
  for (size_t i = from; i < t->n; i++) fc_hub_restore_event(ch, &t->evs[i]);
  return 1;
}

/* Publishes through the toy store (ids, ordinals and time given, as the store's writer does). */
static uint64_t toy_pub(fc_hub_t *hub, toy_store_t *t, fc_channel_t *ch) {
  fc_event_in_t in = {.data = {"d", 1}, .seq = fc_hub_last_seq(hub) + 1, .n = fc_channel_next_n(hub, ch), .time_ms = 1};
  t->evs[t->n++] = in;
  if (!t->first_seq) t->first_seq = in.seq;
  t->last_seq = in.seq;
  t->next_n = in.n + 1;
  fc_publish_result_t r;
  fc_hub_publish(hub, ch, &in, 1, &r);
  return r.last_seq;
}

static void stored_channel_comes_back(void **state) {
  (void)state;
  toy_store_t t = {.name = "s"};
  fc_hub_t *hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 2, .load = toy_load, .load_ud = &t});
  t.hub = hub;
  fc_channel_t *ch;
  assert_int_equal(fc_hub_open(hub, "other", 5, 0, &ch), -ENOENT); /* unknown to storage */
  assert_int_equal(fc_hub_open(hub, "s", 1, FC_HUB_CREATE, &ch), 0);
  uint64_t ids[5];
  for (int i = 0; i < 5; i++) ids[i] = toy_pub(hub, &t, ch);
  /* An event held outside the history keeps the channel in memory. */
  fc_backlog_t held;
  fc_hub_history(hub, ch, 0, 10, &held);
  fc_channel_unref(ch);
  assert_int_equal(fc_hub_sweep(hub, LATER), 0);
  fc_backlog_dispose(&held);
  assert_int_equal(fc_hub_sweep(hub, LATER), 1); /* storage has its events */
  assert_int_equal(fc_hub_channel_count(hub), 0);

  /* Back: same history, next ordinal, gaps; ids continue. */
  int loads = t.loads;
  assert_int_equal(fc_hub_open(hub, "s", 1, 0, &ch), 0);
  assert_int_equal(t.loads, loads + 1);
  assert_int_equal(fc_channel_next_n(hub, ch), 6);
  fc_backlog_t h;
  fc_hub_history(hub, ch, 0, 10, &h);
  assert_int_equal(h.nevents, 2);
  assert_int_equal(h.events[0]->seq, ids[3]);
  assert_int_equal(h.events[1]->n, 5);
  fc_backlog_dispose(&h);
  rec_t r;
  rec_init(&r, ch);
  fc_sub_link_t *links[] = {&r.link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){.has_after = true, .after = ids[1]}, &b);
  assert_int_equal(b.ngaps, 1);
  assert_int_equal(b.gaps[0].lost, 1); /* ids[2] */
  assert_true(b.gaps[0].exact);
  assert_int_equal(b.nevents, 2);
  fc_backlog_dispose(&b);
  assert_true(toy_pub(hub, &t, ch) > ids[4]);
  fc_hub_unsubscribe(hub, 0, &r.link);
  fc_channel_unref(ch);
  fc_hub_free(hub);
}

static void cap_refuses_new_channels(void **state) {
  (void)state;
  fc_hub_t *hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 4, .max_channels = 2});
  fc_channel_t *a, *b, *c;
  assert_int_equal(fc_hub_open(hub, "a", 1, FC_HUB_CREATE, &a), 0);
  assert_int_equal(fc_hub_open(hub, "b", 1, FC_HUB_CREATE, &b), 0);
  assert_int_equal(fc_hub_open(hub, "c", 1, FC_HUB_CREATE, &c), -EMFILE);
  assert_null(c);
  assert_int_equal(fc_hub_open(hub, "c", 1, 0, &c), -ENOENT);
  assert_int_equal(fc_hub_open(hub, "a", 1, FC_HUB_CREATE, &c), 0); /* existing ones still open */
  assert_ptr_equal(c, a);
  fc_channel_unref(c);
  assert_int_equal(fc_hub_channel_count(hub), 2);
  /* The server's own channels pass the cap. */
  assert_int_equal(fc_hub_open(hub, "job.x", 5, FC_HUB_CREATE | FC_HUB_NOCAP, &c), 0);
  assert_int_equal(fc_hub_channel_count(hub), 3);
  /* What a refused request opened goes at once. */
  fc_hub_drop(hub, c);
  fc_hub_drop(hub, b);
  assert_int_equal(fc_hub_channel_count(hub), 1);
  assert_int_equal(fc_hub_open(hub, "c", 1, FC_HUB_CREATE, &c), 0);
  fc_hub_free(hub);
}

static void list_pages(void **state) {
  (void)state;
  fc_hub_t *hub = hub_make(1, 4);
  const char *names[] = {"m", "b", "z", "a", "k", "c"};
  for (size_t i = 0; i < 6; i++) fc_hub_channel(hub, names[i], 1, true);
  size_t n;
  fc_channel_info_t *p = fc_hub_list(hub, "", 4, &n);
  assert_int_equal(n, 4);
  assert_string_equal(p[0].name, "a");
  assert_string_equal(p[3].name, "k");
  free(p);
  p = fc_hub_list(hub, "k", 4, &n);
  assert_int_equal(n, 2);
  assert_string_equal(p[0].name, "m");
  assert_string_equal(p[1].name, "z");
  free(p);
  p = fc_hub_list(hub, "z", 4, &n);
  assert_int_equal(n, 0);
  free(p);
  fc_hub_free(hub);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(eviction_keeps_newest),
      cmocka_unit_test(replay_newest_n),
      cmocka_unit_test(resume_after_id),
      cmocka_unit_test(gap_counts_evicted),
      cmocka_unit_test(gap_beyond_window_is_a_bound),
      cmocka_unit_test(live_fanout_without_duplicates),
      cmocka_unit_test(multi_channel_backlog_in_id_order),
      cmocka_unit_test(purge_and_list),
      cmocka_unit_test(many_channels_grow_table),
      cmocka_unit_test(unused_channels_are_swept),
      cmocka_unit_test(stored_channel_comes_back),
      cmocka_unit_test(cap_refuses_new_channels),
      cmocka_unit_test(list_pages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
