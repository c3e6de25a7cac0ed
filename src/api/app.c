/* api's state and its route table; src/server wires them onto the modules. */
#include "api/api.h"

#include <stdlib.h>

/* The last column: whether requests pipelined after one may be handled before
 * it is answered (fc_route_t.overlap). */
#define SERIAL false
#define OVERLAP true
static const fc_route_t routes[] = {
    {"/api/v1/channels/{}/events", FC_POST, fc_api_publish, "publish", FC_ACCESS_PUBLISH, OVERLAP},
    {"/api/v1/channels/{}/events", FC_GET, fc_api_history, "history", FC_ACCESS_SUBSCRIBE, SERIAL},
    {"/api/v1/channels/{}/sse", FC_GET, fc_api_channel_sse, "sse", FC_ACCESS_SUBSCRIBE, SERIAL},
    {"/api/v1/channels/{}/presence", FC_GET, fc_api_presence, "presence", FC_ACCESS_PRESENCE, SERIAL},
    {"/api/v1/channels/{}/presence/stats", FC_GET, fc_api_presence_stats, "presence_stats", FC_ACCESS_PRESENCE, SERIAL},
    {"/api/v1/channels/{}", FC_DELETE, fc_api_channel_delete, "channel_delete", FC_ACCESS_ADMIN, SERIAL},
    {"/api/v1/channels", FC_GET, fc_api_channels, "channels", FC_ACCESS_ADMIN, SERIAL},
    {"/api/v1/sse", FC_GET, fc_api_multi_sse, "sse_multi", FC_ACCESS_SUBSCRIBE_QUERY, SERIAL},
    {"/api/v1/ws", FC_GET, fc_api_ws, "ws", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/login", FC_POST, fc_api_login, "login", FC_ACCESS_OPEN, SERIAL},
    {"/api/v1/tokens", FC_POST, fc_api_tokens, "tokens", FC_ACCESS_ADMIN, SERIAL},
    {"/api/v1/workflows/reload", FC_POST, fc_api_workflows_reload, "workflows_reload", FC_ACCESS_ADMIN, SERIAL},
    {"/api/v1/workflows/{}", FC_GET, fc_api_workflow, "workflow", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/workflows", FC_GET, fc_api_workflows, "workflows", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/start", FC_POST, fc_api_job_start, "job_start", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/stop", FC_POST, fc_api_job_control, "job_stop", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/suspend", FC_POST, fc_api_job_control, "job_suspend", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/resume", FC_POST, fc_api_job_control, "job_resume", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/approve", FC_POST, fc_api_job_control, "job_approve", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/reject", FC_POST, fc_api_job_control, "job_reject", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/job", FC_GET, fc_api_job, "job", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/jobs", FC_GET, fc_api_jobs, "jobs", FC_ACCESS_TOKEN, SERIAL},
    {"/api/v1/sse/{}/{}", FC_GET, fc_api_job_sse, "job_sse", FC_ACCESS_SUBSCRIBE_JOB, SERIAL},
    {"/api/v1/stats/sse", FC_GET, fc_api_stats_sse, "stats_sse", FC_ACCESS_ADMIN, SERIAL},
    {"/api/v1/session", FC_GET, fc_api_session, "session", FC_ACCESS_OPEN, SERIAL},
    {"/api/v1/logout", FC_POST, fc_api_logout, "logout", FC_ACCESS_OPEN, SERIAL},
    {"/healthz", FC_GET, fc_api_healthz, "healthz", FC_ACCESS_OPEN, SERIAL},
    {"/metrics", FC_GET, fc_api_metrics, "metrics", FC_ACCESS_OPEN, SERIAL},
    {"/assets/{}", FC_GET, fc_api_dashboard, "dashboard", FC_ACCESS_OPEN, SERIAL},
    {"/favicon.ico", FC_GET, fc_api_dashboard, "dashboard", FC_ACCESS_OPEN, SERIAL},
    {"/", FC_GET, fc_api_dashboard, "dashboard", FC_ACCESS_OPEN, SERIAL},
};

fc_app_t *fc_app_of(fc_req_t *req) { return fc_http_opts(req->http)->ud; }

const fc_route_t *fc_api_routes(size_t *n) {
  *n = FC_ARRAY_LEN(routes);
  return routes;
}

fc_app_t *fc_api_new(const fc_config_t *cfg) {
  fc_app_t *app = fc_xcalloc(1, sizeof *app);
  app->cfg = cfg;
  app->started_ms = fc_mono_ms();
  app->started_wall_ms = fc_now_ms();
  return app;
}

void fc_api_free(fc_app_t *app) { free(app); }
