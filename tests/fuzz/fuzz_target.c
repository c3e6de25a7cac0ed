/* Request targets: percent-decoding, path segments, query parameters and route
 * matching on any bytes llhttp could hand over as a URL. */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static void h(fc_req_t *r) { (void)r; }

static const fc_route_t routes[] = {
    {"/api/v1/channels/{}/events", FC_POST, h, "publish", 0, true},
    {"/api/v1/channels/{}/events", FC_GET, h, "history", 0, false},
    {"/api/v1/channels/{}/sse", FC_GET, h, "sse", 0, false},
    {"/api/v1/sse/{}/{}", FC_GET, h, "job", 0, false},
    {"/api/v1/channels", FC_GET, h, "list", 0, false},
};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 1 || size > 16384) return 0;
  fc_req_t *r = fc_http_req_new(data[0] & 1 ? FC_POST : FC_GET, (const char *)data + 1, size - 1);
  if (fc_http_parse_target(r) == 0) {
    unsigned allowed;
    fc_http_match(routes, sizeof routes / sizeof *routes, r, &allowed);
    bool bad;
    static const char *const names[] = {"channel", "after", "limit", "replay", "lastEventId", "w", "i", "access_token"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
      for (size_t i = 0; i < 4; i++) fc_req_query(r, names[k], i, &bad);
  }
  char out[65];
  size_t n = size - 1 < sizeof out - 1 ? size - 1 : sizeof out - 1;
  fc_url_decode((const char *)data + 1, n, out, data[0] & 2);
  fc_http_req_free(r);
  return 0;
}
