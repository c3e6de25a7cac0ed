/* The storage interface: each call goes to the implementation's table. */
#include <errno.h>
#include <string.h>

#include "store/internal.h"

void fc_store_close(fc_store_t *s) {
  if (s) s->ops->close(s);
}

bool fc_store_durable(const fc_store_t *s) { return s->ops->durable; }

uint64_t fc_store_last_seq(fc_store_t *s) { return s->ops->last_seq(s); }

void fc_store_append(fc_store_t *s, fc_store_batch_t *b) { s->ops->append(s, b); }

int fc_store_load(fc_store_t *s, const char *channel, unsigned limit, fc_store_channel_t *out,
                  void (*each)(void *ud, const fc_store_event_t *ev), void *ud) {
  return s->ops->load(s, channel, limit, out, each, ud);
}

int fc_store_channels(fc_store_t *s, const char *after, unsigned limit,
                      void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud) {
  return s->ops->channels(s, after, limit, each, ud);
}

bool fc_store_stats(fc_store_t *s, fc_store_stats_t *out) {
  memset(out, 0, sizeof *out);
  return s->ops->stats && s->ops->stats(s, out);
}

bool fc_store_numbers(const fc_store_t *s) { return s->ops->numbers; }

void fc_store_listen(fc_store_t *s, fc_bus_cb cb, void *ud) {
  if (s->ops->listen) s->ops->listen(s, cb, ud);
}

void fc_store_interest(fc_store_t *s, const char *channel, bool on) {
  if (s->ops->interest) s->ops->interest(s, channel, on);
}

int fc_store_range(fc_store_t *s, const char *channel, uint64_t after, unsigned limit,
                   void (*each)(void *ud, const fc_store_event_t *ev), void *ud) {
  return s->ops->range ? s->ops->range(s, channel, after, limit, each, ud) : -ENOTSUP;
}

bool fc_store_link(fc_store_t *s, fc_store_link_t *out) {
  memset(out, 0, sizeof *out);
  return s->ops->link && s->ops->link(s, out);
}

int fc_store_shared_secret(fc_store_t *s, const char *name, const uint8_t *candidate, uint8_t *out, size_t len) {
  return s->ops->shared_secret ? s->ops->shared_secret(s, name, candidate, out, len) : -ENOTSUP;
}

int fc_store_claim(fc_store_t *s, const char *key, unsigned ttl_s) {
  return s->ops->claim ? s->ops->claim(s, key, ttl_s) : -ENOTSUP;
}

int fc_store_reseed(fc_store_t *s, uint64_t last_seq, const char *const *names, const uint64_t *last_n, size_t n) {
  return s->ops->reseed ? s->ops->reseed(s, last_seq, names, last_n, n) : -ENOTSUP;
}
