/* Operations endpoints: health, Prometheus metrics and the dashboard page. */
#include <string.h>

#include "api/api.h"
#include "pub/pub.h"
#include "jobs/jobs.h"

/* The dashboard page, embedded from web/index.html at build time. */
extern const unsigned char fc_web_index_html[];
extern const size_t fc_web_index_html_len;

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
  char body[160];
  int n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"redis\":{\"state\":\"%s\"}}", link.up ? "ok" : "degraded",
                   link.up ? "up" : "down");
  fc_http_respond(req, link.up ? 200 : 503, "application/json", NULL, body, (size_t)n);
}

static void metric(fc_buf_t *b, const char *name, const char *type, const char *help, unsigned long long v) {
  fc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

void fc_api_metrics(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  fc_sse_stats_t s;
  fc_sse_stats(app->sse, &s);
  fc_ws_stats_t w;
  fc_ws_stats(app->ws, &w);
  size_t nch = fc_hub_channel_count(app->hub);
  fc_net_stats_t n;
  fc_net_stats(app->net, &n);
  fc_buf_t b;
  fc_buf_init(&b);
  metric(&b, "flowcast_connections", "gauge", "Open client connections.", fc_http_stats.connections);
  metric(&b, "flowcast_connections_total", "counter", "Connections accepted.", fc_http_stats.connections_total);
  metric(&b, "flowcast_connections_max", "gauge", "Open connections allowed (--max-connections, or derived).",
         n.max_connections);
  metric(&b, "flowcast_connections_max_per_ip", "gauge", "Open connections allowed per address (0: no cap).",
         n.max_connections_per_ip);
  fc_buf_puts(&b, "# HELP flowcast_connections_refused_total Connections answered 503 and closed at accept.\n"
                  "# TYPE flowcast_connections_refused_total counter\n");
  fc_buf_printf(&b, "flowcast_connections_refused_total{reason=\"max_connections\"} %llu\n",
                (unsigned long long)n.refused_max);
  fc_buf_printf(&b, "flowcast_connections_refused_total{reason=\"max_connections_per_ip\"} %llu\n",
                (unsigned long long)n.refused_per_ip);
  fc_buf_printf(&b, "flowcast_connections_refused_total{reason=\"fd_limit\"} %llu\n",
                (unsigned long long)n.refused_fds);
  metric(&b, "flowcast_accept_pauses_total", "counter",
         "Times a loop stopped accepting for a while (out of file descriptors or memory).", n.accept_pauses);
  metric(&b, "flowcast_requests_total", "counter", "HTTP requests received.", fc_http_stats.requests_total);
  metric(&b, "flowcast_responses_4xx_total", "counter", "Responses with a 4xx status.", fc_http_stats.responses_4xx);
  metric(&b, "flowcast_responses_5xx_total", "counter", "Responses with a 5xx status.", fc_http_stats.responses_5xx);
  metric(&b, "flowcast_request_timeouts_total", "counter", "Requests whose head did not arrive in time.",
         fc_http_stats.timeouts_total);
  metric(&b, "flowcast_subscribers", "gauge", "Open SSE streams and WebSocket sessions.", s.subscribers + w.sessions);
  metric(&b, "flowcast_ws_sessions", "gauge", "Open WebSocket sessions.", w.sessions);
  metric(&b, "flowcast_channels", "gauge", "Channels known.", nch);
  metric(&b, "flowcast_events_published_total", "counter", "Events accepted from publishers.",
         fc_pub_published(app->pub));
  metric(&b, "flowcast_events_delivered_total", "counter", "Events queued to subscribers.",
         s.delivered_total + w.delivered_total);
  metric(&b, "flowcast_subscriber_drops_total", "counter",
         "Subscribers disconnected because their queue passed its bound.", s.drops_total + w.drops_total);
  metric(&b, "flowcast_socket_writes_total", "counter",
         "Writes to clients: a writev each, or a send in an io_uring submission.", n.writes);
  metric(&b, "flowcast_socket_writes_batched_total", "counter",
         "Of those, sends made in io_uring submissions, several to a system call (--io-uring).", n.batched);
  metric(&b, "flowcast_stream_write_passes_total", "counter", "Loop passes that wrote subscriber streams.",
         n.bulk_passes);
  metric(&b, "flowcast_stream_write_holds_total", "counter",
         "Passes after which a busy loop held stream writes to coalesce events (--coalesce-ms).", n.bulk_held);
  if (app->store) {
    fc_store_stats_t st;
    fc_store_stats(app->store, &st);
    metric(&b, "flowcast_store_commits_total", "counter", "Group commits of published events.", st.groups);
    metric(&b, "flowcast_store_events_total", "counter", "Events committed to storage.", st.events);
    metric(&b, "flowcast_store_failures_total", "counter", "Publishes refused by storage (full disk, I/O).",
           st.failures);
    metric(&b, "flowcast_store_trimmed_total", "counter", "Stored events removed by retention.", st.trimmed);
    fc_store_link_t link;
    if (fc_store_link(app->store, &link)) {
      metric(&b, "flowcast_redis_up", "gauge", "1 while both Redis connections are open.", link.up);
      metric(&b, "flowcast_redis_reconnects_total", "counter", "Redis connections opened again after a loss.",
             link.reconnects);
      metric(&b, "flowcast_redis_catch_ups_total", "counter",
             "Times every channel in memory was read again from Redis (after the bus came back).", link.catch_ups);
    }
  }
  fc_buf_puts(&b, "# HELP flowcast_rate_limited_total Publishes, channel creations and WebSocket messages refused by "
                  "a rate limit (--publish-rate, --channel-create-limit, --ws-rate).\n"
                  "# TYPE flowcast_rate_limited_total counter\n");
  fc_buf_printf(&b, "flowcast_rate_limited_total{limit=\"publish_rate\"} %llu\n", fc_api_publish_limited_total);
  fc_buf_printf(&b, "flowcast_rate_limited_total{limit=\"channel_create\"} %llu\n", fc_api_create_limited_total);
  fc_buf_printf(&b, "flowcast_rate_limited_total{limit=\"ws_rate\"} %llu\n", (unsigned long long)w.rate_limited_total);
  fc_jobs_metrics(app->jobs, &b);
  metric(&b, "flowcast_uptime_seconds", "gauge", "Seconds since start.", (fc_mono_ms() - app->started_ms) / 1000);
  fc_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data, b.len);
  fc_buf_dispose(&b);
}

void fc_api_dashboard(fc_req_t *req) {
  fc_http_respond(req, 200, "text/html; charset=utf-8", "Cache-Control: no-cache\r\n", fc_web_index_html,
                  fc_web_index_html_len);
}
