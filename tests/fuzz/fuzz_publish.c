/* Publish bodies as HTTP gives them to pub: any body under any media type
 * (JSON, NDJSON, text), any `?event=` name and channel name, through
 * fc_pub_add_body and, when accepted, a commit to the memory store. Besides
 * memory safety and UB: a refusal has a code and changes nothing; an
 * accepted body commits every one of its events. Layout: byte 0 picks the
 * media type, byte 1 the event name's length (255: none), byte 2 the
 * channel's, then the names, then the body. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pub/pub.h"

static fc_hub_t *hub;
static fc_pub_t *pub;
static int answered;
static size_t committed;

static void on_answer(fc_pub_op_t *op, void *ud) {
  (void)ud;
  answered = fc_pub_op_status(op) == 0 ? 1 : -1;
  committed = fc_pub_op_count(op);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 3) return 0;
  if (!hub) {
    hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1, .retention = 4, .max_channels = 64, .idle_ms = 0});
    pub = fc_pub_new(&(fc_pub_opts_t){.hub = hub, .threads = 1});
    if (!pub) abort();
  }
  static const char *const types[] = {"application/json",    "application/x-ndjson",     "text/plain",
                                      "application/ld+json", "application/octet-stream", ""};
  const char *mt = types[data[0] % (sizeof types / sizeof *types)];
  size_t en = data[1] == 255 ? 0 : data[1] % 160, cn = data[2] % 160;
  const char *p = (const char *)data + 3;
  size_t n = size - 3;
  if (en + cn > n) return 0;
  char *event = data[1] == 255 ? NULL : strndup(p, en);
  char *channel = strndup(p + en, cn);
  size_t blen = n - en - cn;
  char *body = malloc(blen + 1); /* HTTP bodies are NUL-terminated */
  memcpy(body, p + en + cn, blen);
  body[blen] = 0;
  uint64_t before = fc_pub_published(pub);
  fc_pub_op_t *op = fc_pub_op_new(pub, 0, on_answer, NULL);
  fc_pub_error_t err = {0};
  if (fc_pub_add_body(op, channel, event, mt, body, blen, &err) < 0) {
    if (!err.code || !err.message[0]) abort();
    fc_pub_op_free(op);
  } else {
    int rc = fc_pub_open(op, channel, strlen(channel), FC_HUB_CREATE);
    if (rc < 0 && rc != -EMFILE) abort();
    answered = 0, committed = 0;
    if (rc < 0) {
      fc_pub_op_free(op); /* max_channels in memory: 503 too_many_channels */
    } else {
      fc_pub_submit(op); /* the memory store answers inside */
      if (answered != 1 || !committed || fc_pub_published(pub) != before + committed) abort();
    }
  }
  if (fc_pub_published(pub) != before && answered != 1) abort();
  free(body);
  free(channel);
  free(event);
  fc_hub_sweep(hub, fc_mono_ms());
  return 0;
}
