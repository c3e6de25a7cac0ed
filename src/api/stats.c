/* GET /api/v1/stats/sse (admin): the server's sample once a second as an
 * unnamed SSE event of JSON, for the dashboard's charts. Each stream keeps
 * the previous sample's counters, so rates (events/s, CPU, publish latency
 * over the last second) are its own and need no shared state. A stream ends
 * when the server stops, its token expires, or the client stops reading
 * (more than STATS_QUEUE_BYTES unsent). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "fc_version.h"

#define STATS_INTERVAL_MS 1000
#define STATS_QUEUE_BYTES (64 * 1024)

typedef struct {
  fc_app_t *app;
  fc_stream_t *stream;
  uv_timer_t timer;
  int64_t expires_ms; /* 0: never */
  bool have_prev;
  uint64_t prev_ms, prev_published, prev_delivered;
  double prev_cpu;
  fc_pub_latency_t prev_lat;
} stats_stream_t;

/* The latency quantile `q` of the bucket counts `b` (`n` in all), in ms,
 * interpolated inside its bucket. */
static double quantile_ms(const uint64_t *b, uint64_t n, double q) {
  double rank = q * (double)n, cum = 0, lo = 0;
  for (size_t i = 0; i < FC_PUB_LATENCY_BUCKETS; i++) {
    double hi = fc_pub_latency_le_us[i];
    if (b[i] && cum + (double)b[i] >= rank) return (lo + (hi - lo) * (rank - cum) / (double)b[i]) / 1000.0;
    cum += (double)b[i];
    lo = hi;
  }
  return lo / 1000.0;
}

/* The publish latency of the operations answered since the last sample, or
 * JSON null when there were none. */
static json_t *latency_since(const fc_pub_latency_t *now, const fc_pub_latency_t *prev) {
  uint64_t d[FC_PUB_LATENCY_BUCKETS + 1], n = now->count - prev->count;
  if (n == 0) return json_null();
  for (size_t i = 0; i <= FC_PUB_LATENCY_BUCKETS; i++) d[i] = now->buckets[i] - prev->buckets[i];
  return json_pack("{s:I,s:f,s:f,s:f}", "count", (json_int_t)n, "avg",
                   (double)(now->sum_us - prev->sum_us) / n / 1000.0, "p50", quantile_ms(d, n, 0.5), "p99",
                   quantile_ms(d, n, 0.99));
}

static json_t *rate(uint64_t now, uint64_t prev, uint64_t ms) {
  return ms ? json_real((double)(now - prev) * 1000.0 / (double)ms) : json_null();
}

static json_t *cluster_json(fc_app_t *app, const fc_api_sample_t *s) {
  if (!s->has_link) return json_null();
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  char node[300];
  snprintf(node, sizeof node, "%s:%d", host, fc_net_port(app->net));
  return json_pack("{s:s,s:s,s:I,s:I}", "node", node, "redis", s->link.up ? "up" : "down", "reconnects",
                   (json_int_t)s->link.reconnects, "catch_ups", (json_int_t)s->link.catch_ups);
}

static json_t *sample_json(stats_stream_t *st) {
  fc_app_t *app = st->app;
  fc_api_sample_t s;
  fc_api_sample(app, &s);
  uint64_t now = fc_mono_ms(), ms = st->have_prev ? now - st->prev_ms : 0;
  uint64_t delivered = s.sse.delivered_total + s.ws.delivered_total;
  json_t *jobs = json_object();
  for (size_t i = 0; i < FC_JOBS_NSTATUS; i++) json_object_set_new(jobs, s.job_status[i], json_integer(s.jobs[i]));
  const char *kind = app->cfg->redis_url && *app->cfg->redis_url ? "redis" : app->cfg->storage;
  json_t *j = json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "time",
                        (json_int_t)fc_now_ms(), "version", FC_VERSION, "commit", FC_GIT_DESCRIBE, "uptime_s",
                        (json_int_t)(s.uptime_ms / 1000), "connections", (json_int_t)fc_http_stats.connections,
                        "subscribers", (json_int_t)(s.sse.subscribers + s.ws.sessions), "ws_sessions",
                        (json_int_t)s.ws.sessions, "channels", (json_int_t)s.channels, "published_total",
                        (json_int_t)s.published, "delivered_total", (json_int_t)delivered, "drops_total",
                        (json_int_t)(s.sse.drops_total + s.ws.drops_total), "published_per_s",
                        st->have_prev ? rate(s.published, st->prev_published, ms) : json_null(), "delivered_per_s",
                        st->have_prev ? rate(delivered, st->prev_delivered, ms) : json_null(), "publish_latency_ms",
                        st->have_prev ? latency_since(&s.latency, &st->prev_lat) : json_null(), "jobs", jobs);
  json_object_set_new(j, "storage",
                      json_pack("{s:s,s:I,s:I,s:I}", "kind", kind ? kind : "memory", "commits_total",
                                (json_int_t)s.store.groups, "events_total", (json_int_t)s.store.events,
                                "failures_total", (json_int_t)s.store.failures));
  json_t *cpu = st->have_prev && ms ? json_real((s.cpu_seconds - st->prev_cpu) * 100000.0 / (double)ms) : json_null();
  json_object_set_new(j, "process",
                      json_pack("{s:o,s:I,s:I}", "cpu_percent", cpu, "resident_bytes", (json_int_t)s.resident_bytes,
                                "open_fds", (json_int_t)s.open_fds));
  json_object_set_new(j, "cluster", cluster_json(app, &s));
  st->have_prev = true;
  st->prev_ms = now;
  st->prev_published = s.published;
  st->prev_delivered = delivered;
  st->prev_cpu = s.cpu_seconds;
  st->prev_lat = s.latency;
  return j;
}

static fc_frame_t expired_frame = FC_FRAME_STATIC("event: flowcast.expired\ndata: {\"reason\":\"token expired\"}\n\n");

static void on_tick(uv_timer_t *t) {
  stats_stream_t *st = t->data;
  fc_stream_t *c = st->stream;
  if (st->expires_ms && fc_now_ms() >= st->expires_ms) {
    fc_stream_send(c, &expired_frame);
    uv_timer_stop(t);
    fc_stream_close(st->stream, true);
    return;
  }
  json_t *j = sample_json(st);
  char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
  json_decref(j);
  if (!text) return;
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_printf(&b, "data: %s\n\n", text);
  free(text);
  int rc = fc_stream_send_copy(c, b.data, b.len);
  fc_buf_dispose(&b);
  if (rc < 0) { /* the client stopped reading */
    uv_timer_stop(t);
    fc_stream_close(st->stream, false);
  }
}

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

static void on_close(fc_stream_t *s) {
  stats_stream_t *st = s->ud;
  uv_timer_stop(&st->timer);
  uv_close((uv_handle_t *)&st->timer, on_timer_closed);
}

static void on_stop(fc_stream_t *s) {
  stats_stream_t *st = s->ud;
  uv_timer_stop(&st->timer);
  fc_stream_close(s, true);
}

static const fc_stream_handler_t stats_handler = {.on_close = on_close, .on_stop = on_stop};

void fc_api_stats_sse(fc_req_t *req) {
  static const char headers[] = "Content-Type: text/event-stream; charset=utf-8\r\n"
                                "Cache-Control: no-cache\r\n"
                                "X-Accel-Buffering: no\r\n";
  stats_stream_t *st = fc_xcalloc(1, sizeof *st);
  st->app = fc_app_of(req);
  st->expires_ms = fc_api_expiry_ms(req);
  uv_loop_t *uv = fc_loop_uv(req->loop);
  fc_stream_t *s = fc_http_stream(req, 200, headers, &stats_handler, st);
  if (!s) { /* HEAD: the head alone */
    free(st);
    return;
  }
  st->stream = s;
  static const char retry[] = "retry: 3000\n\n";
  fc_stream_send_copy(s, retry, sizeof retry - 1);
  fc_stream_set_bound(s, STATS_QUEUE_BYTES);
  uv_timer_init(uv, &st->timer);
  st->timer.data = st;
  uv_timer_start(&st->timer, on_tick, STATS_INTERVAL_MS, STATS_INTERVAL_MS);
  on_tick(&st->timer); /* the first sample at once */
}
