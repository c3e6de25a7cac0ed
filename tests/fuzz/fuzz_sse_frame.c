/* The server's SSE frame builder against the client's parser: any data and
 * name the server accepts must come back exactly (line ends as LF), with the
 * id, in one event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/sseparse.h"
#include "hub/hub.h"

typedef struct {
  int events;
  fc_buf_t data, event, id;
} got_t;

static bool record(void *ud, const fc_sse_event_t *ev) {
  got_t *g = ud;
  g->events++;
  fc_buf_append(&g->data, ev->data, ev->data_len);
  fc_buf_puts(&g->event, ev->event);
  fc_buf_puts(&g->id, ev->id);
  return false;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 2) return 0;
  size_t name_len = data[0] % 16;
  uint64_t seq = data[1];
  const char *p = (const char *)data + 2;
  size_t n = size - 2;
  if (name_len > n) name_len = n;
  fc_str_t name = {p, name_len}, body = {p + name_len, n - name_len};
  if (name_len && !fc_event_name_valid(name.base, name.len)) return 0;
  if (memchr(body.base, '\0', body.len)) return 0; /* payloads are UTF-8 text without NUL */
  fc_buf_t frame;
  fc_buf_init(&frame);
  fc_sse_frame_build(&frame, seq, name, body);
  got_t g = {0};
  fc_buf_init(&g.data), fc_buf_init(&g.event), fc_buf_init(&g.id);
  fc_sse_parser_t ps;
  fc_sse_parser_init(&ps, record, &g, NULL, 1 << 20);
  if (fc_sse_feed(&ps, frame.data, frame.len) != 0 || g.events != 1) abort();
  /* The data with CRLF and CR turned into LF. */
  fc_buf_t want;
  fc_buf_init(&want);
  for (size_t i = 0; i < body.len; i++) {
    char c = body.base[i];
    if (c == '\r') {
      if (i + 1 < body.len && body.base[i + 1] == '\n') i++;
      c = '\n';
    }
    fc_buf_append(&want, &c, 1);
  }
  char idtxt[24];
  /* Id 0 is a notice's (presence): it has no id line. */
  idtxt[0] = '\0';
  if (seq) snprintf(idtxt, sizeof idtxt, "%llu", (unsigned long long)seq);
  if (want.len != g.data.len || (want.len && memcmp(want.data, g.data.data, want.len))) abort();
  if (strcmp(g.event.data, name_len ? "" : "message") &&
      (g.event.len != name_len || memcmp(g.event.data, name.base, name_len)))
    abort();
  if (strcmp(g.id.data, idtxt)) abort();
  fc_sse_parser_dispose(&ps);
  fc_buf_dispose(&frame), fc_buf_dispose(&want);
  fc_buf_dispose(&g.data), fc_buf_dispose(&g.event), fc_buf_dispose(&g.id);
  return 0;
}
