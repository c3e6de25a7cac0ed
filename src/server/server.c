/* The composition root: config -> each module's options; hub, sse, ws, http,
 * store, auth, net, jobs wired onto api's state; signals; teardown. */
#include "server/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "jobs/jobs.h"

/* Everything the wiring owns besides api's state. The loops' ud. */
typedef struct {
  fc_app_t *app;         /* api's state; holds the modules */
  fc_hub_rule_t *rules;  /* the hub's and store's retention rules: job.* first, then --retention-rule */
  uv_signal_t sigterm, sigint;
} server_t;

static void on_accept(fc_conn_t *c) {
  server_t *s = c->loop->ud;
  fc_http_accept(s->app->http, c);
}

static void on_wake(fc_loop_t *l) {
  fc_app_t *app = ((server_t *)l->ud)->app;
  fc_api_publish_answer(app, l);
  fc_jobs_wake(app->jobs, l);
  fc_sse_wake(app->sse, l);
  fc_ws_wake(app->ws, l);
}

static void on_tick(fc_loop_t *l, uint64_t now) {
  fc_app_t *app = ((server_t *)l->ud)->app;
  fc_http_tick(l, now);
  fc_sse_tick(app->sse, l, now);
  fc_ws_tick(app->ws, l);
  if (l->index == 0) fc_hub_sweep(app->hub, fc_mono_ms());
}

static void on_stop(fc_loop_t *l) {
  fc_app_t *app = ((server_t *)l->ud)->app;
  if (l->index == 0) fc_jobs_stop(app->jobs);
  fc_http_stop(l);
}

static void hub_notify(unsigned thread, void *ud) {
  fc_app_t *app = ud;
  fc_net_wake(app->net, thread);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;
  fc_log(FC_LOG_INFO, "stopping", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  fc_net_stop(s->app->net);
}

static fc_log_level_t level_of(const char *s) {
  if (!strcmp(s, "debug")) return FC_LOG_DEBUG;
  if (!strcmp(s, "warn")) return FC_LOG_WARN;
  if (!strcmp(s, "error")) return FC_LOG_ERROR;
  return FC_LOG_INFO;
}

/* Loads a channel from storage when it comes into memory (the hub's hook). */
static int load_channel(void *ud, fc_channel_t *ch, unsigned limit) {
  fc_app_t *app = ud;
  return app->store ? fc_store_load_channel(app->store, ch, limit) : -EIO;
}

/* Opens the store and gives the hub its id counter; channels load on use. */
static int open_store(server_t *s, char *err, size_t errlen) {
  fc_app_t *app = s->app;
  const fc_config_t *cfg = app->cfg;
  uint64_t t0 = fc_mono_ms();
  app->store = fc_store_open(&(fc_store_opts_t){.dir = cfg->data_dir,
                                                .durability = !strcmp(cfg->durability, "power")
                                                                  ? FC_DURABILITY_POWER
                                                                  : FC_DURABILITY_CRASH,
                                                .max_bytes = cfg->max_db_size,
                                                .commit_delay_us = cfg->commit_delay_us,
                                                .hub = app->hub,
                                                .rules = s->rules,
                                                .nrules = cfg->nrules + 1},
                             err, errlen);
  if (!app->store) return -1;
  fc_hub_restore_seq(app->hub, fc_store_last_seq(app->store));
  fc_log(FC_LOG_INFO, "storage open", "dir=%s durability=%s last_id=%llu ms=%llu", cfg->data_dir,
         cfg->durability, (unsigned long long)fc_store_last_seq(app->store),
         (unsigned long long)(fc_mono_ms() - t0));
  return 0;
}

/* The jobs hooks: wake a loop, mint an exec task's token, send a direct
 * WebSocket message. `ud` is the app. */
static void jobs_wake(void *ud, unsigned thread) {
  fc_app_t *app = ud;
  fc_net_wake(app->net, thread);
}

static char *jobs_mint(void *ud, const char *sub, char *const *channels, size_t n, int64_t ttl_s) {
  fc_app_t *app = ud;
  fc_claims_t c = {.sub = (char *)sub,
                   .publish = (char **)channels,
                   .npublish = n,
                   .subscribe = (char **)channels,
                   .nsubscribe = n};
  return fc_auth_mint(app->auth, &c, fc_now_ms() / 1000, ttl_s);
}

static int jobs_send_direct(void *ud, const char *to, const char *from, const json_t *data) {
  fc_app_t *app = ud;
  return fc_ws_send_direct(app->ws, to, from, data);
}

/* The workflow runner, on loop 0. Without it the server runs on (the jobs
 * routes answer 503) and says why in the log. */
static void start_jobs(server_t *s) {
  fc_app_t *app = s->app;
  const fc_config_t *cfg = app->cfg;
  char err[512];
  struct sqlite3 *db = NULL;
  if (app->store && !(db = fc_store_open_db(cfg->data_dir, err, sizeof err))) {
    fc_log(FC_LOG_ERROR, "workflows disabled", "error=\"%s\"", err);
    return;
  }
  app->jobs = fc_jobs_new(&(fc_jobs_opts_t){.loop = fc_net_loop(app->net, 0),
                                            .threads = cfg->threads,
                                            .workflows_dir = cfg->workflows_dir,
                                            .max_jobs = cfg->max_jobs,
                                            .max_queued_jobs = cfg->max_queued_jobs,
                                            .hub = app->hub,
                                            .port = fc_net_port(app->net),
                                            .db = db,
                                            .data_dir = cfg->data_dir,
                                            .durable_power = !strcmp(cfg->durability, "power"),
                                            .publish = fc_api_job_publish,
                                            .publish_ud = app,
                                            .wake = jobs_wake,
                                            .mint = app->auth ? jobs_mint : NULL,
                                            .send_direct = jobs_send_direct,
                                            .ud = app},
                          err, sizeof err);
  if (!app->jobs) fc_log(FC_LOG_ERROR, "workflows disabled", "error=\"%s\"", err);
}

/* Stops storage (committing what is queued), answers what it finished, and
 * frees everything. */
static void server_free(server_t *s) {
  fc_app_t *app = s->app;
  fc_store_close(app->store);
  fc_api_auth_free(app);
  for (unsigned i = 0; app->net && i < app->cfg->threads; i++) fc_api_publish_answer(app, fc_net_loop(app->net, i));
  fc_net_free(app->net);
  fc_jobs_free(app->jobs);
  fc_http_free(app->http);
  fc_sse_free(app->sse);
  fc_ws_free(app->ws);
  fc_hub_free(app->hub);
  fc_api_free(app);
  free(s->rules);
}

/* Creates the modules below net, in order; net last. Returns 0, or -1 with
 * `err` (what was made is freed by server_free). */
static int build(server_t *s, char *err, size_t errlen) {
  fc_app_t *app = s->app;
  const fc_config_t *cfg = app->cfg;
  /* Rule 0 keeps a job's whole stream until its final event is read (src/jobs). */
  size_t nrules = cfg->nrules + 1;
  s->rules = fc_xcalloc(nrules + 1, sizeof *s->rules);
  s->rules[0] = (fc_hub_rule_t){"job.*", FC_JOBS_RETENTION, 0};
  for (size_t i = 0; i < cfg->nrules; i++)
    s->rules[i + 1] = (fc_hub_rule_t){cfg->rules[i].pattern, cfg->rules[i].count, cfg->rules[i].max_age_s};
  bool durable = !strcmp(cfg->storage, "sqlite");
  app->hub = fc_hub_new(&(fc_hub_opts_t){.threads = cfg->threads,
                                         .retention = cfg->retention,
                                         .rules = s->rules,
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
  app->ws = fc_api_ws_new(app);
  size_t nroutes;
  const fc_route_t *routes = fc_api_routes(&nroutes);
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
      .nroutes = nroutes,
      .authorize = fc_api_authorize,
      .ud = app,
  });
  if ((durable && open_store(s, err, errlen) < 0) || fc_api_auth_init(app, err, errlen) < 0) return -1;
  void *uds[256];
  for (unsigned i = 0; i < cfg->threads; i++) uds[i] = s;
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
                        uds, err, errlen);
  return app->net ? 0 : -1;
}

int fc_server_run(const fc_config_t *cfg) {
  fc_log_set_level(level_of(cfg->log_level));
  signal(SIGPIPE, SIG_IGN);
  server_t s = {.app = fc_api_new(cfg)};
  char err[512];
  if (build(&s, err, sizeof err) < 0) {
    fprintf(stderr, "flowcast: %s\n", err);
    server_free(&s);
    return 1;
  }
  fc_loop_t *l0 = fc_net_loop(s.app->net, 0);
  uv_signal_init(&l0->uv, &s.sigterm);
  uv_signal_init(&l0->uv, &s.sigint);
  s.sigterm.data = s.sigint.data = &s;
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  start_jobs(&s);
  fc_log(FC_LOG_INFO, "listening", "addr=%s:%d threads=%u retention=%u keepalive_s=%u", cfg->host,
         fc_net_port(s.app->net), cfg->threads, cfg->retention, cfg->keepalive_s);
  fc_net_run(s.app->net);
  server_free(&s);
  fc_log(FC_LOG_INFO, "stopped", "status=0");
  return 0;
}
