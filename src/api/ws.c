/* The app's side of WebSocket: the handshake route and rights. */
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

static uint64_t publish_wait(void *ud, fc_ws_session_t *s, size_t events) {
  return fc_api_publish_wait(ud, fc_ws_session_user(s), events);
}

static uint64_t create_wait(void *ud, fc_ws_session_t *s, const char *channel) {
  return fc_api_create_wait(ud, fc_ws_session_user(s), fc_ws_session_id(s), channel);
}

static const char *subject(void *ud, fc_ws_session_t *s) {
  (void)ud;
  const fc_claims_t *c = fc_ws_session_user(s);
  return c ? c->sub : NULL;
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
                                   .pub = app->pub,
                                   .publish_wait = publish_wait,
                                   .create_wait = create_wait,
                                   .rate = app->cfg->ws_rate,
                                   .presence = app->presence,
                                   .subject = subject,
                                   .ud = app});
}
