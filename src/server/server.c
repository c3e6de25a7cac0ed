/* The composition root: config -> each module's options; hub, sse, http,
 * store, auth, net, then pub and ws on net's mailboxes, then jobs, wired onto
 * api's state; signals; teardown. */
#include "server/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "jobs/jobs.h"
#include "pub/pub.h"
#include "tls/tls.h"

/* Everything the wiring owns besides api's state. The loops' ud. */
typedef struct {
  fc_app_t *app;                      /* api's state; holds the modules */
  fc_hub_rule_t *rules;               /* the hub's retention rules: job.* first, then --retention-rule */
  fc_presence_rule_t *presence_rules; /* cfg's, for presence */
  fc_prstore_t *prstore;              /* cluster mode: presence entries in Redis */
  fc_store_age_rule_t *ages;          /* the rules' age limits, for storage */
  fc_msg_t *hub_msgs;                 /* [threads]: each loop's "the hub's inbox has events" */
  uv_signal_t sigterm, sigint;
  fc_tls_t *tls;      /* --tls-cert: the port speaks HTTPS; NULL: plain */
  uv_signal_t sighup; /* reloads the certificate (with tls only) */
} server_t;

/* ALPN: HTTP/2 first, HTTP/1.1 for clients without it. */
static const char *const h2_alpn[] = {"h2", "http/1.1", NULL};

static fc_app_t *app_of(fc_loop_t *l) { return ((server_t *)fc_loop_ud(l))->app; }

static void on_accept(fc_conn_t *c) {
  server_t *s = fc_loop_ud(fc_conn_loop(c));
  int rc = s->tls ? fc_tls_attach(s->tls, c) : 0;
  fc_http_accept(s->app->http, c);
  if (rc < 0) fc_conn_close(c, false);
}

/* SIGHUP: new handshakes use the certificate files as they are now. */
static void on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  server_t *s = h->data;
  char err[512];
  if (fc_tls_reload(s->tls, err, sizeof err) < 0)
    fc_log(FC_LOG_ERROR, "tls certificate reload failed, the old one stays", "error=\"%s\"", err);
}

static void on_tick(fc_loop_t *l, uint64_t now) {
  fc_app_t *app = app_of(l);
  fc_http_tick(l, now);
  fc_sse_tick(app->sse, l, now);
  fc_ws_tick(app->ws, l);
  if (fc_loop_index(l) == 0) fc_hub_sweep(app->hub, fc_mono_ms());
}

static void on_stop(fc_loop_t *l) {
  if (fc_loop_index(l) == 0) fc_jobs_stop(app_of(l)->jobs);
  fc_http_stop(l);
}

/* The hub's inbox for `thread` went from empty to not empty: its one
 * message goes to that loop's mailbox. It is not there any more (the hub
 * notifies again only after a drain, which runs once it left). Any thread. */
static void hub_notify(unsigned thread, void *ud) {
  server_t *s = ud;
  fc_net_post(s->app->net, thread, &s->hub_msgs[thread]);
}

/* Delivers the loop's inbox: each subscription link's deliver callback (SSE,
 * WebSocket, a job's channel trigger) gets its events. */
static void on_hub_msg(fc_loop_t *l, fc_msg_t *m, void *ud) {
  (void)m;
  server_t *s = ud;
  fc_hub_drain(s->app->hub, fc_loop_index(l));
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;
  fc_log(FC_LOG_INFO, "stopping", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  if (s->tls) uv_close((uv_handle_t *)&s->sighup, NULL);
  fc_net_stop(s->app->net);
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
  /* Redis deletes a quiet channel's aged events only on its next commit. */
  uint64_t age_s = fc_channel_max_age(l->ch);
  if (age_s && ev->time_ms < fc_now_ms() - (int64_t)(age_s * 1000)) return;
  fc_hub_restore_event(l->ch, &(fc_event_in_t){.name = ev->name,
                                               .data = ev->data,
                                               .from = ev->from,
                                               .is_json = ev->is_json,
                                               .seq = ev->seq,
                                               .n = ev->n,
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

/* A channel entered or left memory: in cluster mode this node subscribes to
 * its commits only while it holds it (the hub lock is held: this queues). */
static void on_channel(void *ud, const char *name, bool in_memory) {
  fc_app_t *app = ud;
  if (app->store) fc_store_interest(app->store, name, in_memory);
}

/* Expires retained events past their age limit once storage deleted them. */
static void on_aged(void *ud, int64_t now_ms) {
  fc_app_t *app = ud;
  fc_hub_expire(app->hub, now_ms);
}

/* Cluster mode: the Redis store. */
static int open_redis(fc_app_t *app, char *err, size_t errlen) {
  const fc_config_t *cfg = app->cfg;
  uint64_t t0 = fc_mono_ms();
  app->store = fc_store_redis_open(
      &(fc_store_redis_opts_t){
          .url = cfg->redis_url, .wait_replicas = cfg->redis_wait_replicas, .aged = on_aged, .aged_ud = app},
      err, errlen);
  if (!app->store) return -EIO; /* `err` says why */
  fc_log(FC_LOG_INFO, "storage open", "redis=%s last_id=%llu ms=%llu", fc_store_redis_where(app->store),
         (unsigned long long)fc_store_last_seq(app->store), (unsigned long long)(fc_mono_ms() - t0));
  return 0;
}

/* Opens the store; channels load on use. */
static int open_store(server_t *s, char *err, size_t errlen) {
  fc_app_t *app = s->app;
  const fc_config_t *cfg = app->cfg;
  if (*cfg->redis_url) return open_redis(app, err, errlen);
  uint64_t t0 = fc_mono_ms();
  size_t nages = cfg->nrules + 1;
  s->ages = fc_xcalloc(nages, sizeof *s->ages);
  for (size_t i = 0; i < nages; i++) s->ages[i] = (fc_store_age_rule_t){s->rules[i].pattern, s->rules[i].max_age_s};
  app->store = fc_store_sqlite_open(&(fc_store_sqlite_opts_t){.dir = cfg->data_dir,
                                                              .durability = !strcmp(cfg->durability, "power")
                                                                                ? FC_DURABILITY_POWER
                                                                                : FC_DURABILITY_CRASH,
                                                              .max_bytes = cfg->max_db_size,
                                                              .commit_delay_us = cfg->commit_delay_us,
                                                              .ages = s->ages,
                                                              .nages = nages,
                                                              .aged = on_aged,
                                                              .aged_ud = app},
                                    err, errlen);
  if (!app->store) return -EIO; /* `err` says why */
  fc_log(FC_LOG_INFO, "storage open", "dir=%s durability=%s last_id=%llu ms=%llu", cfg->data_dir, cfg->durability,
         (unsigned long long)fc_store_last_seq(app->store), (unsigned long long)(fc_mono_ms() - t0));
  return 0;
}

/* The jobs hooks: mint an exec task's token, send a direct WebSocket
 * message. `ud` is the app. */
static char *jobs_mint(void *ud, const char *sub, char *const *channels, size_t n, int64_t ttl_s) {
  fc_app_t *app = ud;
  fc_claims_t c = {
      .sub = (char *)sub, .publish = (char **)channels, .npublish = n, .subscribe = (char **)channels, .nsubscribe = n};
  return fc_auth_mint(app->auth, &c, fc_now_ms() / 1000, ttl_s);
}

static int jobs_send_direct(void *ud, const char *to, const char *from, const json_t *data) {
  fc_app_t *app = ud;
  return fc_ws_send_direct(app->ws, to, from, data);
}

static int jobs_claim(void *ud, const char *key, unsigned ttl_s) {
  fc_app_t *app = ud;
  return fc_store_claim(app->store, key, ttl_s);
}

/* The workflow runner, on loop 0. Without it the server runs on (the jobs
 * routes answer 503) and says why in the log. */
static void start_jobs(server_t *s) {
  fc_app_t *app = s->app;
  const fc_config_t *cfg = app->cfg;
  char err[512], node_name[300];
  if (*cfg->node_name) snprintf(node_name, sizeof node_name, "%s", cfg->node_name);
  else {
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(node_name, sizeof node_name, "%s:%d", host, fc_net_port(app->net));
  }
  app->jobs = fc_jobs_new(&(fc_jobs_opts_t){.loop = fc_net_loop(app->net, 0),
                                            .threads = cfg->threads,
                                            .workflows_dir = cfg->workflows_dir,
                                            .max_jobs = cfg->max_jobs,
                                            .max_queued_jobs = cfg->max_queued_jobs,
                                            .hub = app->hub,
                                            .port = fc_net_port(app->net),
                                            .data_dir = app->store ? cfg->data_dir : NULL,
                                            .durable_power = !strcmp(cfg->durability, "power"),
                                            .pub = app->pub,
                                            .net = app->net,
                                            .mint = app->auth ? jobs_mint : NULL,
                                            .send_direct = jobs_send_direct,
                                            .claim = *cfg->redis_url ? jobs_claim : NULL,
                                            .ud = app,
                                            .cluster_url = *cfg->redis_url ? cfg->redis_url : NULL,
                                            .node_name = node_name,
                                            .lease_s = cfg->job_lease_s},
                          err, sizeof err);
  if (!app->jobs) fc_log(FC_LOG_ERROR, "workflows disabled", "error=\"%s\"", err);
}

/* Stops storage (committing what is queued), answers what it finished, and
 * frees everything. */
static void server_free(server_t *s) {
  fc_app_t *app = s->app;
  fc_store_close(app->store);
  fc_api_auth_free(app);
  if (app->net) fc_net_deliver_rest(app->net);
  fc_pub_free(app->pub);
  fc_net_free(app->net);
  fc_prstore_close(s->prstore); /* after the connections' leaves were queued */
  fc_tls_free(s->tls);
  fc_jobs_free(app->jobs);
  fc_http_free(app->http);
  fc_sse_free(app->sse);
  fc_ws_free(app->ws);
  fc_presence_free(app->presence);
  fc_hub_free(app->hub);
  fc_api_free(app);
  free(s->hub_msgs);
  free(s->ages);
  free(s->rules);
  free(s->presence_rules);
}

/* Once net exists (its loops wait for fc_net_run): the hub's receiver, pub
 * and ws, which post to the loops' mailboxes. Returns 0 or -ENOSPC with `err`. */
static int wire_loops(server_t *s, char *err, size_t errlen) {
  fc_app_t *app = s->app;
  unsigned threads = app->cfg->threads;
  int rx = fc_net_receiver(app->net, on_hub_msg, s);
  if (rx >= 0) {
    s->hub_msgs = fc_xcalloc(threads, sizeof *s->hub_msgs);
    for (unsigned i = 0; i < threads; i++) s->hub_msgs[i].receiver = (unsigned)rx;
    app->pub = fc_pub_new(&(fc_pub_opts_t){.hub = app->hub, .store = app->store, .threads = threads, .net = app->net});
  }
  char node[300];
  if (*app->cfg->node_name) snprintf(node, sizeof node, "%s", app->cfg->node_name);
  else {
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(node, sizeof node, "%s:%d", host, fc_net_port(app->net));
  }
  fc_presence_set_node(app->presence, node);
  if (*app->cfg->redis_url && app->cfg->npresence_rules) {
    s->prstore = fc_prstore_open(app->cfg->redis_url, node, app->cfg->presence_ttl_s * 1000, fc_presence_remote,
                                 app->presence, err, errlen);
    if (!s->prstore) return -EIO; /* `err` says why */
    fc_presence_set_cluster(app->presence, s->prstore);
  }
  if (app->pub) app->ws = fc_api_ws_new(app);
  if (app->ws) return 0;
  snprintf(err, errlen, "too many mailbox receivers (at most %d)", FC_NET_MAX_RECEIVERS);
  return -ENOSPC;
}

/* Creates the modules below net, in order, then net, then what posts to its
 * loops. Returns 0, or a negative errno with `err` (what was made is freed by
 * server_free). */
static int build(server_t *s, char *err, size_t errlen) {
  fc_app_t *app = s->app;
  const fc_config_t *cfg = app->cfg;
  /* Rule 0 keeps a job's whole stream until its final event is read (src/jobs). */
  size_t nrules = cfg->nrules + 1;
  s->rules = fc_xcalloc(nrules + 1, sizeof *s->rules);
  s->rules[0] = (fc_hub_rule_t){"job.*", FC_JOBS_RETENTION, 0};
  for (size_t i = 0; i < cfg->nrules; i++)
    s->rules[i + 1] = (fc_hub_rule_t){cfg->rules[i].pattern, cfg->rules[i].count, cfg->rules[i].max_age_s};
  bool durable = !strcmp(cfg->storage, "sqlite") || *cfg->redis_url;
  app->hub = fc_hub_new(&(fc_hub_opts_t){.threads = cfg->threads,
                                         .retention = cfg->retention,
                                         .rules = s->rules,
                                         .nrules = nrules,
                                         .load = durable ? load_channel : NULL,
                                         .load_ud = app,
                                         .max_channels = cfg->max_channels,
                                         .idle_ms = (uint64_t)cfg->channel_idle_s * 1000,
                                         .notify = hub_notify,
                                         .notify_ud = s,
                                         .on_channel = on_channel,
                                         .on_channel_ud = app});
  s->presence_rules = fc_xcalloc(cfg->npresence_rules + 1, sizeof *s->presence_rules);
  for (size_t i = 0; i < cfg->npresence_rules; i++)
    s->presence_rules[i] = (fc_presence_rule_t){cfg->presence_rules[i].pattern, cfg->presence_rules[i].on};
  app->presence = fc_presence_new(&(fc_presence_opts_t){.hub = app->hub,
                                                        .rules = s->presence_rules,
                                                        .nrules = cfg->npresence_rules,
                                                        .max_entries = cfg->presence_max_entries});
  app->sse = fc_sse_new(&(fc_sse_opts_t){.hub = app->hub,
                                         .presence = app->presence,
                                         .threads = cfg->threads,
                                         .keepalive_ms = cfg->keepalive_s * 1000,
                                         .retry_ms = 3000,
                                         .queue_bytes = cfg->queue_bytes});
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
      .h2c = cfg->h2c,
      .h2_max_streams = cfg->h2_max_streams,
      .alpn = *cfg->tls_cert ? fc_tls_alpn : NULL,
  });
  int rc = durable ? open_store(s, err, errlen) : 0;
  if (rc == 0) rc = fc_api_auth_init(app, err, errlen);
  if (rc == 0 && *cfg->tls_cert) {
    s->tls = fc_tls_new(&(fc_tls_opts_t){.cert_file = cfg->tls_cert, .key_file = cfg->tls_key, .alpn = h2_alpn}, err,
                        errlen);
    if (!s->tls) rc = -EINVAL; /* `err` names the file */
  }
  if (rc < 0) return rc;
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
                                         .refuse_silently = s->tls != NULL,
                                         .h = {.on_accept = on_accept, .on_tick = on_tick, .on_stop = on_stop}},
                        uds, err, errlen);
  return app->net ? wire_loops(s, err, errlen) : -EIO; /* `err` says why */
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
  uv_signal_init(fc_loop_uv(l0), &s.sigterm);
  uv_signal_init(fc_loop_uv(l0), &s.sigint);
  s.sigterm.data = s.sigint.data = &s;
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  if (s.tls) {
    uv_signal_init(fc_loop_uv(l0), &s.sighup);
    s.sighup.data = &s;
    uv_signal_start(&s.sighup, on_sighup, SIGHUP);
  }
  start_jobs(&s);
  fc_log(FC_LOG_INFO, "listening", "addr=%s:%d threads=%u retention=%u keepalive_s=%u tls=%s", cfg->host,
         fc_net_port(s.app->net), cfg->threads, cfg->retention, cfg->keepalive_s, s.tls ? "true" : "false");
  fc_net_run(s.app->net);
  server_free(&s);
  fc_log(FC_LOG_INFO, "stopped", "status=0");
  return 0;
}
