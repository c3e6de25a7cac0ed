/* The JSON operations of a WebSocket session. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pub/pub.h"
#include "ws/internal.h"

/* The longest piece of a client's text quoted in an error message (bytes). */
#define QUOTE_MAX 40
#define HELD_MAX (1u << 20) /* bytes of messages held behind a warming op */

/* The length of `s` cut to at most `max` bytes on a character boundary (`s`
 * is UTF-8: a cut never leaves half a character). */
static size_t utf8_prefix(const char *s, size_t max) {
  size_t n = strnlen(s, max + 1);
  if (n <= max) return n;
  n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* s[n] continues a character */
  return n;
}

void fc_ws_error(fc_ws_session_t *s, const char *ref, const char *code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n >= (int)sizeof msg) msg[utf8_prefix(msg, sizeof msg - 1)] = '\0';
  fc__ws_send_error(s, ref, code, msg);
}

void fc_ws_ack(fc_ws_session_t *s, const char *ref, const char *id) {
  json_t *j = json_pack("{s:s}", "type", "ack");
  if (ref) json_object_set_new(j, "ref", json_string(ref));
  if (id) json_object_set_new(j, "id", json_string(id));
  fc__ws_send_json(s, j);
}

/* {"type":"event","channel","id","event","data","from"?} for one event. */
static fc_frame_t *build_event_frame(const fc_event_t *ev) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_puts(&b, "{\"type\":\"event\",");
  fc_event_json_members(&b, ev);
  fc_buf_puts(&b, "}");
  fc_frame_t *f = fc__ws_text_frame(b.data, b.len);
  fc_buf_dispose(&b);
  return f;
}

static void send_event(fc_ws_session_t *s, fc_event_t *ev) {
  if (s->closing || !s->stream) return;
  if (fc_conn_send(s->stream->conn, fc_event_ws_frame(ev, build_event_frame)) == -ENOBUFS) {
    fc__ws_close(s, 1008, "too slow");
    return;
  }
  atomic_fetch_add_explicit(&s->ws->loops[s->thread].delivered, 1, memory_order_relaxed);
}

/* {"type":"event","channel","event","data"} for a presence notice: no id. */
static fc_frame_t *build_notice_frame(const fc_event_t *ev) {
  fc_buf_t b;
  fc_buf_init(&b);
  const char *name = fc_channel_name(ev->channel);
  fc_buf_puts(&b, "{\"type\":\"event\",\"channel\":");
  fc_json_quote(&b, name, strlen(name));
  fc_buf_puts(&b, ",\"event\":");
  fc_json_quote(&b, ev->name, ev->name_len);
  fc_buf_puts(&b, ",\"data\":");
  fc_buf_append(&b, ev->data, ev->data_len);
  fc_buf_puts(&b, "}");
  fc_frame_t *f = fc__ws_text_frame(b.data, b.len);
  fc_buf_dispose(&b);
  return f;
}

static void on_event(fc_sub_link_t *link, fc_event_t *ev) {
  fc_ws_session_t *s = link->owner;
  if (!fc_event_is_notice(ev)) {
    send_event(s, ev);
    return;
  }
  ws_sub_t *sub = (ws_sub_t *)link;
  if (!sub->join_leave || s->closing || !s->stream) return;
  if (fc_conn_send(s->stream->conn, fc_event_ws_frame(ev, build_notice_frame)) == -ENOBUFS)
    fc__ws_close(s, 1008, "too slow");
}

void fc__ws_subscribe(fc_ws_session_t *s, fc_channel_t *ch, const fc_resume_t *from, const char *ref,
                      const ws_presence_ask_t *ask) {
  json_t *ok = json_pack("{s:s,s:s}", "type", "subscribed", "channel", fc_channel_name(ch));
  if (ref) json_object_set_new(ok, "ref", json_string(ref));
  if (fc__ws_sub_find(s, fc_channel_name(ch))) { /* already: say so again, give nothing twice */
    fc__ws_send_json(s, ok);
    return;
  }
  ws_sub_t *sub = fc__ws_sub_add(s, fc_channel_name(ch));
  sub->link.channel = ch;
  sub->link.deliver = on_event;
  sub->link.owner = s;
  sub->join_leave = ask && ask->join_leave;
  sub->link.wants_notices = sub->join_leave;
  fc_sub_link_t *links[] = {&sub->link};
  fc_backlog_t b;
  fc_hub_subscribe(s->ws->opts.hub, s->thread, links, 1, from, &b);
  fc__ws_send_json(s, ok);
  for (size_t i = 0; i < b.ngaps; i++) {
    char next[24] = "";
    snprintf(next, sizeof next, "%llu", (unsigned long long)b.gaps[i].next_seq);
    fc__ws_send_json(s, json_pack("{s:s,s:s,s:I,s:b,s:s?}", "type", "gap", "channel", fc_channel_name(ch), "lost",
                                  (json_int_t)b.gaps[i].lost, "exact", b.gaps[i].exact, "next",
                                  b.gaps[i].next_seq ? next : NULL));
  }
  for (size_t i = 0; i < b.nevents; i++) send_event(s, b.events[i]);
  fc_backlog_dispose(&b);
  const fc_ws_opts_t *o = &s->ws->opts;
  if (fc_presence_on(o->presence, fc_channel_name(ch))) {
    fc_presence_who_t who = {s->id, o->subject ? o->subject(o->ud, s) : NULL, "ws", ask ? ask->info : NULL,
                             ask ? ask->info_len : 0};
    sub->presence = fc_presence_join(o->presence, ch, &who);
  }
}

void fc__ws_unsubscribe(fc_ws_session_t *s, fc_channel_t *ch, const char *name, const char *ref) {
  ws_sub_t *sub = ch ? fc__ws_sub_take(s, fc_channel_name(ch)) : NULL;
  if (sub) {
    fc__ws_sub_drop(s, sub);
    free(sub);
  }
  json_t *j = json_pack("{s:s,s:s}", "type", "unsubscribed", "channel", name);
  if (ref) json_object_set_new(j, "ref", json_string(ref));
  fc__ws_send_json(s, j);
}

/* Says why an op's channel could not be opened (fc_hub_open's error). */
static void channel_error(fc_ws_session_t *s, const char *ref, int rc) {
  if (rc == -EINVAL) fc_ws_error(s, ref, "bad_channel", "channel name must match [A-Za-z0-9._:-]{1,128}");
  else if (rc == -EMFILE)
    fc_ws_error(s, ref, "too_many_channels", "the server holds its maximum of channels in use: nothing was created");
  else if (rc == -ENOTCONN) fc_ws_error(s, ref, "storage_unavailable", "storage (Redis) is unreachable; retry later");
  else if (rc != -ENOENT) fc_ws_error(s, ref, "storage_error", "storage could not be read; retry later");
}

/* The channel an op names, created when `create`, as a reference the caller
 * releases; sends an error and returns NULL when the name is bad, too many
 * channels are in use, or storage fails (or, without create, it is unknown). */
static fc_channel_t *op_channel(fc_ws_session_t *s, json_t *msg, const char *ref, bool create) {
  const char *name = json_string_value(json_object_get(msg, "channel"));
  if (!name || !fc_channel_name_valid(name, strlen(name))) {
    channel_error(s, ref, -EINVAL);
    return NULL;
  }
  fc_channel_t *ch;
  /* Without create (unsubscribe), a channel not in memory has no subscriber. */
  int rc = fc_hub_open(s->ws->opts.hub, name, strlen(name), create ? FC_HUB_CREATE : FC_HUB_CACHED, &ch);
  if (rc < 0) channel_error(s, ref, rc);
  return ch;
}

/* True (error rate_limited sent) when an op may not make `channel` come to
 * exist now, or (publish) may not publish `events` now. */
static bool create_limited(fc_ws_session_t *s, const char *channel, const char *ref) {
  const fc_ws_opts_t *o = &s->ws->opts;
  uint64_t wait = o->create_wait ? o->create_wait(o->ud, s, channel) : 0;
  if (wait)
    fc_ws_error(s, ref, "rate_limited",
                "this token has created its maximum of new channels for now (--channel-create-limit); retry in %llu ms",
                (unsigned long long)wait);
  return wait != 0;
}

static bool publish_limited(fc_ws_session_t *s, size_t events, const char *ref) {
  const fc_ws_opts_t *o = &s->ws->opts;
  uint64_t wait = o->publish_wait ? o->publish_wait(o->ud, s, events) : 0;
  if (wait)
    fc_ws_error(s, ref, "rate_limited",
                "this token has published its maximum of events for now (--publish-rate); retry in %llu ms",
                (unsigned long long)wait);
  return wait != 0;
}

static void hold(fc_ws_session_t *s, const char *p, size_t n);
static void on_warmed(void *ud);

/* The message being handled on this thread, and whether it runs again after
 * its channel was read (warming() then lets it go on). */
static _Thread_local struct {
  const char *p;
  size_t n;
  bool rerun;
} cur;

/* True when the op in hand must wait for `channel` to be read from storage
 * (fc_pub_warm): it is held, with every message after it, and runs again
 * once the channel is in memory. Ops ask before any side effect. */
static bool warming(fc_ws_session_t *s, const char *channel) {
  if (cur.rerun || !s->stream) return false;
  if (fc_pub_warm(s->ws->opts.hub, s->stream->loop, &channel, 1, on_warmed, s) != 1) return false;
  s->warming = true;
  fc_ws_session_ref(s);
  hold(s, cur.p, cur.n);
  return true;
}

/* Reads a subscribe op's presence part: "joinLeave" (a boolean) and "info"
 * (any JSON, at most FC_PRESENCE_INFO_MAX bytes once compact, written into
 * `buf`, which `ask` then points to). Sends an error and returns -EINVAL
 * when either is bad. */
static int presence_ask(fc_ws_session_t *s, json_t *msg, const char *ref, char buf[FC_PRESENCE_INFO_MAX + 1],
                        ws_presence_ask_t *ask) {
  json_t *info = json_object_get(msg, "info"), *jl = json_object_get(msg, "joinLeave");
  *ask = (ws_presence_ask_t){.join_leave = json_is_true(jl)};
  if (jl && !json_is_boolean(jl)) {
    fc_ws_error(s, ref, "bad_parameter", "joinLeave must be true or false");
    return -EINVAL;
  }
  if (!info) return 0;
  size_t n = json_dumpb(info, buf, FC_PRESENCE_INFO_MAX, JSON_COMPACT | JSON_ENCODE_ANY);
  if (n == 0 || n > FC_PRESENCE_INFO_MAX) {
    fc_ws_error(s, ref, "bad_info", "info must be JSON of at most %d bytes", FC_PRESENCE_INFO_MAX);
    return -EINVAL;
  }
  buf[n] = '\0';
  ask->info = buf;
  ask->info_len = n;
  return 0;
}

static void op_subscribe(fc_ws_session_t *s, json_t *msg, const char *ref) {
  const char *name = json_string_value(json_object_get(msg, "channel"));
  bool valid = name && fc_channel_name_valid(name, strlen(name));
  if (valid && !s->ws->opts.may_subscribe(s->ws->opts.ud, s, name)) {
    fc_ws_error(s, ref, "forbidden", "the token may not subscribe to %s", name);
    return;
  }
  if (valid && s->nsubs >= s->ws->opts.max_subscriptions && !fc__ws_sub_find(s, name)) {
    fc_ws_error(s, ref, "too_many_subscriptions", "this connection has its maximum of %zu subscriptions",
                s->ws->opts.max_subscriptions);
    return;
  }
  fc_resume_t from = {0};
  json_t *last = json_object_get(msg, "lastEventId"), *replay = json_object_get(msg, "replay");
  if (last && !json_is_null(last)) {
    const char *v = json_string_value(last);
    if (!v || fc_parse_u64(v, strlen(v), &from.after) < 0) {
      fc_ws_error(s, ref, "bad_last_event_id", "lastEventId must be an event id (a decimal number in a string)");
      return;
    }
    from.has_after = true;
  }
  if (replay) {
    if (!json_is_integer(replay) || json_integer_value(replay) < 0) {
      fc_ws_error(s, ref, "bad_parameter", "replay must be a whole number");
      return;
    }
    from.replay = json_integer_value(replay) > 1000000 ? 1000000 : (unsigned)json_integer_value(replay);
  }
  ws_presence_ask_t ask;
  char info[FC_PRESENCE_INFO_MAX + 1];
  if (presence_ask(s, msg, ref, info, &ask) < 0) return;
  if (valid && (warming(s, name) || create_limited(s, name, ref))) return;
  fc_channel_t *ch = op_channel(s, msg, ref, true);
  if (ch) fc__ws_subscribe(s, ch, &from, ref, &ask);
  fc_channel_unref(ch); /* a subscription holds it now */
}

/* A publish waiting for its commit: whom to answer. */
typedef struct {
  fc_ws_session_t *session; /* a reference: it may close meanwhile */
  bool has_ref;
  char ref[];
} pending_ack_t;

/* Acks a publish once committed (or says why not), on the session's loop. */
static void on_published(fc_pub_op_t *op, void *ud) {
  pending_ack_t *p = ud;
  const char *ref = p->has_ref ? p->ref : NULL;
  int status = fc_pub_op_status(op);
  if (status == 0) {
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)fc_pub_op_result(op)->last_seq);
    fc_ws_ack(p->session, ref, id);
  } else {
    const char *code, *message;
    fc_pub_failure(status, &code, &message);
    fc_ws_error(p->session, ref, code, "%s", message);
  }
  fc_ws_session_unref(p->session);
  free(p);
}

static void op_publish(fc_ws_session_t *s, json_t *msg, const char *ref) {
  const char *cname = json_string_value(json_object_get(msg, "channel"));
  bool valid = cname && fc_channel_name_valid(cname, strlen(cname));
  if (valid && !s->ws->opts.may_publish(s->ws->opts.ud, s, cname)) {
    fc_ws_error(s, ref, "forbidden", "the token may not publish to %s", cname);
    return;
  }
  if (valid && warming(s, cname)) return;
  size_t rlen = ref ? strlen(ref) : 0;
  pending_ack_t *p = fc_xmalloc(sizeof *p + rlen + 1);
  p->session = s;
  p->has_ref = ref != NULL;
  memcpy(p->ref, ref ? ref : "", rlen + 1);
  fc_pub_op_t *op = fc_pub_op_new(s->ws->opts.pub, s->thread, on_published, p);
  fc_pub_error_t err;
  int rc = fc_pub_add_json(op, msg, (fc_str_t){s->id, strlen(s->id)}, &err);
  if (rc < 0) fc_ws_error(s, ref, err.code, "%s", err.message);
  else if (!valid) channel_error(s, ref, rc = -EINVAL);
  else if (create_limited(s, cname, ref) || publish_limited(s, fc_pub_op_events(op), ref)) rc = -EDQUOT;
  else if ((rc = fc_pub_open(op, cname, strlen(cname), FC_HUB_CREATE)) < 0) /* valid: it may come to exist */
    channel_error(s, ref, rc);
  if (rc < 0) {
    fc_pub_op_free(op);
    free(p);
    return;
  }
  fc_ws_session_ref(s);
  fc_pub_submit(op);
}

static void op_send(fc_ws_session_t *s, json_t *msg, const char *ref) {
  if (!s->ws->opts.may_send(s->ws->opts.ud, s)) {
    fc_ws_error(s, ref, "forbidden", "the token may not send direct messages (it needs the send right)");
    return;
  }
  const char *to = json_string_value(json_object_get(msg, "to"));
  json_t *data = json_object_get(msg, "data");
  if (!to || !data) {
    fc_ws_error(s, ref, "bad_message", "send needs \"to\" (a connection id) and \"data\"");
    return;
  }
  if (fc_ws_send_direct(s->ws, to, s->id, data) < 0) {
    fc_ws_error(s, ref, "no_such_connection", "no connection %.*s", (int)utf8_prefix(to, QUOTE_MAX), to);
    return;
  }
  fc_ws_ack(s, ref, NULL);
}

static void handle(fc_ws_session_t *s, const char *p, size_t n) {
  cur.p = p;
  cur.n = n;
  json_error_t e;
  json_t *msg = json_loadb(p, n, 0, &e);
  const char *ref = json_string_value(json_object_get(msg, "ref"));
  const char *op = json_string_value(json_object_get(msg, "op"));
  if (!json_is_object(msg)) {
    fc_ws_error(s, NULL, "bad_json", "expected a JSON object: %s", msg ? "not an object" : e.text);
  } else if (!op) {
    fc_ws_error(s, ref, "bad_message", "missing \"op\"");
  } else if (!strcmp(op, "subscribe")) {
    op_subscribe(s, msg, ref);
  } else if (!strcmp(op, "unsubscribe")) {
    const char *name = json_string_value(json_object_get(msg, "channel"));
    fc_channel_t *ch = op_channel(s, msg, ref, false);
    if (ch || (name && fc_channel_name_valid(name, strlen(name)))) fc__ws_unsubscribe(s, ch, name, ref);
    fc_channel_unref(ch);
  } else if (!strcmp(op, "publish")) {
    op_publish(s, msg, ref);
  } else if (!strcmp(op, "send")) {
    op_send(s, msg, ref);
  } else if (!strcmp(op, "echo")) {
    json_t *data = json_object_get(msg, "data");
    fc__ws_send_json(s, json_pack("{s:s,s:O}", "type", "echo", "data", data ? data : json_null()));
  } else if (!strcmp(op, "ping")) {
    fc__ws_send_json(s, json_pack("{s:s}", "type", "pong"));
  } else {
    fc_ws_error(s, ref, "unknown_op", "unknown op '%.*s'", (int)utf8_prefix(op, QUOTE_MAX), op);
  }
  json_decref(msg);
}

/* Keeps a message for when the op before it has its channel. */
static void hold(fc_ws_session_t *s, const char *p, size_t n) {
  if (s->held.len + n > HELD_MAX) {
    fc__ws_close(s, WSLAY_CODE_POLICY_VIOLATION, "too many messages while a channel is read from storage");
    return;
  }
  fc_buf_append(&s->held, &n, sizeof n);
  fc_buf_append(&s->held, p, n);
}

/* The channel an op waited for is in memory: that op runs again (now going
 * on), then the messages held after it, until one waits in its turn. */
static void on_warmed(void *ud) {
  fc_ws_session_t *s = ud;
  s->warming = false;
  fc_buf_t q = s->held;
  fc_buf_init(&s->held);
  bool first = true;
  for (size_t off = 0; off < q.len && !s->closing;) {
    size_t n;
    memcpy(&n, q.data + off, sizeof n);
    const char *p = q.data + off + sizeof n;
    off += sizeof n + n;
    if (s->warming) {
      hold(s, p, n);
      continue;
    }
    cur.rerun = first;
    handle(s, p, n);
    cur.rerun = first = false;
  }
  fc_buf_dispose(&q);
  fc_ws_session_unref(s);
}

void fc__ws_on_text(fc_ws_session_t *s, const char *p, size_t n) {
  if (s->warming) hold(s, p, n);
  else handle(s, p, n);
}
