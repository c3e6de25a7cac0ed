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
  if (size >= 4 && memcmp(data + 1, "PRI ", 3) == 0) return 0; /* the HTTP/2 preface: fuzz_h2's */
  fz_init();
  int peer;
  fc_conn_t *c = fz_connect(&peer);
  char head[5];
  size_t got = 0;
  fz_feed_split(c, peer, (const char *)data + 1, size - 1, data[0], head, sizeof head, &got);
  fz_spin();
  fz_drain(peer, head, sizeof head, &got);
  if (got >= 5 && memcmp(head, "HTTP/", 5)) abort();
  fz_hangup(peer);
  return 0;
}
