/* fcload entry point: set-up, the run, the report and the exit status. */
/*
 * fcload - load generator for flowcast (and other SSE servers, e.g. Nchan).
 *
 * One process, one libuv loop, one thread.  The run has three phases:
 *
 *   1. connect:  open --subs SSE subscriptions (at most --connect-concurrency
 *                in flight), each counted "ok" once it has a 200 answer and
 *                its first body bytes (flowcast's "retry:" line);
 *   2. hold or publish:
 *                --idle: keep the subscribers open --hold seconds, then
 *                measure the server's memory and stop;
 *                otherwise: publish --messages JSON events over --inflight
 *                keep-alive connections, each with up to --pipeline POSTs in
 *                flight (HTTP/1.1 pipelining: sent together in one write,
 *                answered in order), each POST carrying --batch messages
 *                (B > 1: one NDJSON body, flowcast's batch publish),
 *                optionally paced to --rate, while
 *                every subscriber parses its SSE stream and records each
 *                event's latency, sequence number and order;
 *   3. drain:    wait until every expected delivery has arrived, or --drain
 *                seconds after the last publish was answered.
 *
 * With --ws, subscribers use flowcast's WebSocket API instead of SSE: GET
 * /api/v1/ws with an Upgrade, then (after the server's "welcome") one masked
 * text frame {"op":"subscribe",...}; a subscriber is ready at "subscribed",
 * and each "event" message is one delivery.
 *
 * Each published body is a JSON object carrying a sequence number ("fcseq")
 * and its send time in ns on CLOCK_MONOTONIC ("fcts"; one time for a
 * pipelined batch); publisher and subscribers live in this process, so
 * latency = receive time - fcts. A publish that gets no answer (its
 * connection closed or timed out) is an error (one per message of the
 * request), and is never resent.
 *
 * Memory per subscriber is one struct (a uv_tcp_t, one request and a few
 * counters) plus a heap carry-over buffer that only ever holds a partial
 * line; all reads go into one shared buffer owned by the loop.
 *
 * Exit status: 0 ran to the end (loss is reported, not fatal), 1 no
 * subscriber (or, with --subs 0, no publisher) could connect, 2 bad usage,
 * 3 stopped early by --timeout or a signal (a partial report is printed).
 *
 * Files: main.c set-up and exit; options.c the command line; run.c the
 * phases and the end of the run; sub.c subscriber connections, with the two
 * transports in sse.c and ws.c; pub.c publishers; report.c the histogram and
 * reports; proc.c server figures from /proc; util.c shared buffers and
 * parsers; fcload.h the types and the functions the files share.
 */
#include "fcload.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct app g;

/* ------------------------------------------------------------------------ */
/* Setup and main                                                            */
/* ------------------------------------------------------------------------ */

/* Returns tmpl with its "%s" replaced by value (malloc'd). */
static char *expand_template(const char *tmpl, const char *value)
{
    const char *at = strstr(tmpl, "%s");
    size_t pre = (size_t)(at - tmpl), vl = strlen(value), post = strlen(at + 2);
    char *out = malloc(pre + vl + post + 1);
    if (!out)
        return NULL;
    memcpy(out, tmpl, pre);
    memcpy(out + pre, value, vl);
    memcpy(out + pre + vl, at + 2, post + 1);
    return out;
}

/* Builds every channel's subscribe request and publish path. */
static int build_requests(void)
{
    uint32_t C = g.opt.channels;
    g.sub_req = calloc(C, sizeof *g.sub_req);
    g.sub_req_len = calloc(C, sizeof *g.sub_req_len);
    g.pub_path = calloc(C, sizeof *g.pub_path);
    g.subs_on_channel = calloc(C, sizeof *g.subs_on_channel);
    if (!g.sub_req || !g.sub_req_len || !g.pub_path || !g.subs_on_channel)
        return -1;
    for (uint32_t i = 0; i < C; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s%u", g.opt.channel_prefix, i);
        char *path = expand_template(g.opt.sub_path, name);
        g.pub_path[i] = expand_template(g.opt.pub_path, name);
        if (!path || !g.pub_path[i]) {
            free(path);
            return -1;
        }
        size_t cap = strlen(path) + strlen(g.opt.host_header) + 256;
        g.sub_req[i] = malloc(cap);
        if (g.sub_req[i] && g.opt.ws) {
            /* One handshake key per channel: the server only echoes it back
             * hashed, and fcload does not check Sec-WebSocket-Accept. */
            char key[25];
            ws_handshake_key(key);
            g.sub_req_len[i] = (size_t)snprintf(
                g.sub_req[i], cap,
                "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: %s\r\n\r\n", WS_PATH, g.opt.host_header, key);
        } else if (g.sub_req[i])
            g.sub_req_len[i] = (size_t)snprintf(
                g.sub_req[i], cap,
                "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                "Cache-Control: no-cache\r\n\r\n", path, g.opt.host_header);
        free(path);
        if (!g.sub_req[i])
            return -1;
    }
    return 0;
}

/* Raises the soft open-files limit to the hard limit; warns if the run
 * will still not fit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            note("could not raise RLIMIT_NOFILE: %s", strerror(errno));
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    uint64_t need = (uint64_t)g.opt.subs + g.opt.inflight + 32;
    if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
        note("warning: %" PRIu64 " descriptors needed, RLIMIT_NOFILE is %llu", need,
              (unsigned long long)rl.rlim_cur);
}

/* Initialises the loop, its timers and signal handlers. */
static int setup_loop(void)
{
    if (uv_loop_init(&g.loop) != 0)
        return -1;
    g.read_buf = malloc(READ_BUF_SIZE);
    g.subs = calloc(g.opt.subs ? g.opt.subs : 1, sizeof *g.subs);
    if (!g.read_buf || !g.subs || build_requests() < 0)
        return -1;
    uv_timer_init(&g.loop, &g.timeout_timer);
    uv_timer_init(&g.loop, &g.sweep_timer);
    uv_timer_init(&g.loop, &g.phase_timer);
    uv_timer_init(&g.loop, &g.rate_timer);
    uv_signal_init(&g.loop, &g.sigint);
    uv_signal_init(&g.loop, &g.sigterm);
    uv_timer_start(&g.timeout_timer, on_overall_timeout, (uint64_t)(g.opt.timeout_s * 1e3), 0);
    uv_timer_start(&g.sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    return 0;
}

static void free_all(void)
{
    for (uint32_t i = 0; g.pubs && i < g.opt.inflight; i++) {
        free(g.pubs[i].wbuf);
        lb_free(&g.pubs[i].resp.lb);
    }
    for (uint32_t i = 0; i < g.opt.subs; i++)
        lb_free(&g.subs[i].carry);
    for (uint32_t i = 0; i < g.opt.channels; i++) {
        if (g.sub_req)
            free(g.sub_req[i]);
        if (g.pub_path)
            free(g.pub_path[i]);
    }
    free(g.pubs);
    free(g.subs);
    free(g.sub_req);
    free(g.sub_req_len);
    free(g.pub_path);
    free(g.subs_on_channel);
    free(g.send_ns);
    free(g.ack_ns);
    free(g.msg_count);
    free(g.seen);
    free(g.read_buf);
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv, &g.opt);
    if (rc)
        return rc == 1 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    g.srv_subs_min = -1;
    g.srv_subs_max = -1;
    if (setup_loop() < 0) {
        fprintf(stderr, "fcload: out of memory\n");
        return 1;
    }
    g.t_start = uv_hrtime();
    g.t_last_progress = g.t_start;
    g.s_start = srv_sample();
    note("%s: connecting %u subscriber(s) to %s", g.opt.idle ? "idle" : "publish", g.opt.subs,
          g.opt.url);
    subs_start_more();
    uv_run(&g.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&g.loop) != 0)
        note("warning: handles still open at exit");

    report_print();
    free_all();
    switch (g.outcome) {
    case OUT_COMPLETE:
    case OUT_DRAIN_TIMEOUT:
    case OUT_IDLE_DONE:
        return 0;
    case OUT_NO_CONNECT:
        return 1;
    default:
        return 3;
    }
}
