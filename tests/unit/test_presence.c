/* Presence without sockets: rules, entries and counts, the listing cap, and
 * join/leave notices through the hub (only to links that want them, only to
 * links subscribed when they happened, in order with events, without ids). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "presence/presence.h"

static void on_notify(unsigned thread, void *ud) {
  (void)thread;
  (void)ud;
}

/* A subscriber that records what it was given: "e<id>" or the notice's name. */
typedef struct {
  fc_sub_link_t link;
  char got[16][40];
  size_t n;
} rec_t;

static void on_deliver(fc_sub_link_t *l, fc_event_t *ev) {
  rec_t *r = l->owner;
  if (fc_event_is_notice(ev)) {
    assert_memory_equal(ev->sse.bytes, "event: ", 7); /* no id: line */
    snprintf(r->got[r->n++], sizeof r->got[0], "%s", ev->name);
  } else {
    snprintf(r->got[r->n++], sizeof r->got[0], "e%llu", (unsigned long long)ev->seq);
  }
}

static void sub(fc_hub_t *hub, rec_t *r, fc_channel_t *ch, bool notices) {
  memset(r, 0, sizeof *r);
  r->link = (fc_sub_link_t){.channel = fc_channel_ref(ch), .deliver = on_deliver, .owner = r, .wants_notices = notices};
  fc_sub_link_t *links[] = {&r->link};
  fc_backlog_t b;
  fc_hub_subscribe(hub, 0, links, 1, &(fc_resume_t){0}, &b);
  fc_backlog_dispose(&b);
}

static void unsub(fc_hub_t *hub, rec_t *r) {
  fc_channel_t *ch = r->link.channel;
  fc_hub_unsubscribe(hub, 0, &r->link);
  fc_channel_unref(ch);
}

static void publish(fc_hub_t *hub, fc_channel_t *ch) {
  fc_event_in_t in = {.data = {"x", 1}, .seq = fc_hub_last_seq(hub) + 1, .n = fc_channel_next_n(hub, ch)};
  fc_publish_result_t res;
  fc_hub_publish(hub, ch, &in, 1, &res);
}

static const fc_presence_rule_t rules[] = {{"room.private", false}, {"room.*", true}};

static void rules_and_counts(void **state) {
  (void)state;
  fc_hub_t *hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 10, .notify = on_notify});
  fc_presence_t *p = fc_presence_new(&(fc_presence_opts_t){.hub = hub, .rules = rules, .nrules = 2, .max_entries = 2});
  fc_presence_set_node(p, "n1");
  assert_true(fc_presence_on(p, "room.a"));
  assert_false(fc_presence_on(p, "room.private"));
  assert_false(fc_presence_on(p, "other"));
  assert_false(fc_presence_on(NULL, "room.a"));
  assert_int_equal(fc_presence_check_info("{\"a\":1}", 7), 0);
  assert_int_equal(fc_presence_check_info("{nope", 5), -EINVAL);
  char big[FC_PRESENCE_INFO_MAX + 8];
  memset(big, ' ', sizeof big);
  big[0] = '1';
  assert_int_equal(fc_presence_check_info(big, sizeof big), -EINVAL);

  fc_buf_t b;
  fc_buf_init(&b);
  assert_int_equal(fc_presence_stats(p, "other", &b), -ENOENT);
  fc_channel_t *ch = fc_hub_channel(hub, "room.a", 6, true);
  fc_presence_entry_t *e[3];
  const char *subs[3] = {"alice", "alice", NULL};
  for (int i = 0; i < 3; i++) {
    char conn[FC_PRESENCE_CONN_LEN + 1];
    fc_presence_conn_id(conn);
    assert_int_equal(strlen(conn), FC_PRESENCE_CONN_LEN);
    e[i] = fc_presence_join(p, ch, &(fc_presence_who_t){conn, subs[i], "sse", i ? NULL : "{\"x\":1}", i ? 0 : 7});
  }
  assert_int_equal(fc_presence_stats(p, "room.a", &b), 0);
  fc_buf_append(&b, "", 1);
  assert_string_equal(b.data, "{\"connections\":3,\"users\":2}");
  b.len = 0;
  assert_int_equal(fc_presence_list(p, "room.a", &b), 0);
  fc_buf_append(&b, "", 1);
  assert_non_null(strstr(b.data, "\"truncated\":true"));
  assert_non_null(strstr(b.data, "\"info\":{\"x\":1}"));
  assert_null(strstr(b.data, "anonymous")); /* the third entry is past the cap */
  fc_presence_leave(p, e[0]);
  b.len = 0;
  assert_int_equal(fc_presence_list(p, "room.a", &b), 0);
  fc_buf_append(&b, "", 1);
  assert_non_null(strstr(b.data, "\"sub\":\"anonymous\""));
  assert_non_null(strstr(b.data, "\"truncated\":false"));
  assert_non_null(strstr(b.data, "\"node\":\"n1\""));
  fc_presence_leave(p, e[1]);
  fc_presence_leave(p, e[2]);
  b.len = 0;
  assert_int_equal(fc_presence_stats(p, "room.a", &b), 0);
  fc_buf_append(&b, "", 1);
  assert_string_equal(b.data, "{\"connections\":0,\"users\":0}");
  fc_buf_dispose(&b);
  fc_hub_drain(hub, 0);
  fc_channel_unref(ch);
  fc_presence_free(p);
  fc_hub_free(hub);
}

static void notices_in_order(void **state) {
  (void)state;
  fc_hub_t *hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 10, .notify = on_notify});
  fc_presence_t *p = fc_presence_new(&(fc_presence_opts_t){.hub = hub, .rules = rules, .nrules = 2, .max_entries = 10});
  fc_channel_t *ch = fc_hub_channel(hub, "room.a", 6, true);
  rec_t watcher, quiet, late;
  sub(hub, &watcher, ch, true);
  sub(hub, &quiet, ch, false);
  fc_presence_entry_t *a = fc_presence_join(p, ch, &(fc_presence_who_t){"c1", "a", "ws", NULL, 0});
  publish(hub, ch);
  sub(hub, &late, ch, true); /* the join above and e1 were queued before it */
  fc_presence_leave(p, a);
  publish(hub, ch);
  fc_hub_drain(hub, 0);
  assert_int_equal(watcher.n, 4);
  assert_string_equal(watcher.got[0], "flowcast.join");
  assert_string_equal(watcher.got[1], "e1");
  assert_string_equal(watcher.got[2], "flowcast.leave");
  assert_string_equal(watcher.got[3], "e2");
  assert_int_equal(quiet.n, 2);
  assert_string_equal(quiet.got[0], "e1");
  assert_int_equal(late.n, 2);
  assert_string_equal(late.got[0], "flowcast.leave");
  assert_string_equal(late.got[1], "e2");
  /* History holds the events only. */
  fc_backlog_t h;
  fc_hub_history(hub, ch, 0, 100, &h);
  assert_int_equal(h.nevents, 2);
  fc_backlog_dispose(&h);
  unsub(hub, &watcher);
  unsub(hub, &quiet);
  unsub(hub, &late);
  fc_channel_unref(ch);
  fc_presence_free(p);
  fc_hub_free(hub);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(rules_and_counts), cmocka_unit_test(notices_in_order)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
