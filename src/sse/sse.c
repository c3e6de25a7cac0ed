/* SSE subscribers. Each lives on one loop thread; the hub hands it shared
 * event frames, which it queues on its connection by reference. */
#include "sse/sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sse_sub sse_sub_t;

/* Per-loop state, touched only by its loop thread (counters read atomically). */
typedef struct {
  _Alignas(FC_CACHE_LINE) sse_sub_t *subs; /* every subscriber on the loop, for keepalives */
  uint64_t last_keepalive_ms;
  atomic_ullong subscribers, delivered, drops;
} sse_loop_t;

struct fc_sse {
  fc_sse_opts_t opts;
  sse_loop_t *loops;
  char retry[32];
  fc_frame_t retry_frame;
};

struct sse_sub {
  fc_sse_t *sse;
  fc_stream_t *stream;
  sse_sub_t *prev, *next;        /* in its loop's list */
  int64_t expires_ms;            /* token expiry, ms since the epoch; 0: never */
  fc_sse_final_cb is_final;      /* NULL: the stream never ends by itself */
  fc_presence_entry_t **entries; /* [nlinks] presence entries; NULL when no channel has presence on */
  uint32_t nlinks;
  uint16_t thread;
  bool dead;       /* being closed: ignore further events */
  bool envelope;   /* sends each event's enveloped frame */
  bool join_leave; /* also sends presence notices */
  fc_sub_link_t links[];
};

static fc_frame_t keepalive_frame = FC_FRAME_STATIC(":keepalive\n\n");

static const char sse_headers[] = "Content-Type: text/event-stream; charset=utf-8\r\n"
                                  "Cache-Control: no-cache\r\n"
                                  "X-Accel-Buffering: no\r\n";

fc_sse_t *fc_sse_new(const fc_sse_opts_t *opts) {
  fc_sse_t *sse = fc_xcalloc(1, sizeof *sse);
  sse->opts = *opts;
  sse->loops = fc_xcalloc_lines(opts->threads, sizeof *sse->loops);
  int n = snprintf(sse->retry, sizeof sse->retry, "retry: %u\n\n", opts->retry_ms);
  sse->retry_frame = (fc_frame_t){0, (uint32_t)n, sse->retry, NULL};
  return sse;
}

void fc_sse_free(fc_sse_t *sse) {
  if (!sse) return;
  free(sse->loops);
  free(sse);
}

int fc_sse_parse_id(const char *s, size_t n, uint64_t *out) { return fc_parse_u64(s, n, out); }

/* Disconnects a subscriber that fell too far behind. It resumes later with
 * Last-Event-ID; nothing is lost while its events are retained. */
static void drop_slow(sse_sub_t *sub) {
  sub->dead = true;
  atomic_fetch_add_explicit(&sub->sse->loops[sub->thread].drops, 1, memory_order_relaxed);
  fc_log(FC_LOG_WARN, "slow subscriber disconnected", "queued_bytes=%zu bound=%zu", fc_stream_queued(sub->stream),
         fc_stream_bound(sub->stream));
  fc_stream_close(sub->stream, false);
}

/* The SSE frame of `ev` with its data as {"channel","data","time","from"?}. */
static fc_frame_t *build_envelope(const fc_event_t *ev) {
  fc_buf_t data, frame;
  fc_buf_init(&data);
  fc_buf_init(&frame);
  fc_buf_puts(&data, "{\"channel\":");
  fc_json_quote(&data, fc_channel_name(ev->channel), strlen(fc_channel_name(ev->channel)));
  fc_buf_puts(&data, ",\"data\":");
  if (ev->is_json) fc_buf_append(&data, ev->data, ev->data_len);
  else fc_json_quote(&data, ev->data, ev->data_len);
  fc_buf_puts(&data, ",\"time\":\"");
  fc_time_rfc3339(&data, ev->time_ms);
  fc_buf_puts(&data, "\"");
  if (ev->from_len) {
    fc_buf_puts(&data, ",\"from\":");
    fc_json_quote(&data, ev->from, ev->from_len);
  }
  fc_buf_puts(&data, "}");
  fc_sse_frame_build(&frame, ev->seq, (fc_str_t){ev->name, ev->name_len}, (fc_str_t){data.data, data.len});
  fc_frame_t *f = fc_frame_copy(frame.data, frame.len);
  fc_buf_dispose(&data);
  fc_buf_dispose(&frame);
  return f;
}

/* The frame `sub` sends for `ev`. */
static fc_frame_t *frame_of(const sse_sub_t *sub, fc_event_t *ev) {
  return sub->envelope ? fc_event_envelope_frame(ev, build_envelope) : &ev->sse;
}

static void on_event(fc_sub_link_t *link, fc_event_t *ev) {
  sse_sub_t *sub = link->owner;
  if (sub->dead) return;
  if (fc_event_is_notice(ev)) { /* presence: no id, no envelope, never final */
    if (sub->join_leave && fc_stream_send(sub->stream, &ev->sse) == -ENOBUFS) drop_slow(sub);
    return;
  }
  if (fc_stream_send(sub->stream, frame_of(sub, ev)) == -ENOBUFS) {
    drop_slow(sub);
    return;
  }
  atomic_fetch_add_explicit(&sub->sse->loops[sub->thread].delivered, 1, memory_order_relaxed);
  if (sub->is_final && sub->is_final(ev)) {
    sub->dead = true;
    fc_stream_close(sub->stream, true);
  }
}

static void on_stream_close(fc_stream_t *s) {
  sse_sub_t *sub = s->ud;
  fc_sse_t *sse = sub->sse;
  sse_loop_t *sl = &sse->loops[sub->thread];
  for (size_t i = 0; i < sub->nlinks; i++) {
    if (sub->entries) fc_presence_leave(sse->opts.presence, sub->entries[i]);
    fc_hub_unsubscribe(sse->opts.hub, sub->thread, &sub->links[i]);
  }
  free(sub->entries);
  if (sub->prev) sub->prev->next = sub->next;
  else sl->subs = sub->next;
  if (sub->next) sub->next->prev = sub->prev;
  atomic_fetch_sub_explicit(&sl->subscribers, 1, memory_order_relaxed);
  free(sub);
}

static void on_stream_stop(fc_stream_t *s) {
  sse_sub_t *sub = s->ud;
  sub->dead = true;
  fc_stream_close(s, true);
}

/* Everything queued is written: from now on the plain bound applies (the
 * replayed backlog was allowed on top of it). */
static void on_stream_drained(fc_stream_t *s) {
  sse_sub_t *sub = s->ud;
  fc_stream_set_bound(s, sub->sse->opts.queue_bytes);
}

static const fc_stream_handler_t sse_stream = {
    .on_close = on_stream_close, .on_stop = on_stream_stop, .on_drained = on_stream_drained};

/* Queues a flowcast.gap notice: how many events of a channel were evicted
 * between the resume point and the oldest one still retained. */
static void send_gap(fc_stream_t *c, const fc_gap_t *g) {
  char next[32] = "null";
  if (g->next_seq) snprintf(next, sizeof next, "\"%llu\"", (unsigned long long)g->next_seq);
  char buf[FC_CHANNEL_NAME_MAX + 160];
  int n = snprintf(buf, sizeof buf,
                   "event: flowcast.gap\ndata: {\"channel\":\"%s\",\"lost\":%llu,\"exact\":%s,\"next\":%s}\n\n",
                   fc_channel_name(g->channel), (unsigned long long)g->lost, g->exact ? "true" : "false", next);
  fc_stream_send_copy(c, buf, (size_t)n);
}

/* Adds the subscriber's presence entries on its channels with presence on,
 * after its backlog: its own join is the first live thing it may see. */
static void join_presence(fc_sse_t *sse, sse_sub_t *sub, const fc_sse_how_t *how) {
  char conn[FC_PRESENCE_CONN_LEN + 1] = "";
  for (size_t i = 0; i < sub->nlinks; i++) {
    fc_channel_t *ch = sub->links[i].channel;
    if (!fc_presence_on(sse->opts.presence, fc_channel_name(ch))) continue;
    if (!conn[0]) fc_presence_conn_id(conn);
    if (!sub->entries) sub->entries = fc_xcalloc(sub->nlinks, sizeof *sub->entries);
    fc_presence_who_t who = {conn, how->sub, "sse", how->info, how->info_len};
    sub->entries[i] = fc_presence_join(sse->opts.presence, ch, &who);
  }
}

void fc_sse_open(fc_sse_t *sse, fc_req_t *req, fc_channel_t **channels, size_t n, const fc_resume_t *from,
                 const fc_sse_how_t *how) {
  fc_sse_final_cb is_final = how->is_final;
  if (req->method == FC_HEAD) { /* the stream's head alone: no subscription, nothing sent after it */
    fc_http_stream(req, 200, sse_headers, &sse_stream, NULL);
    return;
  }
  unsigned thread = fc_loop_index(req->loop);
  sse_sub_t *sub = fc_xcalloc(1, sizeof *sub + n * sizeof(fc_sub_link_t));
  sub->sse = sse;
  sub->thread = thread;
  sub->nlinks = n;
  sub->expires_ms = how->expires_ms;
  sub->is_final = is_final;
  sub->envelope = how->envelope;
  sub->join_leave = how->join_leave;
  /* The request's memory (its token's claims, its query) goes with it once
   * it becomes a stream: presence's part is copied first. */
  fc_sse_how_t who = *how;
  who.sub = how->sub ? fc_xstrndup(how->sub, strlen(how->sub)) : NULL;
  who.info = how->info ? fc_xstrndup(how->info, how->info_len) : NULL;
  fc_sub_link_t *links[n];
  for (size_t i = 0; i < n; i++) {
    sub->links[i].channel = channels[i];
    sub->links[i].deliver = on_event;
    sub->links[i].owner = sub;
    sub->links[i].wants_notices = how->join_leave;
    links[i] = &sub->links[i];
  }
  fc_stream_t *s = fc_http_stream(req, 200, sse_headers, &sse_stream, sub);
  sub->stream = s;
  fc_stream_t *c = s;
  fc_stream_send(c, &sse->retry_frame);

  fc_backlog_t backlog;
  fc_hub_subscribe(sse->opts.hub, thread, links, n, from, &backlog);
  for (size_t i = 0; i < backlog.ngaps; i++) send_gap(c, &backlog.gaps[i]);
  bool ended = false;
  for (size_t i = 0; i < backlog.nevents && !ended; i++) {
    fc_stream_send(c, frame_of(sub, backlog.events[i]));
    ended = is_final && is_final(backlog.events[i]);
  }
  if (backlog.nevents == 0) {
    /* Nothing replayed: an id with no data gives the client its position
     * without an event, so a reconnect resumes exactly from here. */
    char pos[40];
    int len = snprintf(pos, sizeof pos, "id: %llu\n\n", (unsigned long long)backlog.position);
    fc_stream_send_copy(c, pos, (size_t)len);
  }
  sse_loop_t *sl = &sse->loops[thread];
  atomic_fetch_add_explicit(&sl->delivered, backlog.nevents, memory_order_relaxed);
  fc_backlog_dispose(&backlog);
  join_presence(sse, sub, &who);
  free((char *)who.sub);
  free((char *)who.info);
  /* The backlog is shared frames already retained: it does not count against
   * the bound, which limits how far behind live delivery may fall. */
  fc_stream_set_bound(c, fc_stream_queued(c) + sse->opts.queue_bytes);
  fc_stream_set_bulk(c, true);

  sub->next = sl->subs;
  if (sub->next) sub->next->prev = sub;
  sl->subs = sub;
  atomic_fetch_add_explicit(&sl->subscribers, 1, memory_order_relaxed);
  if (ended) {
    sub->dead = true;
    fc_stream_close(s, true);
  }
}

static fc_frame_t expired_frame = FC_FRAME_STATIC("event: flowcast.expired\ndata: {\"reason\":\"token expired\"}\n\n");

void fc_sse_tick(fc_sse_t *sse, fc_loop_t *l, uint64_t now_ms) {
  sse_loop_t *sl = &sse->loops[fc_loop_index(l)];
  bool keepalive = now_ms - sl->last_keepalive_ms >= sse->opts.keepalive_ms;
  if (keepalive) sl->last_keepalive_ms = now_ms;
  int64_t wall = fc_now_ms();
  for (sse_sub_t *sub = sl->subs; sub; sub = sub->next) {
    if (sub->dead) continue;
    if (sub->expires_ms && wall >= sub->expires_ms) {
      /* Said once, then closed: the client needs a new token to go on. */
      sub->dead = true;
      fc_stream_send(sub->stream, &expired_frame);
      fc_stream_close(sub->stream, true);
    } else if (keepalive && fc_stream_send(sub->stream, &keepalive_frame) == -ENOBUFS) {
      drop_slow(sub);
    }
  }
}

void fc_sse_stats(fc_sse_t *sse, fc_sse_stats_t *out) {
  memset(out, 0, sizeof *out);
  for (unsigned t = 0; t < sse->opts.threads; t++) {
    sse_loop_t *sl = &sse->loops[t];
    out->subscribers += atomic_load_explicit(&sl->subscribers, memory_order_relaxed);
    out->delivered_total += atomic_load_explicit(&sl->delivered, memory_order_relaxed);
    out->drops_total += atomic_load_explicit(&sl->drops, memory_order_relaxed);
  }
}
