/* Channel endpoints: publish, history, listing, purge and SSE subscribe. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"

#define MAX_SSE_CHANNELS 64
#define MAX_HISTORY_LIMIT 1000
#define LIST_LIMIT 100      /* channels per page of GET /channels by default */
#define MAX_LIST_LIMIT 1000 /* and at most */

/* Answers why the channel `name` could not be opened (fc_hub_open's error). */
static void channel_error(fc_req_t *req, const char *name, int err) {
  if (err == -EINVAL)
    fc_http_error(req, 400, "bad_channel", "channel name must match [A-Za-z0-9._:-]{1,128}");
  else if (err == -ENOENT)
    fc_http_error(req, 404, "no_channel", "channel '%s' has no events yet", name);
  else if (err == -EMFILE)
    fc_http_error(req, 503, "too_many_channels",
                  "the server holds its maximum of channels in use (--max-channels): nothing was created; "
                  "retry later");
  else
    fc_http_error(req, 503, "storage_error", "storage could not be read; retry later");
}

/* The channel named by the route, created when `create`, as a reference the
 * caller releases; answers 400/404/503 and returns NULL otherwise. */
static fc_channel_t *route_channel(fc_req_t *req, bool create) {
  const char *name = req->params[0];
  fc_channel_t *ch;
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

/* JSON unless another type is named. curl -d sends the form type by default,
 * and no form is ever posted here, so it counts as unnamed. */
static bool is_json_type(const char *mt) {
  size_t n = strlen(mt);
  return n == 0 || !strcmp(mt, "application/x-www-form-urlencoded") || !strcmp(mt, "application/json") || (n > 5 && !strcmp(mt + n - 5, "+json"));
}

static fc_str_t trim_ws(const char *p, size_t n) {
  while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++, n--;
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n')) n--;
  return (fc_str_t){p, n};
}

/* Checks one JSON text. Returns 0, or answers 400 and returns -1. */
static int check_json(fc_req_t *req, const char *p, size_t n, const char *where) {
  json_error_t e;
  json_t *j = json_loadb(p, n, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
  if (!j) {
    fc_http_error(req, 400, "bad_json", "%sinvalid JSON at line %d column %d: %s", where, e.line, e.column,
                  e.text);
    return -1;
  }
  json_decref(j);
  return 0;
}

static void answer_published(fc_req_t *req, fc_channel_t *ch, const fc_publish_result_t *r, size_t n,
                             bool batch) {
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

void fc_api_pub_free(fc_pub_t *p) {
  if (p->job.channel) fc_channel_unref(p->job.channel);
  for (size_t i = 0; i < p->nkeep; i++) json_decref(p->keep[i]);
  free(p->keep);
  free(p->events);
  free(p->ref);
  free(p);
}

/* Answers an HTTP publish once its fate is known, on the request's loop. */
static void pub_answer(fc_pub_t *p) {
  fc_store_job_t *j = &p->job;
  if (j->status == 0 && j->purge) {
    fc_http_respond(p->req, 204, NULL, NULL, "", 0);
  } else if (j->status == 0) {
    answer_published(p->req, j->channel, &j->result, j->n, p->batch);
  } else if (j->status == -ENOSPC) {
    fc_http_error(p->req, 503, "storage_full",
                  "storage is full (disk or --max-db-size): nothing was stored; retry later");
  } else {
    fc_http_error(p->req, 503, "storage_error", "storage failed to commit: nothing was stored; retry later");
  }
  fc_api_pub_free(p);
}

/* The writer thread finished a job: hand it back to the request's loop. */
static void on_committed(fc_store_job_t *job) {
  fc_pub_t *p = job->ud;
  /* Once on the list, p belongs to its loop, which may answer and free it at
   * once: nothing of it is read after the unlock. */
  fc_app_t *app = p->app;
  unsigned loop = p->loop;
  if (job->status == 0 && !job->purge) app->published_total += job->n;
  fc_app_loop_t *al = &app->loops[loop];
  pthread_mutex_lock(&al->lock);
  p->next_done = al->done;
  al->done = p;
  pthread_mutex_unlock(&al->lock);
  fc_net_wake(app->net, loop);
}

void fc_api_publish_answer(fc_app_t *app, fc_loop_t *l) {
  fc_app_loop_t *al = &app->loops[fc_loop_index(l)];
  pthread_mutex_lock(&al->lock);
  fc_pub_t *list = al->done;
  al->done = NULL;
  pthread_mutex_unlock(&al->lock);
  /* The list is newest first: answer in commit order. */
  fc_pub_t *rev = NULL;
  while (list) {
    fc_pub_t *next = list->next_done;
    list->next_done = rev;
    rev = list;
    list = next;
  }
  while (rev) {
    fc_pub_t *next = rev->next_done;
    rev->answer(rev);
    rev = next;
  }
}

/* Sets an HTTP publish up for fc_api_pub_submit. */
static void pub_submit(fc_req_t *req, fc_pub_t *p) {
  p->app = fc_app_of(req);
  p->req = req;
  p->loop = fc_loop_index(req->loop);
  p->answer = pub_answer;
  fc_api_pub_submit(p);
}

void fc_api_pub_submit(fc_pub_t *p) {
  fc_app_t *app = p->app;
  p->job.events = p->events;
  p->job.done = on_committed;
  p->job.ud = p;
  if (!p->job.channel) { /* it could not be opened (storage read failed) */
    p->job.status = -EIO;
    p->answer(p);
    return;
  }
  if (app->store) {
    fc_store_submit(app->store, &p->job);
    return;
  }
  if (p->job.purge)
    fc_hub_purge(app->hub, p->job.channel);
  else
    fc_hub_publish(app->hub, p->job.channel, p->events, p->job.n, &p->job.result);
  if (!p->job.purge) app->published_total += p->job.n;
  p->answer(p);
}

/* One NDJSON line: {"data": <any>, "event": "name"?}. Fills `ev`, whose data
 * is kept alive in `keep`. Returns 0, or answers 400 and returns -1. */
static int parse_ndjson_line(fc_req_t *req, fc_str_t line, size_t lineno, fc_event_in_t *ev, json_t **keep) {
  json_error_t e;
  json_t *j = json_loadb(line.base, line.len, 0, &e);
  if (!j || !json_is_object(j)) {
    fc_http_error(req, 400, "bad_json", "line %zu: %s", lineno,
                  j ? "expected an object {\"data\": ..., \"event\": ...}" : e.text);
    json_decref(j);
    return -1;
  }
  *keep = j;
  json_t *data = json_object_get(j, "data"), *name = json_object_get(j, "event");
  if (!data) {
    fc_http_error(req, 400, "bad_json", "line %zu: missing \"data\"", lineno);
    return -1;
  }
  if (name && !json_is_null(name)) {
    if (!json_is_string(name) || !fc_event_name_valid(json_string_value(name), json_string_length(name))) {
      fc_http_error(req, 400, "bad_event", "line %zu: event name must match [A-Za-z0-9._:-]{1,128}", lineno);
      return -1;
    }
    ev->name = (fc_str_t){json_string_value(name), json_string_length(name)};
  }
  if (json_is_string(data)) {
    ev->data = (fc_str_t){json_string_value(data), json_string_length(data)};
    if (memchr(ev->data.base, '\0', ev->data.len)) {
      fc_http_error(req, 400, "bad_utf8", "line %zu: data must not contain NUL", lineno);
      return -1;
    }
  } else {
    char *s = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    json_object_set_new(j, "_text", json_string(s)); /* keeps the text alive with the line */
    free(s);
    json_t *t = json_object_get(j, "_text");
    ev->data = (fc_str_t){json_string_value(t), json_string_length(t)};
    ev->is_json = true;
  }
  return 0;
}

static void publish_ndjson(fc_req_t *req, fc_channel_t *ch, fc_pub_t *p) {
  const char *c = req->body.data, *end = c + req->body.len;
  size_t cap = 16, n = 0, lineno = 0;
  p->events = fc_xcalloc(cap, sizeof *p->events);
  p->keep = fc_xcalloc(cap, sizeof *p->keep);
  int rc = 0;
  while (c < end && rc == 0) {
    const char *nl = memchr(c, '\n', (size_t)(end - c));
    if (!nl) nl = end;
    fc_str_t line = trim_ws(c, (size_t)(nl - c));
    c = nl + 1;
    lineno++;
    if (!line.len) continue;
    if (n == cap) {
      cap *= 2;
      p->events = fc_xrealloc(p->events, cap * sizeof *p->events);
      p->keep = fc_xrealloc(p->keep, cap * sizeof *p->keep);
    }
    memset(&p->events[n], 0, sizeof p->events[n]);
    json_t *keep = NULL;
    rc = parse_ndjson_line(req, line, lineno, &p->events[n], &keep);
    p->keep[p->nkeep++] = keep;
    n++;
  }
  if (rc == 0 && n == 0) {
    fc_http_error(req, 400, "empty_batch", "the NDJSON body holds no event");
    rc = -1;
  }
  p->job.channel = ch;
  if (rc != 0) {
    fc_hub_drop(fc_app_of(req)->hub, ch);
    p->job.channel = NULL;
    fc_api_pub_free(p);
    return;
  }
  p->job.n = n;
  p->batch = true;
  pub_submit(req, p);
}

void fc_api_publish(fc_req_t *req) {
  bool bad = false;
  const char *name = fc_req_query(req, "event", 0, &bad);
  if (bad || (name && !fc_event_name_valid(name, strlen(name)))) {
    fc_http_error(req, 400, "bad_event", "event name must match [A-Za-z0-9._:-]{1,128}");
    return;
  }
  fc_channel_t *ch = NULL;
  if (!fc_channel_name_valid(req->params[0], strlen(req->params[0]))) {
    route_channel(req, false);
    return;
  }
  if (!fc_utf8_valid(req->body.data, req->body.len)) {
    fc_http_error(req, 400, "bad_utf8", "the body is not valid UTF-8 text");
    return;
  }
  char mt[128];
  media_type(req, mt, sizeof mt);
  bool ndjson = !strcmp(mt, "application/x-ndjson");
  fc_event_in_t ev = {.name = name ? (fc_str_t){name, strlen(name)} : (fc_str_t){"", 0}};
  if (!ndjson) {
    ev.is_json = is_json_type(mt);
    ev.data = ev.is_json ? trim_ws(req->body.data, req->body.len) : (fc_str_t){req->body.data, req->body.len};
    if (ev.is_json && check_json(req, req->body.data, req->body.len, "") < 0) return;
  }
  /* Valid: only now does the channel come to exist. */
  ch = route_channel(req, true);
  if (!ch) return;
  fc_pub_t *p = fc_xcalloc(1, sizeof *p);
  if (ndjson) {
    publish_ndjson(req, ch, p);
    return;
  }
  p->events = fc_xmalloc(sizeof *p->events);
  p->events[0] = ev;
  p->job.channel = ch;
  p->job.n = 1;
  pub_submit(req, p);
}

/* Appends one event as history JSON. */
static void event_json(fc_buf_t *b, const fc_event_t *ev) {
  fc_buf_puts(b, "{");
  fc_event_json_members(b, ev);
  fc_buf_puts(b, ",\"time\":\"");
  fc_time_rfc3339(b, ev->time_ms);
  fc_buf_puts(b, "\"}");
}

/* Reads an optional u64 query parameter; answers 400 and returns -1 if bad. */
static int query_u64(fc_req_t *req, const char *key, uint64_t *out, bool *present) {
  bool bad = false;
  const char *v = fc_req_query(req, key, 0, &bad);
  *present = v != NULL;
  if (!bad && (!v || fc_parse_u64(v, strlen(v), out) == 0)) return 0;
  fc_http_error(req, 400, "bad_parameter", "%s must be a whole number", key);
  return -1;
}

void fc_api_history(fc_req_t *req) {
  uint64_t after = 0, limit = 100;
  bool has;
  if (query_u64(req, "after", &after, &has) < 0 || query_u64(req, "limit", &limit, &has) < 0) return;
  if (limit > MAX_HISTORY_LIMIT) limit = MAX_HISTORY_LIMIT;
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

static void list_json(fc_buf_t *b, const fc_channel_info_t *list, size_t n, bool more) {
  fc_buf_puts(b, "{\"channels\":[");
  for (size_t i = 0; i < n; i++) {
    fc_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
    fc_json_quote(b, list[i].name, strlen(list[i].name));
    fc_buf_printf(b, ",\"retained\":%zu,\"lastId\":", list[i].retained);
    if (list[i].last_seq)
      fc_buf_printf(b, "\"%llu\"", (unsigned long long)list[i].last_seq);
    else
      fc_buf_puts(b, "null");
    fc_buf_printf(b, ",\"subscribers\":%zu}", list[i].subscribers);
  }
  fc_buf_puts(b, "],\"next\":");
  if (more)
    fc_json_quote(b, list[n - 1].name, strlen(list[n - 1].name));
  else
    fc_buf_puts(b, "null");
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
    if (fc_store_channels(app->store, after, (unsigned)want, on_stored, &st) < 0) {
      free(live);
      free(st.list);
      fc_http_error(req, 503, "storage_error", "storage could not be read; retry later");
      return;
    }
  }
  fc_channel_info_t *page = fc_xmalloc(want * sizeof *page);
  size_t n = merge_pages(live, nlive, st.list, st.n, page, want);
  bool more = n > limit;
  fc_buf_t b;
  fc_buf_init(&b);
  list_json(&b, page, more ? (size_t)limit : n, more);
  free(page);
  free(live);
  free(st.list);
  fc_http_respond(req, 200, "application/json", NULL, b.data, b.len);
  fc_buf_dispose(&b);
}

void fc_api_channel_delete(fc_req_t *req) {
  fc_channel_t *ch = route_channel(req, false);
  if (!ch) return;
  fc_pub_t *p = fc_xcalloc(1, sizeof *p);
  p->job.channel = ch;
  p->job.purge = true;
  pub_submit(req, p);
}

/* Reads where a subscription starts: Last-Event-ID (header, then
 * ?lastEventId=) or ?replay=N. Answers 400 and returns -1 when malformed. */
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
    return -1;
  }
  r->has_after = id && idlen;
  uint64_t replay;
  bool has;
  if (query_u64(req, "replay", &replay, &has) < 0) return -1;
  if (has) r->replay = replay > 1000000 ? 1000000 : (unsigned)replay;
  return 0;
}

void fc_api_channel_sse(fc_req_t *req) {
  fc_resume_t from;
  if (parse_resume(req, &from) < 0) return;
  fc_channel_t *ch = route_channel(req, true);
  if (!ch) return;
  fc_sse_open(fc_app_of(req)->sse, req, &ch, 1, &from, fc_api_expiry_ms(req));
  fc_channel_unref(ch); /* the subscription holds it now */
}

void fc_api_multi_sse(fc_req_t *req) {
  fc_channel_t *chs[MAX_SSE_CHANNELS];
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
    chs[n++] = NULL;
  }
  if (n == 0) {
    fc_http_error(req, 400, "bad_channel", "name at least one channel: /api/v1/sse?channel=a&channel=b");
    return;
  }
  fc_resume_t from;
  if (parse_resume(req, &from) < 0) return;
  /* Only now, with every name valid, may channels come to exist: all of
   * them, or (past --max-channels) none. */
  fc_hub_t *hub = fc_app_of(req)->hub;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = fc_req_query(req, "channel", i, &bad);
    fc_channel_t *ch;
    int rc = fc_hub_open(hub, name, strlen(name), FC_HUB_CREATE, &ch);
    if (rc < 0) {
      while (k) fc_hub_drop(hub, chs[--k]);
      channel_error(req, name, rc);
      return;
    }
    bool dup = false;
    for (size_t j = 0; j < k; j++) dup |= chs[j] == ch;
    if (dup)
      fc_channel_unref(ch);
    else
      chs[k++] = ch;
  }
  fc_sse_open(fc_app_of(req)->sse, req, chs, k, &from, fc_api_expiry_ms(req));
  for (size_t i = 0; i < k; i++) fc_channel_unref(chs[i]); /* the subscription holds them now */
}
