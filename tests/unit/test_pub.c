/* The publish module without sockets: validation of what publishers send,
 * numbering through the memory store, and ids given back when a commit fails. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pub/pub.h"
#include "store/internal.h"

typedef struct {
  fc_hub_t *hub;
  fc_pub_t *pub;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  f->hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 10});
  f->pub = fc_pub_new(&(fc_pub_opts_t){.hub = f->hub, .threads = 1}); /* the memory store */
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  fc_pub_free(f->pub);
  fc_hub_free(f->hub);
  free(f);
  return 0;
}

/* What an answer saw. */
typedef struct {
  int answers, status;
  fc_publish_result_t result;
  size_t count;
  bool batch, purge;
} seen_t;

static void on_answer(fc_pub_op_t *op, void *ud) {
  seen_t *s = ud;
  s->answers++;
  s->status = fc_pub_op_status(op);
  s->result = *fc_pub_op_result(op);
  s->count = fc_pub_op_count(op);
  s->batch = fc_pub_op_is_batch(op);
  s->purge = fc_pub_op_is_purge(op);
}

/* Validates a body; returns the error code ("" when accepted). */
static const char *body_error(fixture_t *f, const char *channel, const char *event, const char *mt, const char *body,
                              fc_pub_error_t *err) {
  fc_pub_op_t *op = fc_pub_op_new(f->pub, 0, on_answer, NULL);
  int rc = fc_pub_add_body(op, channel, event, mt, body, strlen(body), err);
  fc_pub_op_free(op);
  return rc == 0 ? "" : err->code;
}

static void body_validation(void **state) {
  fixture_t *f = *state;
  fc_pub_error_t e;
  assert_string_equal(body_error(f, "a", NULL, "", "{\"x\":1}", &e), "");
  assert_string_equal(body_error(f, "a", "bad name", "", "1", &e), "bad_event");
  assert_string_equal(e.message, "event name must match [A-Za-z0-9._:-]{1,128}");
  assert_string_equal(body_error(f, "a/b", NULL, "", "1", &e), "bad_channel");
  assert_string_equal(e.message, "channel name must match [A-Za-z0-9._:-]{1,128}");
  assert_string_equal(body_error(f, "a", NULL, "text/plain", "\xff", &e), "bad_utf8");
  assert_string_equal(body_error(f, "a", NULL, "application/json", "{x", &e), "bad_json");
  assert_true(!strncmp(e.message, "invalid JSON at line 1 column ", 30));
  /* Text is not parsed; a form type counts as JSON (curl -d). */
  assert_string_equal(body_error(f, "a", NULL, "text/plain", "{x", &e), "");
  assert_string_equal(body_error(f, "a", NULL, "application/x-www-form-urlencoded", "{x", &e), "bad_json");
  assert_string_equal(body_error(f, "a", NULL, "application/vnd.x+json", "[1]", &e), "");
}

static void ndjson_validation(void **state) {
  fixture_t *f = *state;
  fc_pub_error_t e;
  const char *mt = "application/x-ndjson";
  assert_string_equal(body_error(f, "a", NULL, mt, "\n  \n", &e), "empty_batch");
  assert_string_equal(body_error(f, "a", NULL, mt, "{\"data\":1}\n{\"event\":\"x\"}\n", &e), "bad_json");
  assert_string_equal(e.message, "line 2: missing \"data\"");
  assert_string_equal(body_error(f, "a", NULL, mt, "[1]", &e), "bad_json");
  assert_string_equal(e.message, "line 1: expected an object {\"data\": ..., \"event\": ...}");
  assert_string_equal(body_error(f, "a", NULL, mt, "{\"data\":1,\"event\":\"a b\"}", &e), "bad_event");
  assert_string_equal(e.message, "line 1: event name must match [A-Za-z0-9._:-]{1,128}");
  /* jansson refuses \u0000 in a line (no JSON_ALLOW_NUL). */
  assert_string_equal(body_error(f, "a", NULL, mt, "{\"data\":\"a\\u0000b\"}", &e), "bad_json");
}

static void json_event(void **state) {
  (void)state;
  fc_pub_event_t ev;
  json_t *j = json_loads("{\"event\":\"e\",\"data\":{\"a\":[1,2]}}", 0, NULL);
  assert_int_equal(fc_pub_json_event(j, &ev), FC_PUB_OK);
  assert_true(ev.is_json);
  assert_string_equal(ev.data.base, "{\"a\":[1,2]}");
  assert_int_equal(ev.name.len, 1);
  fc_pub_event_dispose(&ev);
  json_decref(j);
  j = json_loads("{\"event\":null,\"data\":\"text\"}", 0, NULL);
  assert_int_equal(fc_pub_json_event(j, &ev), FC_PUB_OK);
  assert_false(ev.is_json);
  assert_int_equal(ev.name.len, 0);
  assert_string_equal(ev.data.base, "text");
  fc_pub_event_dispose(&ev);
  json_decref(j);
  j = json_loads("{\"event\":7,\"data\":1}", 0, NULL);
  assert_int_equal(fc_pub_json_event(j, &ev), FC_PUB_BAD_EVENT);
  fc_pub_event_dispose(&ev);
  json_decref(j);
  j = json_loads("{\"event\":\"e\"}", 0, NULL);
  assert_int_equal(fc_pub_json_event(j, &ev), FC_PUB_NO_DATA);
  fc_pub_event_dispose(&ev);
  json_decref(j);
  j = json_loads("{\"data\":\"a\\u0000b\"}", JSON_ALLOW_NUL, NULL);
  assert_int_equal(fc_pub_json_event(j, &ev), FC_PUB_DATA_NUL);
  fc_pub_event_dispose(&ev);
  json_decref(j);
}

/* Publishes `body` (NDJSON when it holds a newline) to `channel` and
 * returns what the answer saw. */
static seen_t publish(fixture_t *f, const char *channel, const char *body) {
  seen_t s = {0};
  fc_pub_op_t *op = fc_pub_op_new(f->pub, 0, on_answer, &s);
  fc_pub_error_t e;
  const char *mt = strchr(body, '\n') ? "application/x-ndjson" : "";
  assert_int_equal(fc_pub_add_body(op, channel, NULL, mt, body, strlen(body), &e), 0);
  assert_int_equal(fc_pub_open(op, channel, strlen(channel), FC_HUB_CREATE), 0);
  fc_pub_submit(op);
  return s;
}

static void memory_mode_numbers_and_answers_at_once(void **state) {
  fixture_t *f = *state;
  seen_t s = publish(f, "a", "1");
  assert_int_equal(s.answers, 1); /* the memory store commits inside submit */
  assert_int_equal(s.status, 0);
  assert_int_equal(s.result.first_seq, 1);
  assert_int_equal(s.result.last_seq, 1);
  s = publish(f, "b", "{\"data\":1}\n{\"data\":2}\n{\"data\":3}\n");
  assert_true(s.batch);
  assert_int_equal(s.count, 3);
  assert_int_equal(s.result.first_seq, 2);
  assert_int_equal(s.result.last_seq, 4);
  s = publish(f, "a", "2");
  assert_int_equal(s.result.last_seq, 5);
  assert_int_equal(fc_pub_published(f->pub), 5);
  /* The hub has them with their ordinals. */
  fc_channel_t *ch = fc_hub_channel(f->hub, "a", 1, false);
  fc_backlog_t h;
  fc_hub_history(f->hub, ch, 0, 10, &h);
  assert_int_equal(h.nevents, 2);
  assert_int_equal(h.events[1]->seq, 5);
  assert_int_equal(h.events[1]->n, 2);
  fc_backlog_dispose(&h);
  /* A purge empties the history; ids go on. */
  seen_t p = {0};
  fc_pub_op_t *op = fc_pub_op_new(f->pub, 0, on_answer, &p);
  assert_int_equal(fc_pub_open(op, "a", 1, 0), 0);
  fc_pub_set_purge(op);
  fc_pub_submit(op);
  assert_int_equal(p.answers, 1);
  assert_true(p.purge);
  fc_hub_history(f->hub, ch, 0, 10, &h);
  assert_int_equal(h.nevents, 0);
  fc_backlog_dispose(&h);
  assert_int_equal(publish(f, "a", "3").result.last_seq, 6);
  assert_int_equal(fc_channel_next_n(f->hub, ch), 4);
  fc_channel_unref(ch);
}

static void unopened_channel_is_an_error(void **state) {
  fixture_t *f = *state;
  seen_t s = {0};
  fc_pub_op_t *op = fc_pub_op_new(f->pub, 0, on_answer, &s);
  fc_pub_add(op, (fc_str_t){"", 0}, (fc_str_t){"x", 1}, false);
  fc_pub_submit(op);
  assert_int_equal(s.answers, 1);
  assert_int_equal(s.status, -EIO);
}

/* A store whose commits fail on demand, then run like the memory store;
 * answers are drained from the loop's queue when they come from elsewhere. */
typedef struct {
  fc_store_t base;
  bool fail;
  fc_store_batch_t *held[4]; /* appended, not committed yet */
  size_t nheld;
} flaky_t;

static uint64_t flaky_last(fc_store_t *s) {
  (void)s;
  return 100;
}
static void flaky_append(fc_store_t *s, fc_store_batch_t *b) { ((flaky_t *)s)->held[((flaky_t *)s)->nheld++] = b; }

/* Commits what is held as one group: numbers all, then ends all. */
static void flaky_commit(flaky_t *s) {
  for (size_t i = 0; i < s->nheld; i++) s->held[i]->number(s->held[i]);
  for (size_t i = 0; i < s->nheld; i++) {
    s->held[i]->status = s->fail ? -ENOSPC : 0;
    s->held[i]->done(s->held[i]);
  }
  s->nheld = 0;
}

static const fc__store_ops_t flaky_ops = {.last_seq = flaky_last, .append = flaky_append};

static void failed_commit_gives_ids_back(void **state) {
  (void)state;
  flaky_t store = {.base = {&flaky_ops}, .fail = true};
  fc_hub_t *hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 10});
  /* A real net whose loop never runs: answers wait in its mailbox until
   * fc_net_deliver_rest runs them on this thread. */
  char err[256] = "";
  fc_net_t *net =
      fc_net_new(&(fc_net_opts_t){.host = "127.0.0.1", .threads = 1, .fd_reserve = 16}, NULL, err, sizeof err);
  assert_non_null(net);
  fc_pub_t *pub = fc_pub_new(&(fc_pub_opts_t){.hub = hub, .store = &store.base, .threads = 1, .net = net});
  assert_int_equal(fc_hub_last_seq(hub), 100); /* restored from storage */
  seen_t s[4] = {0};
  for (int i = 0; i < 3; i++) {
    fc_pub_op_t *op = fc_pub_op_new(pub, 0, on_answer, &s[i]);
    fc_pub_add(op, (fc_str_t){"", 0}, (fc_str_t){"x", 1}, false);
    fc_pub_add(op, (fc_str_t){"", 0}, (fc_str_t){"y", 1}, false);
    assert_int_equal(fc_pub_open(op, i == 1 ? "b" : "a", 1, FC_HUB_CREATE), 0);
    fc_pub_submit(op);
  }
  flaky_commit(&store); /* the group fails: answered on the loop, from its mailbox */
  assert_int_equal(s[0].answers, 0);
  fc_net_deliver_rest(net);
  for (int i = 0; i < 3; i++) assert_int_equal(s[i].answers, 1);
  for (int i = 0; i < 3; i++) assert_int_equal(s[i].status, -ENOSPC);
  /* The next commit gets the same ids and ordinals: none was burned. */
  store.fail = false;
  fc_pub_op_t *op = fc_pub_op_new(pub, 0, on_answer, &s[3]);
  fc_pub_add(op, (fc_str_t){"", 0}, (fc_str_t){"z", 1}, false);
  assert_int_equal(fc_pub_open(op, "a", 1, FC_HUB_CREATE), 0);
  fc_pub_submit(op);
  flaky_commit(&store);
  fc_net_deliver_rest(net);
  assert_int_equal(s[3].status, 0);
  assert_int_equal(s[3].result.first_seq, 101);
  fc_channel_t *ch = fc_hub_channel(hub, "a", 1, false);
  assert_int_equal(fc_channel_next_n(hub, ch), 2);
  fc_channel_unref(ch);
  fc_pub_free(pub);
  fc_net_free(net);
  fc_hub_free(hub);
}

/* ---- the memory store alone ---------------------------------------------- */

typedef struct {
  char log[64];
  uint64_t next;
} mem_probe_t;

static void probe_number(fc_store_batch_t *b) {
  mem_probe_t *p = b->ud;
  strcat(p->log, "n");
  for (size_t i = 0; i < b->n; i++) b->events[i].seq = ++p->next;
}

static void probe_done(fc_store_batch_t *b) {
  mem_probe_t *p = b->ud;
  strcat(p->log, b->status == 0 ? "d" : "F");
}

static void memory_store(void **state) {
  (void)state;
  fc_store_t *s = fc_store_memory_new();
  assert_false(fc_store_durable(s));
  assert_int_equal(fc_store_last_seq(s), 0);
  mem_probe_t p = {.next = 41};
  fc_store_event_t evs[2] = {{.data = {"a", 1}}, {.data = {"b", 1}}};
  fc_store_batch_t b = {.channel = "c", .events = evs, .n = 2, .number = probe_number, .done = probe_done, .ud = &p};
  fc_store_append(s, &b);
  assert_string_equal(p.log, "nd"); /* numbered, then ended, before append returned */
  assert_int_equal(evs[1].seq, 43);
  assert_int_equal(fc_store_last_seq(s), 43);
  fc_store_batch_t purge = {.channel = "c", .purge = true, .number = probe_number, .done = probe_done, .ud = &p};
  fc_store_append(s, &purge);
  assert_string_equal(p.log, "ndd"); /* a purge is not numbered */
  fc_store_channel_t c;
  assert_int_equal(fc_store_load(s, "c", 10, &c, NULL, NULL), 0); /* it keeps nothing */
  assert_int_equal(fc_store_channels(s, "", 10, NULL, NULL), 0);
  fc_store_stats_t st;
  assert_false(fc_store_stats(s, &st));
  fc_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(body_validation, setup, teardown),
      cmocka_unit_test_setup_teardown(ndjson_validation, setup, teardown),
      cmocka_unit_test(json_event),
      cmocka_unit_test_setup_teardown(memory_mode_numbers_and_answers_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(unopened_channel_is_an_error, setup, teardown),
      cmocka_unit_test(failed_commit_gives_ids_back),
      cmocka_unit_test(memory_store),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
