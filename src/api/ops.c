/* Operations endpoints: health and metrics (Prometheus text, or OpenMetrics
 * when the scraper asks for it), and the server's sample that both /metrics
 * and the stats stream (stats.c) read. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/api.h"
#include "jobs/jobs.h"
#include "pub/pub.h"

/* 200 {"status":"ok"}; in cluster mode with the Redis link's state, and 503
 * "degraded" while Redis is away (streams stay open, publishes fail). */
void fc_api_healthz(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  fc_store_link_t link;
  if (!app->store || !fc_store_link(app->store, &link)) {
    static const char ok[] = "{\"status\":\"ok\"}";
    fc_http_respond(req, 200, "application/json", NULL, ok, sizeof ok - 1);
    return;
  }
  /* Cluster mode: the node, and the workflows whose definition differs from
   * the cluster's (a warning: the node still serves). */
  fc_buf_t jobs, b;
  fc_buf_init(&jobs);
  fc_buf_init(&b);
  bool differ = fc_jobs_health(app->jobs, &jobs);
  fc_buf_printf(&b, "{\"status\":\"%s\",\"redis\":{\"state\":\"%s\"}", link.up && !differ ? "ok" : "degraded",
                link.up ? "up" : "down");
  fc_buf_append(&b, jobs.data, jobs.len);
  fc_buf_puts(&b, "}");
  fc_http_respond(req, link.up ? 200 : 503, "application/json", NULL, b.data, b.len);
  fc_buf_dispose(&jobs);
  fc_buf_dispose(&b);
}

static void read_process(fc_api_sample_t *s) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    s->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                     ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    unsigned long long vsz = 0, rss = 0;
    if (fscanf(f, "%llu %llu", &vsz, &rss) == 2) {
      long page = sysconf(_SC_PAGESIZE);
      s->virtual_bytes = vsz * (unsigned long long)page;
      s->resident_bytes = rss * (unsigned long long)page;
    }
    fclose(f);
  }
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    for (struct dirent *e; (e = readdir(d));)
      if (e->d_name[0] != '.') s->open_fds++;
    closedir(d);
    s->open_fds--; /* the directory's own descriptor */
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) s->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : rl.rlim_cur;
}

void fc_api_sample(fc_app_t *app, fc_api_sample_t *s) {
  memset(s, 0, sizeof *s);
  fc_sse_stats(app->sse, &s->sse);
  fc_ws_stats(app->ws, &s->ws);
  fc_net_stats(app->net, &s->net);
  s->channels = fc_hub_channel_count(app->hub);
  s->published = fc_pub_published(app->pub);
  fc_pub_latency(app->pub, &s->latency);
  if (app->store) {
    s->has_store = true;
    fc_store_stats(app->store, &s->store);
    s->has_link = fc_store_link(app->store, &s->link);
  }
  for (size_t i = 0; i < FC_JOBS_NSTATUS; i++) s->job_status[i] = fc_jobs_count(app->jobs, i, &s->jobs[i]);
  s->uptime_ms = fc_mono_ms() - app->started_ms;
  read_process(s);
}

/* ---- /metrics -------------------------------------------------------------- */

typedef struct {
  fc_buf_t b;
  bool om; /* OpenMetrics 1.0: a counter family is named without its _total */
} mw_t;

static void family(mw_t *w, const char *name, const char *type, const char *help) {
  int n = (int)strlen(name);
  if (w->om && !strcmp(type, "counter") && n > 6 && !strcmp(name + n - 6, "_total")) n -= 6;
  fc_buf_printf(&w->b, "# HELP %.*s %s\n# TYPE %.*s %s\n", n, name, help, n, name, type);
}

static void metric(mw_t *w, const char *name, const char *type, const char *help, unsigned long long v) {
  family(w, name, type, help);
  fc_buf_printf(&w->b, "%s %llu\n", name, v);
}

static void metric_f(mw_t *w, const char *name, const char *type, const char *help, double v) {
  family(w, name, type, help);
  fc_buf_printf(&w->b, "%s %.6f\n", name, v);
}

static void latency_histogram(mw_t *w, const fc_pub_latency_t *l) {
  family(w, "flowcast_publish_latency_seconds", "histogram",
         "Time from a parsed publish to its answer, once its events are stored.");
  unsigned long long cum = 0;
  for (size_t i = 0; i < FC_PUB_LATENCY_BUCKETS; i++) {
    cum += l->buckets[i];
    fc_buf_printf(&w->b, "flowcast_publish_latency_seconds_bucket{le=\"%g\"} %llu\n", fc_pub_latency_le_us[i] / 1e6,
                  cum);
  }
  fc_buf_printf(&w->b, "flowcast_publish_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)l->count);
  fc_buf_printf(&w->b, "flowcast_publish_latency_seconds_count %llu\n", (unsigned long long)l->count);
  fc_buf_printf(&w->b, "flowcast_publish_latency_seconds_sum %.6f\n", l->sum_us / 1e6);
}

static void process_metrics(mw_t *w, fc_app_t *app, const fc_api_sample_t *s) {
  metric_f(w, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", s->cpu_seconds);
  metric(w, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", s->resident_bytes);
  metric(w, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", s->virtual_bytes);
  metric(w, "process_open_fds", "gauge", "Number of open file descriptors.", s->open_fds);
  if (s->max_fds) metric(w, "process_max_fds", "gauge", "Maximum number of open file descriptors.", s->max_fds);
  metric_f(w, "process_start_time_seconds", "gauge", "Start time of the process since the epoch in seconds.",
           app->started_wall_ms / 1000.0);
}

static void store_metrics(mw_t *w, const fc_api_sample_t *s) {
  const fc_store_stats_t *st = &s->store;
  metric(w, "flowcast_store_commits_total", "counter", "Group commits of published events.", st->groups);
  metric(w, "flowcast_store_events_total", "counter", "Events committed to storage.", st->events);
  metric(w, "flowcast_store_failures_total", "counter", "Publishes refused by storage (full disk, I/O).", st->failures);
  metric(w, "flowcast_store_trimmed_total", "counter", "Stored events removed by retention.", st->trimmed);
  if (!s->has_link) return;
  metric(w, "flowcast_redis_up", "gauge", "1 while both Redis connections are open.", s->link.up);
  metric(w, "flowcast_redis_reconnects_total", "counter", "Redis connections opened again after a loss.",
         s->link.reconnects);
  metric(w, "flowcast_redis_catch_ups_total", "counter",
         "Times every channel in memory was read again from Redis (after the bus came back).", s->link.catch_ups);
}

static void connection_metrics(mw_t *w, const fc_api_sample_t *s) {
  const fc_net_stats_t *n = &s->net;
  metric(w, "flowcast_connections", "gauge", "Open client connections.", fc_http_stats.connections);
  metric(w, "flowcast_connections_accepted_total", "counter", "Connections accepted.", fc_http_stats.connections_total);
  metric(w, "flowcast_connections_max", "gauge", "Open connections allowed (--max-connections, or derived).",
         n->max_connections);
  metric(w, "flowcast_connections_max_per_ip", "gauge", "Open connections allowed per address (0: no cap).",
         n->max_connections_per_ip);
  family(w, "flowcast_connections_refused_total", "counter", "Connections answered 503 and closed at accept.");
  fc_buf_printf(&w->b, "flowcast_connections_refused_total{reason=\"max_connections\"} %llu\n",
                (unsigned long long)n->refused_max);
  fc_buf_printf(&w->b, "flowcast_connections_refused_total{reason=\"max_connections_per_ip\"} %llu\n",
                (unsigned long long)n->refused_per_ip);
  fc_buf_printf(&w->b, "flowcast_connections_refused_total{reason=\"fd_limit\"} %llu\n",
                (unsigned long long)n->refused_fds);
  metric(w, "flowcast_accept_pauses_total", "counter",
         "Times a loop stopped accepting for a while (out of file descriptors or memory).", n->accept_pauses);
  metric(w, "flowcast_socket_writes_total", "counter",
         "Writes to clients: a writev each, or a send in an io_uring submission.", n->writes);
  metric(w, "flowcast_socket_writes_batched_total", "counter",
         "Of those, sends made in io_uring submissions, several to a system call (--io-uring).", n->batched);
  metric(w, "flowcast_stream_write_passes_total", "counter", "Loop passes that wrote subscriber streams.",
         n->bulk_passes);
  metric(w, "flowcast_stream_write_holds_total", "counter",
         "Passes after which a busy loop held stream writes to coalesce events (--coalesce-ms).", n->bulk_held);
}

/* True when the scraper accepts OpenMetrics text (as Prometheus asks). */
static bool wants_openmetrics(fc_req_t *req) {
  fc_str_t a = fc_req_header(req, "accept");
  static const char om[] = "application/openmetrics-text";
  for (size_t i = 0; a.base && i + sizeof om - 1 <= a.len; i++)
    if (!strncasecmp(a.base + i, om, sizeof om - 1)) return true;
  return false;
}

void fc_api_metrics(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  fc_api_sample_t s;
  fc_api_sample(app, &s);
  mw_t w = {.om = wants_openmetrics(req)};
  fc_buf_init(&w.b);
  connection_metrics(&w, &s);
  metric(&w, "flowcast_requests_total", "counter", "HTTP requests received.", fc_http_stats.requests_total);
  metric(&w, "flowcast_responses_4xx_total", "counter", "Responses with a 4xx status.", fc_http_stats.responses_4xx);
  metric(&w, "flowcast_responses_5xx_total", "counter", "Responses with a 5xx status.", fc_http_stats.responses_5xx);
  metric(&w, "flowcast_request_timeouts_total", "counter", "Requests whose head did not arrive in time.",
         fc_http_stats.timeouts_total);
  metric(&w, "flowcast_http2_connections_total", "counter", "Connections that spoke HTTP/2 (h2 or h2c).",
         fc_http_stats.h2_connections_total);
  metric(&w, "flowcast_http2_streams_total", "counter", "HTTP/2 streams opened by clients.",
         fc_http_stats.h2_streams_total);
  metric(&w, "flowcast_http2_abuse_goaways_total", "counter",
         "HTTP/2 connections ended with GOAWAY for a flood (resets, SETTINGS, PING, header lists).",
         fc_http_stats.h2_goaway_abuse);
  metric(&w, "flowcast_subscribers", "gauge", "Open SSE streams and WebSocket sessions.",
         s.sse.subscribers + s.ws.sessions);
  metric(&w, "flowcast_ws_sessions", "gauge", "Open WebSocket sessions.", s.ws.sessions);
  metric(&w, "flowcast_channels", "gauge", "Channels known.", s.channels);
  metric(&w, "flowcast_events_published_total", "counter", "Events accepted from publishers.", s.published);
  metric(&w, "flowcast_events_delivered_total", "counter", "Events queued to subscribers.",
         s.sse.delivered_total + s.ws.delivered_total);
  metric(&w, "flowcast_subscriber_drops_total", "counter",
         "Subscribers disconnected because their queue passed its bound.", s.sse.drops_total + s.ws.drops_total);
  latency_histogram(&w, &s.latency);
  family(&w, "flowcast_rate_limited_total", "counter",
         "Publishes, channel creations and WebSocket messages refused by a rate limit (--publish-rate, "
         "--channel-create-limit, --ws-rate).");
  fc_buf_printf(&w.b, "flowcast_rate_limited_total{limit=\"publish_rate\"} %llu\n", fc_api_publish_limited_total);
  fc_buf_printf(&w.b, "flowcast_rate_limited_total{limit=\"channel_create\"} %llu\n", fc_api_create_limited_total);
  fc_buf_printf(&w.b, "flowcast_rate_limited_total{limit=\"ws_rate\"} %llu\n",
                (unsigned long long)s.ws.rate_limited_total);
  if (s.has_store) store_metrics(&w, &s);
  fc_jobs_metrics(app->jobs, &w.b);
  metric(&w, "flowcast_uptime_seconds", "gauge", "Seconds since start.", s.uptime_ms / 1000);
  process_metrics(&w, app, &s);
  if (w.om) fc_buf_puts(&w.b, "# EOF\n");
  fc_http_respond(req, 200,
                  w.om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                       : "text/plain; version=0.0.4; charset=utf-8",
                  NULL, w.b.data, w.b.len);
  fc_buf_dispose(&w.b);
}
