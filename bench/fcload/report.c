/* fcload results: the latency histogram, derived figures, text and JSON reports. */
#include "fcload.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>

/* ------------------------------------------------------------------------ */
/* Latency histogram                                                         */
/* ------------------------------------------------------------------------ */

static uint32_t hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (uint32_t)v;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t shift = msb - HIST_SUB_BITS;
    return shift * HIST_SUB + (uint32_t)(v >> shift);
}

/* Midpoint of a bucket: the value reported for samples that fell in it. */
static uint64_t hist_bucket_value(uint32_t idx)
{
    if (idx < 2 * HIST_SUB)
        return idx;
    uint32_t shift = idx / HIST_SUB - 1;
    uint64_t mant = idx - shift * HIST_SUB;
    return (mant << shift) + ((1ull << shift) >> 1);
}

void hist_record(struct hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    if (h->total == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->total++;
    h->sum += v;
}

/* Value at quantile q (0..1): the smallest bucket value with at least
 * ceil(q * total) samples at or below it, clamped to the observed range. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t target = (uint64_t)ceil(q * (double)h->total);
    if (target < 1)
        target = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= target) {
            uint64_t v = hist_bucket_value(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */
/* ------------------------------------------------------------------------ */

static const char *outcome_name(enum outcome o)
{
    switch (o) {
    case OUT_COMPLETE: return "complete";
    case OUT_DRAIN_TIMEOUT: return "drain_timeout";
    case OUT_IDLE_DONE: return "idle_done";
    case OUT_NO_CONNECT: return "no_connect";
    case OUT_TIMEOUT: return "timeout";
    case OUT_INTERRUPTED: return "interrupted";
    default: return "running";
    }
}

/* Figures derived from the raw counters, shared by both report formats. */
struct summary {
    double connect_s, publish_s, publish_rate, window_s, deliveries_per_s;
    uint64_t loss, unsent;
    bool have_srv;
    uint64_t rss_before_kb, rss_with_kb, rss_end_kb;
    double rss_per_sub, cpu_connect_s, cpu_phase_s, cpu_us_per_delivery;
    double client_cpu_s;
};

static struct summary summarize(void)
{
    struct summary m = { 0 };
    m.connect_s = elapsed_s(g.t_start, g.t_connect_done);
    m.publish_s = elapsed_s(g.t_first_pub, g.t_last_ack);
    m.publish_rate = m.publish_s > 0 ? (double)g.acked / m.publish_s : 0;
    m.window_s = elapsed_s(g.t_first_pub, g.t_last_delivery);
    m.deliveries_per_s = m.window_s > 0 ? (double)g.deliveries / m.window_s : 0;
    m.loss = g.expected > g.acked_delivered ? g.expected - g.acked_delivered : 0;
    m.unsent = g.publishing ? g.opt.messages - g.next_seq : 0;
    m.have_srv = g.s_start.ok && g.s_connected.ok && g.s_end.ok;
    if (m.have_srv) {
        m.rss_before_kb = g.s_start.rss_kb;
        /* idle: measured after the hold; publish: when all were connected */
        m.rss_with_kb = g.opt.idle ? g.s_end.rss_kb : g.s_connected.rss_kb;
        m.rss_end_kb = g.s_end.rss_kb;
        m.rss_per_sub = g.conn_ok ? ((double)m.rss_with_kb - (double)m.rss_before_kb) *
                                        1024.0 / (double)g.conn_ok : 0;
        m.cpu_connect_s = ticks_to_s(g.s_connected.cpu_ticks - g.s_start.cpu_ticks);
        m.cpu_phase_s = ticks_to_s(g.s_end.cpu_ticks - g.s_connected.cpu_ticks);
        m.cpu_us_per_delivery = g.deliveries ? m.cpu_phase_s * 1e6 / (double)g.deliveries : 0;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        m.client_cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return m;
}

static double lat_ms(double q)
{
    return (double)hist_quantile(&g.lat, q) / 1e6;
}

/* Writes the human-readable summary to `out`. */
static void report_human(FILE *out, const struct summary *m)
{
    fprintf(out, "fcload%s%s: %s, %u %s subscriber(s) on %u channel(s)",
            *g.opt.label ? " " : "", g.opt.label, g.opt.idle ? "idle" : "publish", g.opt.subs,
            g.opt.ws ? "WebSocket" : "SSE", g.opt.channels);
    if (!g.opt.idle)
        fprintf(out, ", %" PRIu64 " messages of %u B, %u in flight", g.opt.messages,
                g.opt.size, g.opt.inflight);
    if (!g.opt.idle && g.opt.pipeline > 1)
        fprintf(out, " x%u pipelined", g.opt.pipeline);
    if (!g.opt.idle && g.opt.batch > 1)
        fprintf(out, ", batches of %u", g.opt.batch);
    fprintf(out, "; outcome %s\n", outcome_name(g.outcome));
    fprintf(out, "  connections  %" PRIu64 " attempted, %" PRIu64 " ok, %" PRIu64
            " failed, %" PRIu64 " dropped later (connect phase %.2f s)\n",
            g.conn_attempted, g.conn_ok, g.conn_failed, g.conn_dropped, m->connect_s);
    if (g.publishing) {
        fprintf(out, "  publish      %" PRIu64 " acknowledged, %" PRIu64 " errors, %" PRIu64
                " unsent; %.0f msg/s over %.3f s\n",
                g.acked, g.pub_errors, m->unsent, m->publish_rate, m->publish_s);
        fprintf(out, "  deliveries   %" PRIu64 " of %" PRIu64 " expected; %.0f/s over %.3f s\n",
                g.deliveries, g.expected, m->deliveries_per_s, m->window_s);
        if (g.lat.total > 0)
            fprintf(out, "  latency      p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n",
                    lat_ms(0.5), lat_ms(0.9), lat_ms(0.99), (double)g.lat.max / 1e6);
        else
            fprintf(out, "  latency      no deliveries\n");
        fprintf(out, "  integrity    loss %" PRIu64 ", duplicates %" PRIu64 "%s, reorders %"
                PRIu64 ", id regressions %" PRIu64 ", misrouted %" PRIu64 ", foreign %" PRIu64 "\n",
                m->loss, g.duplicates, g.dup_tracking ? "" : " (untracked)", g.reorders,
                g.id_regressions, g.misrouted, g.foreign);
    }
    if (m->have_srv) {
        fprintf(out, "  server RSS   %.1f MiB before, %.1f MiB with subscribers (%.0f B each), "
                "%.1f MiB at end\n", (double)m->rss_before_kb / 1024,
                (double)m->rss_with_kb / 1024, m->rss_per_sub, (double)m->rss_end_kb / 1024);
        fprintf(out, "  server CPU   %.2f s connecting, %.2f s %s", m->cpu_connect_s,
                m->cpu_phase_s, g.opt.idle ? "holding\n" : "publishing+draining");
        if (!g.opt.idle)
            fprintf(out, " (%.3f us/delivery)\n", m->cpu_us_per_delivery);
    }
    if (g.opt.ws)
        fprintf(out, "  client CPU   %.2f s; %" PRIu64 " pings answered\n", m->client_cpu_s,
                g.comments);
    else
        fprintf(out, "  client CPU   %.2f s; %" PRIu64 " keepalive comments, %" PRIu64
                " retry lines\n", m->client_cpu_s, g.comments, g.retry_lines);
    for (uint32_t i = 0; i < g.nerrs; i++)
        fprintf(out, "  error        %s x %" PRIu64 "\n", g.errs[i].name, g.errs[i].count);
}

/* Prints s as a JSON string literal. */
static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* Prints ,"key":value with value a number, or null when !ok. */
static void json_num(FILE *out, const char *key, double v, bool ok)
{
    fprintf(out, ",\"%s\":", key);
    if (!ok || !isfinite(v))
        fputs("null", out);
    else if (v == floor(v) && fabs(v) < 1e15)
        fprintf(out, "%.0f", v);
    else
        fprintf(out, "%.6g", v);
}

static void report_json_config(FILE *out)
{
    fputs("{\"tool\":\"fcload\",\"label\":", out);
    json_str(out, g.opt.label);
    fputs(",\"url\":", out);
    json_str(out, g.opt.url);
    fputs(",\"pub_path\":", out);
    json_str(out, g.opt.pub_path);
    fputs(",\"sub_path\":", out);
    json_str(out, g.opt.ws ? WS_PATH : g.opt.sub_path); /* --sub-path is SSE only */
    fprintf(out, ",\"mode\":\"%s\",\"transport\":\"%s\",\"outcome\":\"%s\"",
            g.opt.idle ? "idle" : "publish", g.opt.ws ? "ws" : "sse", outcome_name(g.outcome));
    json_num(out, "subs", g.opt.subs, true);
    json_num(out, "channels", g.opt.channels, true);
    json_num(out, "messages", (double)g.opt.messages, !g.opt.idle);
    json_num(out, "size", g.opt.size, !g.opt.idle);
    json_num(out, "inflight", g.opt.inflight, !g.opt.idle);
    json_num(out, "pipeline", g.opt.pipeline, !g.opt.idle);
    json_num(out, "batch", g.opt.batch, !g.opt.idle);
    json_num(out, "rate", g.opt.rate, !g.opt.idle);
    json_num(out, "hold_s", g.opt.hold_s, g.opt.idle);
}

/* Writes every figure as one JSON object on one line. */
static void report_json(FILE *out, const struct summary *m)
{
    bool pub = !g.opt.idle, lat = pub && g.lat.total > 0, srv = m->have_srv;
    report_json_config(out);
    json_num(out, "conn_attempted", (double)g.conn_attempted, true);
    json_num(out, "conn_ok", (double)g.conn_ok, true);
    json_num(out, "conn_failed", (double)g.conn_failed, true);
    json_num(out, "conn_dropped", (double)g.conn_dropped, true);
    json_num(out, "connect_s", m->connect_s, true);
    json_num(out, "published", (double)g.acked, pub);
    json_num(out, "publish_errors", (double)g.pub_errors, pub);
    json_num(out, "unsent", (double)m->unsent, pub);
    json_num(out, "publish_s", m->publish_s, pub);
    json_num(out, "publish_rate", m->publish_rate, pub);
    json_num(out, "expected_deliveries", (double)g.expected, pub);
    json_num(out, "deliveries", (double)g.deliveries, pub);
    json_num(out, "delivery_window_s", m->window_s, pub);
    json_num(out, "deliveries_per_s", m->deliveries_per_s, pub);
    json_num(out, "latency_p50_ms", lat_ms(0.5), lat);
    json_num(out, "latency_p90_ms", lat_ms(0.9), lat);
    json_num(out, "latency_p99_ms", lat_ms(0.99), lat);
    json_num(out, "latency_max_ms", (double)g.lat.max / 1e6, lat);
    json_num(out, "latency_mean_ms", lat ? (double)g.lat.sum / (double)g.lat.total / 1e6 : 0, lat);
    json_num(out, "loss", (double)m->loss, pub);
    json_num(out, "duplicates", (double)g.duplicates, pub && g.dup_tracking);
    json_num(out, "reorders", (double)g.reorders, pub);
    json_num(out, "id_regressions", (double)g.id_regressions, pub);
    json_num(out, "misrouted", (double)g.misrouted, pub);
    json_num(out, "foreign_events", (double)g.foreign, pub);
    json_num(out, "server_reported_subscribers_min", (double)g.srv_subs_min, g.srv_subs_min >= 0);
    json_num(out, "server_reported_subscribers_max", (double)g.srv_subs_max, g.srv_subs_min >= 0);
    json_num(out, "keepalive_comments", (double)g.comments, true);
    json_num(out, "server_rss_before_kb", (double)m->rss_before_kb, srv);
    json_num(out, "server_rss_with_subs_kb", (double)m->rss_with_kb, srv);
    json_num(out, "server_rss_end_kb", (double)m->rss_end_kb, srv);
    json_num(out, "server_rss_per_sub_bytes", m->rss_per_sub, srv && g.conn_ok > 0);
    json_num(out, "server_cpu_connect_s", m->cpu_connect_s, srv);
    json_num(out, "server_cpu_hold_s", m->cpu_phase_s, srv && !pub);
    json_num(out, "server_cpu_publish_s", m->cpu_phase_s, srv && pub);
    json_num(out, "server_cpu_us_per_delivery", m->cpu_us_per_delivery, srv && pub && g.deliveries);
    json_num(out, "client_cpu_s", m->client_cpu_s, true);
    json_num(out, "elapsed_s", elapsed_s(g.t_start, g.t_end), true);
    fputs(",\"errors\":{", out);
    for (uint32_t i = 0; i < g.nerrs; i++) {
        if (i)
            fputc(',', out);
        json_str(out, g.errs[i].name);
        fprintf(out, ":%" PRIu64, g.errs[i].count);
    }
    fputs("}}\n", out);
}

/* Prints the final report: with --json, the JSON object on stdout and the
 * summary on stderr; otherwise the summary on stdout. */
void report_print(void)
{
    struct summary m = summarize();
    if (g.opt.json) {
        report_json(stdout, &m);
        report_human(stderr, &m);
    } else {
        report_human(stdout, &m);
    }
}
