/* api: the flowcast application: the route table and the handlers for
 * channels, events, streams, auth, jobs and operations. src/server creates
 * the modules and fills fc_app_t; api only uses them. */
#ifndef FC_API_H
#define FC_API_H

#include "auth/auth.h"
#include "auth/users.h"
#include "config/config.h"
#include "http/http.h"
#include "hub/hub.h"
#include "jobs/jobs.h"
#include "presence/presence.h"
#include "pub/pub.h"
#include "sse/sse.h"
#include "store/store.h"
#include "ws/ws.h"

/* Access rules of routes (fc_route_t.access), decided in fc_api_authorize(). */
enum {
  FC_ACCESS_OPEN,            /* anyone */
  FC_ACCESS_PUBLISH,         /* the publish right on the route's channel */
  FC_ACCESS_SUBSCRIBE,       /* the subscribe right on the route's channel, or a public channel */
  FC_ACCESS_SUBSCRIBE_QUERY, /* the same, for every ?channel= */
  FC_ACCESS_ADMIN,           /* an admin token */
  FC_ACCESS_TOKEN,           /* any valid token (rights are checked per operation) */
  FC_ACCESS_SUBSCRIBE_JOB,   /* the subscribe right on job.{params[1]}, or a public channel */
  FC_ACCESS_PRESENCE,        /* the presence right on the route's channel */
};

typedef struct fc_app {
  const fc_config_t *cfg;
  fc_hub_t *hub;
  fc_http_t *http;
  fc_sse_t *sse;
  fc_ws_t *ws;
  fc_presence_t *presence; /* who is subscribed, on channels with presence on */
  fc_net_t *net;
  fc_store_t *store; /* NULL with --storage memory */
  fc_pub_t *pub;     /* every publish goes through it */
  fc_auth_t *auth;   /* NULL with --open */
  fc_users_t *users;
  fc_limiter_t *limiter;
  fc_jobs_t *jobs;            /* the workflow runner (src/jobs), on loop 0; NULL: workflows are off */
  fc_rate_t *publish_rate;    /* --publish-rate per token subject; NULL: none */
  fc_rate_t *channel_creates; /* --channel-create-limit per token subject; NULL: none */
  uint64_t started_ms;        /* monotonic */
  int64_t started_wall_ms;    /* since the epoch */
} fc_app_t;

/* What the server is doing now, as /metrics and the stats stream read it. */
typedef struct {
  fc_sse_stats_t sse;
  fc_ws_stats_t ws;
  fc_net_stats_t net;
  size_t channels;
  uint64_t published;
  fc_pub_latency_t latency;
  bool has_store, has_link; /* store and link below are set */
  fc_store_stats_t store;
  fc_store_link_t link;
  const char *job_status[FC_JOBS_NSTATUS];
  unsigned jobs[FC_JOBS_NSTATUS];
  uint64_t uptime_ms;
  double cpu_seconds; /* user + system */
  unsigned long long resident_bytes, virtual_bytes, open_fds, max_fds;
} fc_api_sample_t;
/* Fills `s` from the modules' counters and /proc (ops.c). Any loop thread. */
void fc_api_sample(fc_app_t *app, fc_api_sample_t *s);

/* api's state for `cfg` (borrowed until fc_api_free): the start time. The
 * modules' fields stay NULL for src/server to fill; it also frees the
 * modules. Main thread. */
fc_app_t *fc_api_new(const fc_config_t *cfg);
/* Frees api's state, once the modules are freed and the loops ended. */
void fc_api_free(fc_app_t *app);

/* The route table (static), for fc_http_opts_t.routes; `n` gets its length. */
const fc_route_t *fc_api_routes(size_t *n);

/* The app a request belongs to. */
fc_app_t *fc_app_of(fc_req_t *req);

/* Auth (auth.c): sets up keys, users and the first admin (nothing with
 * --open). Returns 0, or a negative errno with a message in `err` for the
 * user (-EINVAL: bad keys; -EIO: users cannot be opened; the first admin's
 * fc_users_add error). Start-up thread. */
int fc_api_auth_init(fc_app_t *app, char *err, size_t errlen);
void fc_api_auth_free(fc_app_t *app);
/* The check that runs before every handler (fc_http_opts_t.authorize):
 * returns 0 to go on, or answers 401/403 and returns -EACCES. Loop thread. */
int fc_api_authorize(fc_req_t *req);
/* The claims of the request's token, or NULL (no token, or --open). */
const fc_claims_t *fc_api_claims(fc_req_t *req);
/* The same for a route open to anyone: verifies the request's token, if it
 * has one, and returns its claims, or NULL (no token, an invalid one, or
 * --open); nothing is answered. Loop thread. */
const fc_claims_t *fc_api_try_claims(fc_req_t *req);
/* When the request's token expires (ms since the epoch), 0 for never. */
int64_t fc_api_expiry_ms(fc_req_t *req);
void fc_api_login(fc_req_t *req);
void fc_api_ws(fc_req_t *req);
fc_ws_t *fc_api_ws_new(fc_app_t *app);
/* May the user of a WebSocket session subscribe to / publish on `channel`? */
bool fc_api_may(fc_app_t *app, const fc_claims_t *c, bool publish, const char *channel);
void fc_api_tokens(fc_req_t *req);
/* Handlers (channels.c, ops.c). */
void fc_api_publish(fc_req_t *req);
void fc_api_history(fc_req_t *req);
void fc_api_channels(fc_req_t *req);
void fc_api_channel_delete(fc_req_t *req);
void fc_api_channel_sse(fc_req_t *req);
void fc_api_multi_sse(fc_req_t *req);
/* Presence (presence.c): a channel's entries and its counts. */
void fc_api_presence(fc_req_t *req);
void fc_api_presence_stats(fc_req_t *req);
void fc_api_healthz(fc_req_t *req);
void fc_api_metrics(fc_req_t *req);
/* The stats stream (stats.c): admin only; a sample a second. */
void fc_api_stats_sse(fc_req_t *req);
/* The dashboard (web.c): embedded assets, the session, logout. */
void fc_api_dashboard(fc_req_t *req);
void fc_api_session(fc_req_t *req);
void fc_api_logout(fc_req_t *req);

/* Rate limits of token subjects (limits.c): set up with auth (nothing with
 * --open), freed with it. Admin tokens are not limited. */
void fc_api_limits_init(fc_app_t *app);
void fc_api_limits_free(fc_app_t *app);
/* Takes `n` events from the publish rate of `c`'s subject: 0 when they may
 * be published now, else the milliseconds to wait (nothing taken). Any loop. */
uint64_t fc_api_publish_wait(fc_app_t *app, const fc_claims_t *c, size_t n);
/* Before a channel may come to exist for `c` (a publish or subscribe with
 * create): 0 when it exists already (in memory or storage) or `c` may create
 * one now (counted), else the milliseconds to wait. `who` keys a request
 * without a token (a public subscriber: its address). Any loop. */
uint64_t fc_api_create_wait(fc_app_t *app, const fc_claims_t *c, const char *who, const char *name);
/* Refusals by these limits since start, for /metrics. */
extern atomic_ullong fc_api_publish_limited_total, fc_api_create_limited_total;

/* Workflow and job handlers (api/jobs.c). */
void fc_api_workflows(fc_req_t *req);
void fc_api_workflow(fc_req_t *req);
void fc_api_workflows_reload(fc_req_t *req);
void fc_api_job_start(fc_req_t *req);
void fc_api_job_control(fc_req_t *req);
void fc_api_job(fc_req_t *req);
void fc_api_jobs(fc_req_t *req);
void fc_api_job_sse(fc_req_t *req);

#endif
