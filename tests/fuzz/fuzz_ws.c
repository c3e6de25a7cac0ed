/* WebSocket frames and JSON ops through the real application
 * (tests/fuzz/app.h): an upgrade request, then the input's bytes as the
 * client's frames (subscribe, publish, send, echo, ping, fragments, control
 * frames, bad opcodes and lengths). The first byte picks how the frames are
 * split into reads (0: one read; else pieces of 1 to 16 bytes). Besides
 * memory safety and UB: the answer to the upgrade is a 101, and the session
 * ends once the client hangs up. */
#include "app.h"

static const char upgrade[] = "GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  fz_init();
  int peer;
  fc_conn_t *c = fz_connect(&peer);
  char head[12];
  size_t got = 0;
  bool open = fz_feed(c, peer, upgrade, sizeof upgrade - 1);
  fz_spin();
  fz_drain(peer, head, sizeof head, &got);
  if (got < 12 || memcmp(head, "HTTP/1.1 101", 12)) abort();
  if (open) fz_feed_split(c, peer, (const char *)data + 1, size - 1, data[0], NULL, 0, NULL);
  fz_spin();
  fz_hangup(peer);
  return 0;
}
