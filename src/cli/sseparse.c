/* The WHATWG event-stream interpretation, byte by byte. */
#include "cli/sseparse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char BOM[3] = {0xEF, 0xBB, 0xBF};

static void set_last_id(fc_sse_parser_t *p, const char *s, size_t n) {
  free(p->last_id);
  p->last_id = fc_xstrndup(s, n);
}

void fc_sse_parser_init(fc_sse_parser_t *p, fc_sse_event_cb on_event, void *ud, const char *initial_id,
                        size_t max_event) {
  memset(p, 0, sizeof *p);
  p->on_event = on_event;
  p->ud = ud;
  p->max_event = max_event ? max_event : (size_t)16 << 20;
  fc_buf_init(&p->line);
  fc_buf_init(&p->data);
  fc_buf_init(&p->event);
  fc_buf_init(&p->id_buf);
  const char *id = initial_id ? initial_id : "";
  set_last_id(p, id, strlen(id));
  fc_buf_append(&p->id_buf, id, strlen(id));
}

void fc_sse_parser_dispose(fc_sse_parser_t *p) {
  fc_buf_dispose(&p->line);
  fc_buf_dispose(&p->data);
  fc_buf_dispose(&p->event);
  fc_buf_dispose(&p->id_buf);
  free(p->last_id);
  p->last_id = NULL;
}

void fc_sse_parser_reset(fc_sse_parser_t *p) {
  p->line.len = 0;
  p->data.len = 0;
  p->event.len = 0;
  p->have_data = false;
  p->started = false;
  p->after_cr = false;
  p->bom_seen = 0;
  /* The id buffer starts from the last dispatched id, not a half-read block's. */
  p->id_buf.len = 0;
  fc_buf_append(&p->id_buf, p->last_id, strlen(p->last_id));
}

/* The blank-line step: returns true when the callback asked to stop. */
static bool dispatch(fc_sse_parser_t *p) {
  set_last_id(p, p->id_buf.data ? p->id_buf.data : "", p->id_buf.len);
  if (!p->have_data) {
    p->event.len = 0;
    return false;
  }
  /* The data buffer holds each line followed by LF: drop the last LF. */
  size_t len = p->data.len ? p->data.len - 1 : 0;
  fc_buf_reserve(&p->data, 1);
  p->data.data[len] = '\0';
  fc_buf_reserve(&p->event, 1);
  p->event.data[p->event.len] = '\0';
  fc_sse_event_t ev = {
      .id = p->last_id, .event = p->event.len ? p->event.data : "message", .data = p->data.data, .data_len = len};
  bool stop = p->on_event ? p->on_event(p->ud, &ev) : false;
  p->data.len = 0;
  p->event.len = 0;
  p->have_data = false;
  return stop;
}

static int field(fc_sse_parser_t *p, const char *line, size_t n) {
  const char *colon = memchr(line, ':', n);
  size_t klen = colon ? (size_t)(colon - line) : n;
  const char *v = colon ? colon + 1 : line + n;
  if (v < line + n && *v == ' ') v++;
  size_t vlen = (size_t)(line + n - v);
  if (klen == 4 && !memcmp(line, "data", 4)) {
    if (p->data.len + vlen + 1 > p->max_event) return -EMSGSIZE;
    fc_buf_append(&p->data, v, vlen);
    fc_buf_append(&p->data, "\n", 1);
    p->have_data = true;
  } else if (klen == 5 && !memcmp(line, "event", 5)) {
    p->event.len = 0;
    fc_buf_append(&p->event, v, vlen);
  } else if (klen == 2 && !memcmp(line, "id", 2)) {
    if (!memchr(v, '\0', vlen)) {
      p->id_buf.len = 0;
      fc_buf_append(&p->id_buf, v, vlen);
      fc_buf_reserve(&p->id_buf, 1);
      p->id_buf.data[p->id_buf.len] = '\0';
    }
  } else if (klen == 5 && !memcmp(line, "retry", 5)) {
    uint64_t ms = 0;
    bool ok = vlen > 0;
    for (size_t i = 0; i < vlen && ok; i++) {
      ok = v[i] >= '0' && v[i] <= '9';
      if (ok) ms = ms > UINT64_MAX / 10 - 9 ? UINT64_MAX : ms * 10 + (uint64_t)(v[i] - '0');
    }
    if (ok) p->retry_ms = ms, p->retry_set = true;
  }
  return 0;
}

/* A complete line: returns 1 to stop, 0, or a negative errno. */
static int line_end(fc_sse_parser_t *p) {
  int rc = 0;
  if (p->line.len == 0) rc = dispatch(p) ? 1 : 0;
  else if (p->line.data[0] != ':') rc = field(p, p->line.data, p->line.len);
  p->line.len = 0;
  return rc;
}

int fc_sse_feed(fc_sse_parser_t *p, const char *buf, size_t n) {
  size_t i = 0;
  /* A BOM may come split over reads: match it byte by byte at the very start. */
  while (!p->started && i < n) {
    if ((unsigned char)buf[i] == BOM[p->bom_seen]) {
      i++;
      if (++p->bom_seen == sizeof BOM) p->started = true;
      continue;
    }
    p->started = true;
    if (p->bom_seen) { /* a partial BOM was data after all */
      size_t k = p->bom_seen;
      p->bom_seen = 0;
      int rc = fc_sse_feed(p, (const char *)BOM, k);
      if (rc) return rc;
    }
  }
  for (; i < n; i++) {
    char c = buf[i];
    if (c == '\n' && p->after_cr) {
      p->after_cr = false;
      continue;
    }
    p->after_cr = c == '\r';
    if (c == '\n' || c == '\r') {
      int rc = line_end(p);
      if (rc) return rc;
      continue;
    }
    /* Plain bytes: append the run up to the next line end at once. */
    size_t j = i;
    while (j < n && buf[j] != '\n' && buf[j] != '\r') j++;
    if (p->line.len + (j - i) > p->max_event) return -EMSGSIZE;
    fc_buf_append(&p->line, buf + i, j - i);
    i = j - 1;
  }
  return 0;
}
