/* Whole HTTP request bytes through the real connection code and the real
 * application (tests/fuzz/app.h): pipelining, bodies (chunked, with
 * trailers), routing, handlers, SSE and WebSocket upgrades. The first byte
 * picks how the rest is split into reads (0: one read; else pieces of 1 to
 * 16 bytes in a sequence it seeds), so a request cut anywhere is parsed as a
 * whole one is. Besides memory safety and UB: the server never writes
 * anything but HTTP responses first, and lets the connection go once the
 * client hangs up. */
#include "app.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  fz_init();
  int peer;
  fc_conn_t *c = fz_connect(&peer);
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  unsigned seed = data[0];
  char head[5];
  size_t got = 0;
  bool open = true;
  for (size_t i = 0; i < n && open;) {
    size_t k = n - i;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      size_t piece = (seed >> 16) % 16 + 1;
      if (piece < k) k = piece;
    }
    open = fz_feed(c, peer, p + i, k);
    i += k;
    fz_spin();
    open = fz_drain(peer, head, sizeof head, &got) && open;
  }
  fz_spin();
  fz_drain(peer, head, sizeof head, &got);
  if (got >= 5 && memcmp(head, "HTTP/", 5)) abort();
  fz_hangup(peer);
  return 0;
}
