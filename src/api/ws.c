/* The app's side of WebSocket: the handshake route, rights, and publishes
 * that go through storage like HTTP ones. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

bool fc_api_may(fc_app_t *app, const fc_claims_t *c, bool publish, const char *channel) {
  if (!app->auth) return true;
  if (!publish && fc_patterns_match(app->cfg->public_list, SIZE_MAX, channel)) return true;
  if (!c) return false;
  if (c->admin) return true; /* every right */
  return publish ? fc_patterns_match(c->publish, c->npublish, channel)
                 : fc_patterns_match(c->subscribe, c->nsubscribe, channel);
}

void fc_api_ws(fc_req_t *req) { fc_ws_accept(fc_app_of(req)->ws, req, fc_api_expiry_ms(req)); }

static bool may_subscribe(void *ud, fc_ws_session_t *s, const char *channel) {
  return fc_api_may(ud, fc_ws_session_user(s), false, channel);
}

static bool may_publish(void *ud, fc_ws_session_t *s, const char *channel) {
  return fc_api_may(ud, fc_ws_session_user(s), true, channel);
}

/* Direct messages need the send right (admin has it; --open allows all). */
static bool may_send(void *ud, fc_ws_session_t *s) {
  const fc_app_t *app = ud;
  const fc_claims_t *c = fc_ws_session_user(s);
  return !app->auth || (c && (c->send || c->admin));
}

/* Acks a WebSocket publish once committed (or says why not). */
static void answer_ws(fc_pub_t *p) {
  fc_store_job_t *j = &p->job;
  if (j->status == 0) {
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)j->result.last_seq);
    fc_ws_ack(p->session, p->ref, id);
  } else {
    fc_ws_error(p->session, p->ref, j->status == -ENOSPC ? "storage_full" : "storage_error",
                "nothing was stored; retry later");
  }
  fc_ws_session_unref(p->session);
  fc_api_pub_free(p);
}

static void ws_publish(void *ud, fc_ws_session_t *s, fc_channel_t *ch, fc_event_in_t *ev, json_t *msg,
                       const char *ref) {
  fc_app_t *app = ud;
  if (!fc_api_may(app, fc_ws_session_user(s), true, fc_channel_name(ch))) {
    fc_ws_error(s, ref, "forbidden", "the token may not publish to %s", fc_channel_name(ch));
    fc_hub_drop(app->hub, ch);
    return;
  }
  fc_pub_t *p = fc_xcalloc(1, sizeof *p);
  p->app = app;
  p->session = s;
  fc_ws_session_ref(s);
  p->ref = ref ? fc_xstrndup(ref, strlen(ref)) : NULL;
  p->answer = answer_ws;
  p->events = fc_xmalloc(sizeof *p->events);
  p->events[0] = *ev;
  p->keep = fc_xmalloc(sizeof *p->keep);
  p->keep[p->nkeep++] = json_incref(msg);
  p->job.channel = ch;
  p->job.n = 1;
  /* The loop of the session: read from the request that made it. */
  p->loop = fc_ws_session_thread(s);
  fc_api_pub_submit(p);
}

fc_ws_t *fc_api_ws_new(fc_app_t *app) {
  return fc_ws_new(&(fc_ws_opts_t){.hub = app->hub,
                                   .threads = app->cfg->threads,
                                   .max_message = app->cfg->ws_max_message,
                                   .ping_ms = app->cfg->ws_ping_s * 1000,
                                   .queue_bytes = app->cfg->queue_bytes,
                                   .max_subscriptions = app->cfg->ws_max_subscriptions,
                                   .net = app->net,
                                   .may_subscribe = may_subscribe,
                                   .may_publish = may_publish,
                                   .may_send = may_send,
                                   .publish = ws_publish,
                                   .ud = app});
}
