/* api: the flowcast application: routes and handlers for channels, events,
 * streams and operations, wired onto net, http, hub and sse. */
#ifndef FC_API_H
#define FC_API_H

#include "config/config.h"
#include "http/http.h"
#include "hub/hub.h"
#include "sse/sse.h"
#include "store/store.h"

typedef struct fc_pub fc_pub_t;

/* Per-loop state of the app: publishes whose commit ended, to answer. */
typedef struct {
  pthread_mutex_t lock;
  fc_pub_t *done;
} fc_app_loop_t;

typedef struct fc_app {
  const fc_config_t *cfg;
  fc_hub_t *hub;
  fc_http_t *http;
  fc_sse_t *sse;
  fc_net_t *net;
  fc_store_t *store;      /* NULL with --storage memory */
  fc_hub_rule_t *rules;
  fc_app_loop_t *loops;   /* [threads] */
  uv_signal_t sigterm, sigint;
  uint64_t started_ms;
  atomic_ullong published_total; /* events accepted */
} fc_app_t;

/* Runs the server until SIGTERM/SIGINT. Returns the process exit status. */
int fc_app_run(const fc_config_t *cfg);

/* The app a request belongs to. */
fc_app_t *fc_app_of(fc_req_t *req);

/* A publish in flight (channels.c): events waiting for their commit. */
struct fc_pub {
  fc_store_job_t job;
  fc_app_t *app;
  fc_req_t *req;
  unsigned loop;
  bool batch;
  fc_event_in_t *events;
  void **keep; /* json_t values the events' text lives in */
  size_t nkeep;
  fc_pub_t *next_done;
};
/* Answers publishes whose commit ended (on the loop's wake). */
void fc_api_publish_answer(fc_app_t *app, fc_loop_t *l);

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
