/* api: the flowcast application: routes and handlers for channels, events,
 * streams and operations, wired onto net, http, hub and sse. */
#ifndef FC_API_H
#define FC_API_H

#include "config/config.h"
#include "http/http.h"
#include "hub/hub.h"
#include "sse/sse.h"

typedef struct fc_app {
  const fc_config_t *cfg;
  fc_hub_t *hub;
  fc_http_t *http;
  fc_sse_t *sse;
  fc_net_t *net;
  uv_signal_t sigterm, sigint;
  uint64_t started_ms;
  atomic_ullong published_total; /* events accepted */
} fc_app_t;

/* Runs the server until SIGTERM/SIGINT. Returns the process exit status. */
int fc_app_run(const fc_config_t *cfg);

/* The app a request belongs to. */
fc_app_t *fc_app_of(fc_req_t *req);

/* Handlers (channels.c, ops.c). */
void fc_api_publish(fc_req_t *req);
void fc_api_history(fc_req_t *req);
void fc_api_channels(fc_req_t *req);
void fc_api_channel_delete(fc_req_t *req);
void fc_api_channel_sse(fc_req_t *req);
void fc_api_multi_sse(fc_req_t *req);
void fc_api_healthz(fc_req_t *req);
void fc_api_metrics(fc_req_t *req);
void fc_api_dashboard(fc_req_t *req);

#endif
