/* The CLI's SSE parser on any bytes, split into reads where the input says:
 * it must never crash, never pass its bound, and give the same events however
 * the bytes are split. */
#include <stdlib.h>
#include <string.h>

#include "cli/sseparse.h"

static bool record(void *ud, const fc_sse_event_t *ev) {
  fc_buf_t *b = ud;
  fc_buf_printf(b, "%zu:%s|%zu:%s|%zu:", strlen(ev->event), ev->event, strlen(ev->id), ev->id, ev->data_len);
  fc_buf_append(b, ev->data, ev->data_len);
  return false;
}

static void run(const char *d, size_t n, size_t step, fc_buf_t *log, char **last) {
  fc_sse_parser_t p;
  fc_sse_parser_init(&p, record, log, NULL, 4096);
  for (size_t i = 0; i < n; i += step) {
    size_t k = n - i < step ? n - i : step;
    if (fc_sse_feed(&p, d + i, k) < 0) {
      fc_buf_puts(log, "#toolong");
      break;
    }
  }
  *last = strdup(p.last_id);
  fc_sse_parser_dispose(&p);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 1) return 0;
  size_t step = data[0] % 7 + 1;
  const char *d = (const char *)data + 1;
  size_t n = size - 1;
  fc_buf_t a, b;
  fc_buf_init(&a);
  fc_buf_init(&b);
  char *la, *lb;
  run(d, n, n ? n : 1, &a, &la);
  run(d, n, step, &b, &lb);
  /* A line too long is found at the same byte in both runs, so logs still agree. */
  if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)) || strcmp(la, lb)) abort();
  free(la);
  free(lb);
  fc_buf_dispose(&a);
  fc_buf_dispose(&b);
  return 0;
}
