/* Events: names, and the one SSE serialization every subscriber shares. */
#include "hub/internal.h"

#include <stdlib.h>
#include <string.h>

static bool name_valid(const char *s, size_t len, size_t max) {
  if (len == 0 || len > max) return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool fc_channel_name_valid(const char *name, size_t len) { return name_valid(name, len, FC_CHANNEL_NAME_MAX); }

bool fc_event_name_valid(const char *name, size_t len) { return name_valid(name, len, FC_EVENT_NAME_MAX); }

void fc_sse_frame_build(fc_buf_t *out, uint64_t seq, fc_str_t name, fc_str_t data) {
  if (seq) fc_buf_printf(out, "id: %llu\n", (unsigned long long)seq);
  if (name.len) {
    fc_buf_append(out, "event: ", 7);
    fc_buf_append(out, name.base, name.len);
    fc_buf_append(out, "\n", 1);
  }
  /* Every line terminator of the data (CRLF, CR, LF) starts a new data: line, so
   * the client rebuilds the data with LF between lines. */
  const char *p = data.base, *end = data.base + data.len;
  for (;;) {
    const char *eol = p;
    while (eol < end && *eol != '\r' && *eol != '\n') eol++;
    fc_buf_append(out, "data: ", 6);
    fc_buf_append(out, p, (size_t)(eol - p));
    fc_buf_append(out, "\n", 1);
    if (eol == end) break;
    p = eol + ((*eol == '\r' && eol + 1 < end && eol[1] == '\n') ? 2 : 1);
  }
  fc_buf_append(out, "\n", 1);
}

void fc_event_json_members(fc_buf_t *b, const fc_event_t *ev) {
  fc_buf_puts(b, "\"channel\":");
  fc_json_quote(b, ev->channel->name, ev->channel->name_len);
  fc_buf_printf(b, ",\"id\":\"%llu\",\"event\":", (unsigned long long)ev->seq);
  if (ev->name_len) fc_json_quote(b, ev->name, ev->name_len);
  else fc_buf_puts(b, "null");
  fc_buf_puts(b, ",\"data\":");
  if (ev->is_json) fc_buf_append(b, ev->data, ev->data_len);
  else fc_json_quote(b, ev->data, ev->data_len);
  if (ev->from_len) {
    fc_buf_puts(b, ",\"from\":");
    fc_json_quote(b, ev->from, ev->from_len);
  }
}

static void free_event(fc_frame_t *f) {
  fc_event_t *ev = (fc_event_t *)((char *)f - offsetof(fc_event_t, sse));
  fc_frame_unref(atomic_load(&ev->ws));
  fc_frame_unref(atomic_load(&ev->envelope));
  /* The last touch of the channel: once its count says no event is out, a
   * sweep may free it. */
  atomic_fetch_sub(&ev->channel->events, 1);
  free(ev);
}

/* A frame derived from the event, in `slot`: built once, by the first thread
 * that asks; the event holds one reference. */
static fc_frame_t *derived(_Atomic(fc_frame_t *) *slot, fc_event_t *ev, fc_frame_t *(*build)(const fc_event_t *ev)) {
  fc_frame_t *f = atomic_load_explicit(slot, memory_order_acquire);
  if (f) return f;
  fc_frame_t *mine = build(ev), *expected = NULL;
  if (atomic_compare_exchange_strong(slot, &expected, mine)) return mine;
  fc_frame_unref(mine); /* another thread built it first */
  return expected;
}

fc_frame_t *fc_event_ws_frame(fc_event_t *ev, fc_frame_t *(*build)(const fc_event_t *ev)) {
  return derived(&ev->ws, ev, build);
}

fc_frame_t *fc_event_envelope_frame(fc_event_t *ev, fc_frame_t *(*build)(const fc_event_t *ev)) {
  return derived(&ev->envelope, ev, build);
}

fc_event_t *fc__event_new(fc_channel_t *ch, uint64_t seq, uint64_t n, int64_t time_ms, const fc_event_in_t *in) {
  fc_buf_t frame;
  fc_buf_init(&frame);
  fc_sse_frame_build(&frame, seq, in->name, in->data);

  size_t size = sizeof(fc_event_t) + frame.len + in->name.len + 1 + in->data.len + 1 + in->from.len + 1;
  fc_event_t *ev = fc_xmalloc(size);
  char *p = ev->mem;
  memcpy(p, frame.data, frame.len);
  atomic_init(&ev->sse.refs, 1);
  ev->sse.len = (uint32_t)frame.len;
  ev->sse.bytes = p;
  ev->sse.on_free = free_event;
  p += frame.len;
  fc_buf_dispose(&frame);

  ev->name = p;
  if (in->name.len) memcpy(p, in->name.base, in->name.len);
  p[in->name.len] = '\0';
  p += in->name.len + 1;
  ev->data = p;
  if (in->data.len) memcpy(p, in->data.base, in->data.len);
  p[in->data.len] = '\0';
  p += in->data.len + 1;
  ev->from = p;
  if (in->from.len) memcpy(p, in->from.base, in->from.len);
  p[in->from.len] = '\0';

  ev->seq = seq;
  ev->n = n;
  ev->time_ms = time_ms;
  ev->channel = ch;
  atomic_fetch_add(&ch->events, 1);
  ev->data_len = (uint32_t)in->data.len;
  ev->name_len = (uint16_t)in->name.len;
  ev->from_len = (uint16_t)in->from.len;
  ev->is_json = in->is_json;
  atomic_init(&ev->ws, NULL);
  atomic_init(&ev->envelope, NULL);
  return ev;
}
