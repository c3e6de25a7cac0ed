/* Wiring: config -> hub, http, sse, net; signals; the route table. */
#include "api/api.h"
#include "jobs/jobs.h"
#include "pub/pub.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last column: whether requests pipelined after one may be handled before
 * it is answered (fc_route_t.overlap). */
#define SERIAL false
#define OVERLAP true
static const fc_route_t routes[] = {
    {"/api/v1/channels/{}/events", FC_POST, fc_api_publish, "publish", FC_ACCESS_PUBLISH, OVERLAP},
    {"/api/v1/channels/{}/events", FC_GET, fc_api_history, "history", FC_ACCESS_SUBSCRIBE, SERIAL},
    {"/api/v1/channels/{}/sse", FC_GET, fc_api_channel_sse, "sse", FC_ACCESS_SUBSCRIBE, SERIAL},
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
    {"/healthz", FC_GET, fc_api_healthz, "healthz", FC_ACCESS_OPEN, SERIAL},
    {"/metrics", FC_GET, fc_api_metrics, "metrics", FC_ACCESS_OPEN, SERIAL},
    {"/", FC_GET, fc_api_dashboard, "dashboard", FC_ACCESS_OPEN, SERIAL},
};

fc_app_t *fc_app_of(fc_req_t *req) { return fc_http_opts(req->http)->ud; }

static void on_accept(fc_conn_t *c) {
  fc_app_t *app = fc_loop_ud(fc_conn_loop(c));
  fc_http_accept(app->http, c);
}

static void on_wake(fc_loop_t *l) {
  fc_app_t *app = fc_loop_ud(l);
  fc_jobs_wake(app->jobs, l);
}

static void on_tick(fc_loop_t *l, uint64_t now) {
  fc_app_t *app = fc_loop_ud(l);
  fc_http_tick(l, now);
  fc_sse_tick(app->sse, l, now);
  fc_ws_tick(app->ws, l);
  if (fc_loop_index(l) == 0) fc_hub_sweep(app->hub, fc_mono_ms());
}

static void on_stop(fc_loop_t *l) {
  fc_app_t *app = fc_loop_ud(l);
  if (fc_loop_index(l) == 0) fc_jobs_stop(app->jobs);
  fc_http_stop(l);
}

/* The hub's inbox for `thread` went from empty to not empty: its one
 * message goes to that loop's mailbox. It is not there any more (the hub
 * notifies again only after a drain, which runs once it left). Any thread. */
static void hub_notify(unsigned thread, void *ud) {
  fc_app_t *app = ud;
  fc_net_post(app->net, thread, &app->hub_msgs[thread]);
}

/* Delivers the loop's inbox: each subscription link's deliver callback (SSE,
 * WebSocket, a job's channel trigger) gets its events. */
static void on_hub_msg(fc_loop_t *l, fc_msg_t *m, void *ud) {
  (void)m;
  fc_app_t *app = ud;
  fc_hub_drain(app->hub, fc_loop_index(l));
}

static void on_signal(uv_signal_t *s, int signum) {
  fc_app_t *app = s->data;
  fc_log(FC_LOG_INFO, "stopping", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  fc_net_stop(app->net);
}

static fc_log_level_t level_of(const char *s) {
  if (!strcmp(s, "debug")) return FC_LOG_DEBUG;
  if (!strcmp(s, "warn")) return FC_LOG_WARN;
  if (!strcmp(s, "error")) return FC_LOG_ERROR;
  return FC_LOG_INFO;
}

/* The hub's load hook: a channel's stored counters and tail, read without
 * the hub lock (fc_hub_load_cb), turned into the hub's restore calls. */
typedef struct {
  fc_channel_t *ch;
  const fc_store_channel_t *c;
  bool counted;
} load_t;

static void restore_counters(load_t *l) {
  if (!l->counted) fc_hub_restore_counters(l->ch, l->c->first_seq, l->c->last_seq, l->c->next_n);
  l->counted = true;
}

static void restore_event(void *ud, const fc_store_event_t *ev) {
  load_t *l = ud;
  restore_counters(l); /* fc_store_load filled them before the first event */
  fc_hub_restore_event(l->ch, &(fc_event_in_t){.name = ev->name, .data = ev->data, .from = ev->from,
                                               .is_json = ev->is_json, .seq = ev->seq, .n = ev->n,
                                               .time_ms = ev->time_ms});
}

static int load_channel(void *ud, fc_channel_t *ch, unsigned limit) {
  fc_app_t *app = ud;
  if (!app->store) return -EIO;
  fc_store_channel_t c;
  load_t l = {ch, &c, false};
  int rc = fc_store_load(app->store, fc_channel_name(ch), limit, &c, restore_event, &l);
  if (rc > 0) restore_counters(&l);
  return rc;
}

/* Expires retained events past their age limit once storage deleted them. */
static void on_aged(void *ud, int64_t now_ms) {
  fc_app_t *app = ud;
  fc_hub_expire(app->hub, now_ms);
}

/* Opens the store; channels load on use. */
static int open_store(fc_app_t *app, char *err, size_t errlen) {
  const fc_config_t *cfg = app->cfg;
  uint64_t t0 = fc_mono_ms();
  size_t nages = cfg->nrules + 1;
  app->ages = fc_xcalloc(nages, sizeof *app->ages);
  for (size_t i = 0; i < nages; i++) app->ages[i] = (fc_store_age_rule_t){app->rules[i].pattern, app->rules[i].max_age_s};
  app->store = fc_store_sqlite_open(&(fc_store_sqlite_opts_t){.dir = cfg->data_dir,
                                                              .durability = !strcmp(cfg->durability, "power")
                                                                                ? FC_DURABILITY_POWER
                                                                                : FC_DURABILITY_CRASH,
                                                              .max_bytes = cfg->max_db_size,
                                                              .commit_delay_us = cfg->commit_delay_us,
                                                              .ages = app->ages,
                                                              .nages = nages,
                                                              .aged = on_aged,
                                                              .aged_ud = app},
                                    err, errlen);
  if (!app->store) return -1;
  fc_log(FC_LOG_INFO, "storage open", "dir=%s durability=%s last_id=%llu ms=%llu", cfg->data_dir,
         cfg->durability, (unsigned long long)fc_store_last_seq(app->store),
         (unsigned long long)(fc_mono_ms() - t0));
  return 0;
}

/* Stops storage (committing what is queued), answers what it finished, and
 * frees everything. */
static void app_free(fc_app_t *app) {
  fc_store_close(app->store);
  fc_api_auth_free(app);
  if (app->net) fc_net_deliver_rest(app->net);
  fc_pub_free(app->pub);
  fc_net_free(app->net);
  fc_jobs_free(app->jobs);
  fc_http_free(app->http);
  fc_sse_free(app->sse);
  fc_ws_free(app->ws);
  fc_hub_free(app->hub);
  free(app->hub_msgs);
  free(app->ages);
  free(app->rules);
  free(app);
}

/* Once net exists: the hub's and pub's receivers on its loops. */
static int wire_loops(fc_app_t *app) {
  int rx = fc_net_receiver(app->net, on_hub_msg, app);
  if (rx < 0) return rx;
  app->hub_msgs = fc_xcalloc(app->cfg->threads, sizeof *app->hub_msgs);
  for (unsigned i = 0; i < app->cfg->threads; i++) app->hub_msgs[i].receiver = (unsigned)rx;
  app->pub = fc_pub_new(&(fc_pub_opts_t){
      .hub = app->hub, .store = app->store, .threads = app->cfg->threads, .net = app->net});
  return app->pub ? 0 : -ENOSPC;
}

int fc_app_run(const fc_config_t *cfg) {
  fc_log_set_level(level_of(cfg->log_level));
  signal(SIGPIPE, SIG_IGN);
  fc_app_t *app = fc_xcalloc(1, sizeof *app);
  app->cfg = cfg;
  app->started_ms = fc_mono_ms();
  /* Rule 0 keeps a job's whole stream until its final event is read (src/jobs). */
  size_t nrules = cfg->nrules + 1;
  app->rules = fc_xcalloc(nrules + 1, sizeof *app->rules);
  app->rules[0] = (fc_hub_rule_t){"job.*", FC_JOBS_RETENTION, 0};
  for (size_t i = 0; i < cfg->nrules; i++)
    app->rules[i + 1] = (fc_hub_rule_t){cfg->rules[i].pattern, cfg->rules[i].count, cfg->rules[i].max_age_s};
  bool durable = !strcmp(cfg->storage, "sqlite");
  app->hub = fc_hub_new(&(fc_hub_opts_t){.threads = cfg->threads,
                                         .retention = cfg->retention,
                                         .rules = app->rules,
                                         .nrules = nrules,
                                         .load = durable ? load_channel : NULL,
                                         .load_ud = app,
                                         .max_channels = cfg->max_channels,
                                         .idle_ms = (uint64_t)cfg->channel_idle_s * 1000,
                                         .notify = hub_notify,
                                         .notify_ud = app});
  app->sse = fc_sse_new(&(fc_sse_opts_t){.hub = app->hub,
                                         .threads = cfg->threads,
                                         .keepalive_ms = cfg->keepalive_s * 1000,
                                         .retry_ms = 3000,
                                         .queue_bytes = cfg->queue_bytes});
  app->http = fc_http_new(&(fc_http_opts_t){
      .max_header_bytes = 16 * 1024,
      .max_url_bytes = 8 * 1024,
      .max_body_bytes = cfg->max_body,
      .header_timeout_ms = cfg->header_timeout_s * 1000,
      .idle_timeout_ms = cfg->idle_timeout_s * 1000,
      .body_timeout_ms = cfg->body_timeout_s * 1000,
      .send_timeout_ms = cfg->send_timeout_s * 1000,
      .cors_origins = (const char *const *)cfg->cors_list,
      .cors_credentials = cfg->cors_credentials,
      .routes = routes,
      .nroutes = FC_ARRAY_LEN(routes),
      .authorize = fc_api_authorize,
      .ud = app,
  });

  void *uds[256];
  for (unsigned i = 0; i < cfg->threads; i++) uds[i] = app;
  char err[512];
  if ((durable && open_store(app, err, sizeof err) < 0) || fc_api_auth_init(app, err, sizeof err) < 0) {
    fprintf(stderr, "flowcast: %s\n", err);
    app_free(app);
    return 1;
  }
  app->net = fc_net_new(&(fc_net_opts_t){.host = cfg->host,
                                         .port = cfg->port,
                                         .threads = cfg->threads,
                                         .stop_grace_ms = 5000,
                                         .coalesce_ms = cfg->coalesce_ms,
                                         .io_uring = cfg->io_uring,
                                         .max_conns = cfg->max_connections,
                                         .max_conns_per_ip = cfg->max_connections_per_ip,
                                         /* storage and its threads, a few spare, and an exec
                                          * job's pipes (stdin, stdout, stderr, and its pidfd) */
                                         .fd_reserve = 64 + 4 * cfg->max_jobs,
                                         .h = {on_accept, on_wake, on_tick, on_stop}},
                        uds, err, sizeof err);
  int status = 0;
  if (!app->net) {
    fprintf(stderr, "flowcast: %s\n", err);
    status = 1;
  } else if (wire_loops(app) < 0) {
    fprintf(stderr, "flowcast: cannot set up the loops' mailboxes\n");
    status = 1;
  } else if (!(app->ws = fc_api_ws_new(app))) {
    fprintf(stderr, "flowcast: cannot set up WebSocket sessions\n");
    status = 1;
  } else {
    fc_loop_t *l0 = fc_net_loop(app->net, 0);
    uv_signal_init(fc_loop_uv(l0), &app->sigterm);
    uv_signal_init(fc_loop_uv(l0), &app->sigint);
    app->sigterm.data = app->sigint.data = app;
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    if (!(app->jobs = fc_jobs_new(app, err, sizeof err))) fc_log(FC_LOG_ERROR, "workflows disabled", "error=\"%s\"", err);
    fc_log(FC_LOG_INFO, "listening", "addr=%s:%d threads=%u retention=%u keepalive_s=%u", cfg->host,
           fc_net_port(app->net), cfg->threads, cfg->retention, cfg->keepalive_s);
    fc_net_run(app->net);
  }
  app_free(app);
  if (status == 0) fc_log(FC_LOG_INFO, "stopped", "status=0");
  return status;
}
