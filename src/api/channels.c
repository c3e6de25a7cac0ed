/* Channel endpoints: publish, history, listing, purge and SSE subscribe. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "pub/pub.h"

#define MAX_SSE_CHANNELS 64
#define MAX_HISTORY_LIMIT 1000
#define LIST_LIMIT 100      /* channels per page of GET /channels by default */
#define MAX_LIST_LIMIT 1000 /* and at most */

/* Answers why the channel `name` could not be opened (fc_hub_open's error). */
static void channel_error(fc_req_t *req, const char *name, int err) {
  if (err == -EINVAL) fc_http_error(req, 400, "bad_channel", "channel name must match [A-Za-z0-9._:-]{1,128}");
  else if (err == -ENOENT) fc_http_error(req, 404, "no_channel", "channel '%s' has no events yet", name);
  else if (err == -EMFILE)
    fc_http_error(req, 503, "too_many_channels",
                  "the server holds its maximum of channels in use (--max-channels): nothing was created; "
                  "retry later");
  else if (err == -ENOTCONN)
    fc_http_error(req, 503, "storage_unavailable", "storage (Redis) is unreachable; retry later");
  else fc_http_error(req, 503, "storage_error", "storage could not be read; retry later");
}

/* Answers 429 rate_limited with Retry-After (whole seconds, at least 1). */
static void rate_limited(fc_req_t *req, uint64_t wait_ms, const char *what) {
  char extra[48];
  snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)(wait_ms + 999) / 1000);
  fc_http_error_with(req, 429, extra, "rate_limited", "%s; retry in %llu ms", what, (unsigned long long)wait_ms);
}

/* True (answered 429) when the request may not make channel `name` come to
 * exist now (--channel-create-limit). */
static bool create_limited(fc_req_t *req, const char *name) {
  char ip[64];
  fc_req_peer_ip(req, ip, sizeof ip);
  uint64_t wait = fc_api_create_wait(fc_app_of(req), fc_api_claims(req), ip, name);
  if (wait)
    rate_limited(req, wait, "this token has created its maximum of new channels for now (--channel-create-limit)");
  return wait != 0;
}

/* Set while a handler runs again once its channels are in memory. */
static _Thread_local bool warmed_rerun;

static void on_warmed(void *ud) {
  fc_req_t *req = ud;
  if (fc_req_gone(req)) {
    fc_http_error(req, 503, "gone", "the client left"); /* only frees it */
    return;
  }
  warmed_rerun = true;
  req->route->handler(req);
  warmed_rerun = false;
}

/* True when the request must wait for channels `names` to be read from
 * storage: its handler then runs again (and goes on) once they are, and the
 * requests behind it on its connection wait for its answer. A handler asks
 * before any side effect, so that running again is harmless. */
static bool warming(fc_req_t *req, const char *const *names, size_t n) {
  if (warmed_rerun || fc_pub_warm(fc_app_of(req)->hub, req->loop, names, n, on_warmed, req) != 1) return false;
  fc_req_serial(req); /* a pipelined publish behind it must not take an id before it */
  return true;
}

/* warming() for the route's channel. */
static bool warming_route(fc_req_t *req) { return warming(req, (const char *const *)&req->params[0], 1); }

/* The channel named by the route, created when `create`, as a reference the
 * caller releases; answers 400/404/429/503 and returns NULL otherwise. */
static fc_channel_t *route_channel(fc_req_t *req, bool create) {
  const char *name = req->params[0];
  fc_channel_t *ch;
  if (create && fc_channel_name_valid(name, strlen(name)) && create_limited(req, name)) return NULL;
  int rc = fc_hub_open(fc_app_of(req)->hub, name, strlen(name), create ? FC_HUB_CREATE : 0, &ch);
  if (rc < 0) channel_error(req, name, rc);
  return ch;
}

/* The media type of the body, lowercased, without parameters. */
static void media_type(fc_req_t *req, char *out, size_t len) {
  fc_str_t ct = fc_req_header(req, "content-type");
  size_t k = 0;
  for (size_t i = 0; ct.base && i < ct.len && ct.base[i] != ';' && k + 1 < len; i++) {
    char c = ct.base[i];
    if (c == ' ' || c == '\t') continue;
    out[k++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  out[k] = '\0';
}

static void answer_published(fc_req_t *req, fc_channel_t *ch, const fc_publish_result_t *r, size_t n, bool batch) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_printf(&b, "{\"id\":\"%llu\",\"channel\":", (unsigned long long)r->last_seq);
  fc_json_quote(&b, fc_channel_name(ch), strlen(fc_channel_name(ch)));
  fc_buf_printf(&b, ",\"subscribers\":%zu", r->subscribers);
  if (batch) {
    fc_buf_printf(&b, ",\"count\":%zu,\"ids\":[", n);
    for (uint64_t s = r->first_seq; s <= r->last_seq; s++)
      fc_buf_printf(&b, "%s\"%llu\"", s == r->first_seq ? "" : ",", (unsigned long long)s);
    fc_buf_puts(&b, "]");
  }
  fc_buf_puts(&b, "}");
  fc_http_respond(req, 201, "application/json", NULL, b.data, b.len);
  fc_buf_dispose(&b);
}

/* Answers an HTTP publish or purge once its fate is known, on the request's loop. */
static void pub_answer(fc_pub_op_t *op, void *ud) {
  fc_req_t *req = ud;
  int status = fc_pub_op_status(op);
  if (status == 0 && fc_pub_op_is_purge(op)) {
    fc_http_respond(req, 204, NULL, NULL, "", 0);
  } else if (status == 0) {
    answer_published(req, fc_pub_op_channel(op), fc_pub_op_result(op), fc_pub_op_count(op), fc_pub_op_is_batch(op));
  } else {
    const char *code, *message;
    fc_pub_failure(status, &code, &message);
    fc_http_error(req, 503, code, "%s", message);
  }
}

void fc_api_publish(fc_req_t *req) {
  if (warming_route(req)) return;
  fc_app_t *app = fc_app_of(req);
  bool bad = false;
  const char *name = fc_req_query(req, "event", 0, &bad);
  if (bad) {
    fc_http_error(req, 400, "bad_event", "event name must match [A-Za-z0-9._:-]{1,128}");
    return;
  }
  char mt[128];
  media_type(req, mt, sizeof mt);
  fc_pub_op_t *op = fc_pub_op_new(app->pub, fc_loop_index(req->loop), pub_answer, req);
  fc_pub_error_t err;
  if (fc_pub_add_body(op, req->params[0], name, mt, req->body.data, req->body.len, &err) < 0) {
    fc_http_error(req, 400, err.code, "%s", err.message);
    fc_pub_op_free(op);
    return;
  }
  uint64_t wait = fc_api_publish_wait(app, fc_api_claims(req), fc_pub_op_events(op));
  if (wait || create_limited(req, req->params[0])) {
    if (wait) rate_limited(req, wait, "this token has published its maximum of events for now (--publish-rate)");
    fc_pub_op_free(op);
    return;
  }
  /* Valid: only now does the channel come to exist. */
  int rc = fc_pub_open(op, req->params[0], strlen(req->params[0]), FC_HUB_CREATE);
  if (rc < 0) {
    channel_error(req, req->params[0], rc);
    fc_pub_op_free(op);
    return;
  }
  fc_pub_submit(op);
}

/* Appends one event as history JSON. */
static void event_json(fc_buf_t *b, const fc_event_t *ev) {
  fc_buf_puts(b, "{");
  fc_event_json_members(b, ev);
  fc_buf_puts(b, ",\"time\":\"");
  fc_time_rfc3339(b, ev->time_ms);
  fc_buf_puts(b, "\"}");
}

/* Reads an optional u64 query parameter; answers 400 and returns -EINVAL if bad. */
static int query_u64(fc_req_t *req, const char *key, uint64_t *out, bool *present) {
  bool bad = false;
  const char *v = fc_req_query(req, key, 0, &bad);
  *present = v != NULL;
  if (!bad && (!v || fc_parse_u64(v, strlen(v), out) == 0)) return 0;
  fc_http_error(req, 400, "bad_parameter", "%s must be a whole number", key);
  return -EINVAL;
}

void fc_api_history(fc_req_t *req) {
  uint64_t after = 0, limit = 100;
  bool has;
  if (query_u64(req, "after", &after, &has) < 0 || query_u64(req, "limit", &limit, &has) < 0) return;
  if (limit > MAX_HISTORY_LIMIT) limit = MAX_HISTORY_LIMIT;
  if (warming_route(req)) return;
  fc_channel_t *ch = route_channel(req, false);
  if (!ch) return;
  fc_backlog_t h;
  fc_hub_history(fc_app_of(req)->hub, ch, after, (size_t)limit, &h);
  /* Reading history keeps nothing in memory that was not there already. */
  fc_hub_drop(fc_app_of(req)->hub, ch);
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_puts(&b, "[");
  for (size_t i = 0; i < h.nevents; i++) {
    if (i) fc_buf_puts(&b, ",");
    event_json(&b, h.events[i]);
  }
  fc_buf_puts(&b, "]");
  fc_backlog_dispose(&h);
  fc_http_respond(req, 200, "application/json", NULL, b.data, b.len);
  fc_buf_dispose(&b);
}

/* A page of stored channels, read for the listing. */
typedef struct {
  fc_hub_t *hub;
  fc_channel_info_t *list;
  size_t n;
} stored_page_t;

static void on_stored(void *ud, const char *name, const fc_store_channel_t *c) {
  stored_page_t *pg = ud;
  size_t len = strlen(name);
  if (len > FC_CHANNEL_NAME_MAX) return;
  fc_channel_info_t *e = &pg->list[pg->n++];
  memcpy(e->name, name, len + 1);
  unsigned keep = fc_hub_retention_of(pg->hub, name);
  e->retained = c->stored < keep ? (size_t)c->stored : keep;
  e->last_seq = c->last_seq;
  e->subscribers = 0;
}

/* Merges two name-sorted pages into `out` (at most `max`); an entry in both
 * is taken from `a` (the channels in memory know subscribers). */
static size_t merge_pages(const fc_channel_info_t *a, size_t na, const fc_channel_info_t *b, size_t nb,
                          fc_channel_info_t *out, size_t max) {
  size_t i = 0, j = 0, k = 0;
  while (k < max && (i < na || j < nb)) {
    int c = i == na ? 1 : j == nb ? -1 : strcmp(a[i].name, b[j].name);
    if (c <= 0) {
      out[k++] = a[i++];
      if (c == 0) j++;
    } else {
      out[k++] = b[j++];
    }
  }
  return k;
}

static void list_json(fc_buf_t *b, const fc_channel_info_t *list, size_t n, bool more, const fc_presence_t *pres) {
  fc_buf_puts(b, "{\"channels\":[");
  for (size_t i = 0; i < n; i++) {
    fc_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
    fc_json_quote(b, list[i].name, strlen(list[i].name));
    fc_buf_printf(b, ",\"retained\":%zu,\"lastId\":", list[i].retained);
    if (list[i].last_seq) fc_buf_printf(b, "\"%llu\"", (unsigned long long)list[i].last_seq);
    else fc_buf_puts(b, "null");
    fc_buf_printf(b, ",\"subscribers\":%zu,\"presence\":%s}", list[i].subscribers,
                  fc_presence_on(pres, list[i].name) ? "true" : "false");
  }
  fc_buf_puts(b, "],\"next\":");
  if (more) fc_json_quote(b, list[n - 1].name, strlen(list[n - 1].name));
  else fc_buf_puts(b, "null");
  fc_buf_puts(b, "}");
}

/* GET /channels?limit=N&after=NAME: the channels in memory and in storage,
 * by name, a page at a time; "next" is the `after` of the next page (null
 * on the last). */
void fc_api_channels(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  uint64_t limit = LIST_LIMIT;
  bool has, bad = false;
  if (query_u64(req, "limit", &limit, &has) < 0) return;
  if (limit == 0 || limit > MAX_LIST_LIMIT) {
    fc_http_error(req, 400, "bad_parameter", "limit must be between 1 and %d", MAX_LIST_LIMIT);
    return;
  }
  const char *after = fc_req_query(req, "after", 0, &bad);
  if (bad || (after && *after && !fc_channel_name_valid(after, strlen(after)))) {
    fc_http_error(req, 400, "bad_parameter", "after must be a channel name (the \"next\" of the previous page)");
    return;
  }
  if (!after) after = "";
  /* One more than the page: whether there is a next one. */
  size_t want = (size_t)limit + 1, nlive;
  fc_channel_info_t *live = fc_hub_list(app->hub, after, want, &nlive);
  stored_page_t st = {app->hub, NULL, 0};
  if (app->store) {
    st.list = fc_xmalloc(want * sizeof *st.list);
    int rc = fc_store_channels(app->store, after, (unsigned)want, on_stored, &st);
    if (rc < 0) {
      free(live);
      free(st.list);
      channel_error(req, after, rc);
      return;
    }
  }
  fc_channel_info_t *page = fc_xmalloc(want * sizeof *page);
  size_t n = merge_pages(live, nlive, st.list, st.n, page, want);
  bool more = n > limit;
  fc_buf_t b;
  fc_buf_init(&b);
  list_json(&b, page, more ? (size_t)limit : n, more, app->presence);
  free(page);
  free(live);
  free(st.list);
  fc_http_respond(req, 200, "application/json", NULL, b.data, b.len);
  fc_buf_dispose(&b);
}

void fc_api_channel_delete(fc_req_t *req) {
  if (warming_route(req)) return;
  fc_app_t *app = fc_app_of(req);
  fc_pub_op_t *op = fc_pub_op_new(app->pub, fc_loop_index(req->loop), pub_answer, req);
  const char *name = req->params[0];
  int rc = fc_pub_open(op, name, strlen(name), 0);
  if (rc < 0) {
    channel_error(req, name, rc);
    fc_pub_op_free(op);
    return;
  }
  fc_pub_set_purge(op);
  fc_pub_submit(op);
}

/* Reads where a subscription starts: Last-Event-ID (header, then
 * ?lastEventId=) or ?replay=N. Answers 400 and returns -EINVAL when malformed. */
static int parse_resume(fc_req_t *req, fc_resume_t *r) {
  memset(r, 0, sizeof *r);
  r->replay = fc_app_of(req)->cfg->retention;
  fc_str_t h = fc_req_header(req, "last-event-id");
  bool bad = false;
  const char *q = fc_req_query(req, "lastEventId", 0, &bad);
  const char *id = h.base && h.len ? h.base : q;
  size_t idlen = h.base && h.len ? h.len : (q ? strlen(q) : 0);
  if (bad || (id && idlen && fc_sse_parse_id(id, idlen, &r->after) < 0)) {
    fc_http_error(req, 400, "bad_last_event_id", "Last-Event-ID must be an event id (a decimal number)");
    return -EINVAL;
  }
  r->has_after = id && idlen;
  uint64_t replay;
  bool has;
  if (query_u64(req, "replay", &replay, &has) < 0) return -EINVAL;
  if (has) r->replay = replay > 1000000 ? 1000000 : (unsigned)replay;
  return 0;
}

/* Reads presence's ?info= (JSON, at most 1 KiB) and ?joinLeave= (1/true or
 * 0/false), with the token's subject. Answers 400 and returns -EINVAL when
 * malformed. */
static int parse_presence(fc_req_t *req, fc_sse_how_t *how) {
  bool bad = false;
  const char *jl = fc_req_query(req, "joinLeave", 0, &bad);
  if (bad || (jl && strcmp(jl, "1") && strcmp(jl, "true") && strcmp(jl, "0") && strcmp(jl, "false"))) {
    fc_http_error(req, 400, "bad_parameter", "?joinLeave= must be 1 or 0");
    return -EINVAL;
  }
  how->join_leave = jl && (jl[0] == '1' || jl[0] == 't');
  const char *info = fc_req_query(req, "info", 0, &bad);
  if (bad || (info && fc_presence_check_info(info, strlen(info)) < 0)) {
    fc_http_error(req, 400, "bad_info", "?info= must be JSON of at most %d bytes", FC_PRESENCE_INFO_MAX);
    return -EINVAL;
  }
  how->info = info;
  how->info_len = info ? strlen(info) : 0;
  const fc_claims_t *c = fc_api_claims(req);
  how->sub = c ? c->sub : NULL;
  return 0;
}

/* Reads ?envelope= (1/true or 0/false) into how->envelope, with the token's
 * expiry. Answers 400 and returns -EINVAL when malformed. */
static int parse_how(fc_req_t *req, fc_sse_how_t *how) {
  bool bad = false;
  const char *v = fc_req_query(req, "envelope", 0, &bad);
  *how = (fc_sse_how_t){.expires_ms = fc_api_expiry_ms(req)};
  if (v || bad) {
    if (bad || (strcmp(v, "1") && strcmp(v, "true") && strcmp(v, "0") && strcmp(v, "false"))) {
      fc_http_error(req, 400, "bad_envelope", "?envelope= must be 1 or 0");
      return -EINVAL;
    }
    how->envelope = v[0] == '1' || v[0] == 't';
  }
  return parse_presence(req, how);
}

void fc_api_channel_sse(fc_req_t *req) {
  fc_resume_t from;
  fc_sse_how_t how;
  if (parse_resume(req, &from) < 0 || parse_how(req, &how) < 0 || warming_route(req)) return;
  fc_channel_t *ch = route_channel(req, true);
  if (!ch) return;
  fc_sse_open(fc_app_of(req)->sse, req, &ch, 1, &from, &how);
  fc_channel_unref(ch); /* the subscription holds it now */
}

void fc_api_multi_sse(fc_req_t *req) {
  fc_channel_t *chs[MAX_SSE_CHANNELS];
  const char *names[MAX_SSE_CHANNELS];
  size_t n = 0;
  bool bad = false;
  for (const char *name; (name = fc_req_query(req, "channel", n, &bad)) != NULL || bad;) {
    if (bad || !fc_channel_name_valid(name, strlen(name))) {
      fc_http_error(req, 400, "bad_channel", "channel name must match [A-Za-z0-9._:-]{1,128}");
      return;
    }
    if (n == MAX_SSE_CHANNELS) {
      fc_http_error(req, 400, "too_many_channels", "at most %d channels on one stream", MAX_SSE_CHANNELS);
      return;
    }
    names[n] = name;
    chs[n++] = NULL;
  }
  if (n == 0) {
    fc_http_error(req, 400, "bad_channel", "name at least one channel: /api/v1/sse?channel=a&channel=b");
    return;
  }
  fc_resume_t from;
  fc_sse_how_t how;
  if (parse_resume(req, &from) < 0 || parse_how(req, &how) < 0 || warming(req, names, n)) return;
  /* Only now, with every name valid, may channels come to exist: all of
   * them, or (past --max-channels) none. */
  fc_hub_t *hub = fc_app_of(req)->hub;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = fc_req_query(req, "channel", i, &bad);
    fc_channel_t *ch;
    int rc = create_limited(req, name) ? -EDQUOT : fc_hub_open(hub, name, strlen(name), FC_HUB_CREATE, &ch);
    if (rc == -EDQUOT) {
      while (k) fc_hub_drop(hub, chs[--k]);
      return;
    }
    if (rc < 0) {
      while (k) fc_hub_drop(hub, chs[--k]);
      channel_error(req, name, rc);
      return;
    }
    bool dup = false;
    for (size_t j = 0; j < k; j++) dup |= chs[j] == ch;
    if (dup) fc_channel_unref(ch);
    else chs[k++] = ch;
  }
  fc_sse_open(fc_app_of(req)->sse, req, chs, k, &from, &how);
  for (size_t i = 0; i < k; i++) fc_channel_unref(chs[i]); /* the subscription holds them now */
}
