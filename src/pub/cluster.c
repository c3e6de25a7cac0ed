/* Cluster mode: a store that numbers (Redis) brings every node's commits on
 * its bus. The hub of this node gets each event once, in its channel's
 * order, whichever comes first: the answer to this node's own commit, or
 * the bus. Events this node missed (the bus was away, a channel came into
 * memory while events were on their way) are read back from storage. All of
 * it runs on the store's one thread, which serializes the hub's publishes.
 * What comes from elsewhere is not a use of a channel: one without local
 * subscribers or publishers leaves memory when idle, and its subscription
 * with it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pub/internal.h"

#define CATCH_UP_PAGE 256

typedef struct {
  fc_pub_t *pub;
  fc_channel_t *ch;
} catch_up_t;

/* One stored event read back: published unless the channel has it; events
 * storage trimmed before this node saw them are skipped (and counted lost). */
static void catch_up_event(void *ud, const fc_store_event_t *e) {
  catch_up_t *c = ud;
  fc_hub_t *hub = c->pub->opts.hub;
  uint64_t next = fc_channel_next_n(hub, c->ch);
  if (e->n < next) return;
  if (e->n > next) fc_hub_skip(hub, c->ch, e->n);
  fc_event_in_t in = fc__pub_event_in(e);
  fc_publish_result_t res;
  fc_hub_apply(hub, c->ch, &in, 1, &res);
}

/* Reads what the channel misses from storage, page by page. */
static void catch_up(fc_pub_t *pub, fc_channel_t *ch) {
  catch_up_t c = {pub, ch};
  int rc;
  do {
    uint64_t after = fc_channel_last_seq(pub->opts.hub, ch);
    rc = fc_store_range(pub->opts.store, fc_channel_name(ch), after, CATCH_UP_PAGE, catch_up_event, &c);
  } while (rc == CATCH_UP_PAGE);
  if (rc < 0)
    fc_log(FC_LOG_WARN, "cluster catch-up failed", "channel=%s error=%d (tried again on the next event)",
           fc_channel_name(ch), rc);
}

void fc__pub_apply(fc_pub_t *pub, fc_channel_t *ch, const fc_store_event_t *evs, size_t n, bool local,
                   fc_publish_result_t *res) {
  fc_hub_t *hub = pub->opts.hub;
  if (n) res->first_seq = evs[0].seq, res->last_seq = evs[n - 1].seq;
  uint64_t next = fc_channel_next_n(hub, ch);
  size_t i = 0;
  while (i < n && evs[i].n < next) i++; /* the bus or the answer brought them first */
  if (i == n) {
    res->subscribers = fc_channel_subscribers(hub, ch);
    return;
  }
  if (evs[i].n > next) { /* some came before them that this node has not seen */
    /* This node's own commit overtook another node's earlier one, whose bus
     * message is on its way: the bus brings both, in order (and a lost
     * subscription catches up when it holds again). From the bus, read back. */
    if (!local) catch_up(pub, ch);
    res->subscribers = fc_channel_subscribers(hub, ch);
    return;
  }
  fc_event_in_t stack[16];
  fc_event_in_t *in = n - i <= FC_ARRAY_LEN(stack) ? stack : fc_xmalloc((n - i) * sizeof *in);
  for (size_t k = i; k < n; k++) in[k - i] = fc__pub_event_in(&evs[k]);
  fc_publish_result_t r;
  if (local) fc_hub_publish(hub, ch, in, n - i, &r);
  else fc_hub_apply(hub, ch, in, n - i, &r); /* not a use of the channel here */
  res->subscribers = r.subscribers;
  if (in != stack) free(in);
}

/* Redis lost its data: what this node knows raises its counters again. */
static void reseed(fc_pub_t *pub) {
  fc_hub_t *hub = pub->opts.hub;
  size_t n;
  fc_channel_info_t *list = fc_hub_list(hub, "", SIZE_MAX, &n);
  const char **names = fc_xmalloc((n ? n : 1) * sizeof *names);
  uint64_t *last_n = fc_xmalloc((n ? n : 1) * sizeof *last_n);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    fc_channel_t *ch;
    if (fc_hub_open(hub, list[i].name, strlen(list[i].name), FC_HUB_CACHED, &ch) < 0) continue;
    names[k] = list[i].name;
    last_n[k++] = fc_channel_next_n(hub, ch) - 1;
    fc_channel_unref_quiet(ch);
  }
  int rc = fc_store_reseed(pub->opts.store, fc_hub_last_seq(hub), names, last_n, k);
  if (rc < 0) fc_log(FC_LOG_ERROR, "cluster reseed failed", "error=%d", rc);
  free(names);
  free(last_n);
  free(list);
}

void fc__pub_on_bus(void *ud, const fc_bus_msg_t *m) {
  fc_pub_t *pub = ud;
  if (m->kind == FC_BUS_RESEED) {
    reseed(pub);
    return;
  }
  fc_channel_t *ch;
  /* The bus brings only channels this node holds; one freed meanwhile loads
   * again from storage on its next use. */
  if (fc_hub_open(pub->opts.hub, m->channel.base, m->channel.len, FC_HUB_CACHED, &ch) < 0) return;
  fc_publish_result_t res;
  switch (m->kind) {
    case FC_BUS_EVENTS: fc__pub_apply(pub, ch, m->events, m->n, false, &res); break;
    case FC_BUS_PURGE: fc_hub_purge(pub->opts.hub, ch, m->upto); break;
    case FC_BUS_CATCH_UP: catch_up(pub, ch); break;
    case FC_BUS_RESEED: break;
  }
  fc_channel_unref_quiet(ch);
}
