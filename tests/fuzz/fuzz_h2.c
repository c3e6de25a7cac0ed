/* HTTP/2 frames through the real connection code and application (h2c, the
 * preface sent first): HPACK, CONTINUATION, flow control, resets, SETTINGS and
 * PING, streams that become SSE subscribers. The first byte picks how the rest
 * is split into reads, as in fuzz_http. Besides memory safety and UB: the
 * server's first bytes are its SETTINGS frame, and it lets the connection go
 * once the client hangs up. */
#include "app.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  if (size < 1 || size > 65536) return 0;
  fz_init();
  int peer;
  fc_conn_t *c = fz_connect(&peer);
  size_t n = sizeof preface - 1 + size - 1;
  char *bytes = fc_xmalloc(n);
  memcpy(bytes, preface, sizeof preface - 1);
  memcpy(bytes + sizeof preface - 1, data + 1, size - 1);
  char head[5];
  size_t got = 0;
  fz_feed_split(c, peer, bytes, n, data[0], head, sizeof head, &got);
  free(bytes);
  fz_spin();
  fz_drain(peer, head, sizeof head, &got);
  if (got >= 5 && head[3] != 4) abort(); /* a frame header: type 4 is SETTINGS */
  fz_hangup(peer);
  return 0;
}
