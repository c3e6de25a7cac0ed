/* fcload run control: shared socket helpers, the phases, timeouts and the end of the run. */
#include "fcload.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------------ */
/* Loop helpers shared by subscribers and publishers                         */
/* ------------------------------------------------------------------------ */

/* Read buffer allocator for every stream: the loop's one shared buffer. */
void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* Every read callback consumes the buffer before returning, so one buffer
     * serves all connections on this (single-threaded) loop. */
    buf->base = g.read_buf;
    buf->len = READ_BUF_SIZE;
}

/* Binds the (already created) socket of `tcp` to the n-th --source-addrs
 * address, if any; the port is chosen at connect time. */
int tcp_bind_source(uv_tcp_t *tcp, uint32_t n)
{
    if (g.opt.nsources == 0)
        return 0;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)tcp, &fd) == 0) {
        int one = 1;
        /* Lets several sockets share a source port towards different
         * destinations, and defers the port choice to connect(). */
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    return uv_tcp_bind(tcp, (const struct sockaddr *)&g.opt.sources[n % g.opt.nsources], 0);
}

/* ------------------------------------------------------------------------ */
/* Phases                                                                    */
/* ------------------------------------------------------------------------ */

static void on_rate_tick(uv_timer_t *t)
{
    (void)t;
    pump();
}

static void on_drain_timeout(uv_timer_t *t)
{
    (void)t;
    finish(OUT_DRAIN_TIMEOUT);
}

/* Ends the run as soon as publishing is over and every expected delivery
 * (over acknowledged messages) has arrived. */
void check_complete(void)
{
    if (g.pub_done && !g.finishing && g.acked_delivered >= g.expected)
        finish(OUT_COMPLETE);
}

/* Publishing is over when every message was sent and answered (or failed),
 * or when every publisher gave up; then the drain timer starts. */
void check_publish_done(void)
{
    if (!g.publishing || g.pub_done || g.finishing)
        return;
    bool all_gave_up = true;
    for (uint32_t i = 0; i < g.opt.inflight; i++) {
        uint8_t st = g.pubs[i].state;
        if (st == PUB_BUSY)
            return;
        if (st != PUB_GAVE_UP)
            all_gave_up = false;
    }
    if (g.next_seq < g.opt.messages && !all_gave_up)
        return;
    g.pub_done = true;
    uv_timer_stop(&g.rate_timer);
    note("publishing done: %" PRIu64 " acknowledged, %" PRIu64 " errors, %" PRIu64
          " unsent; draining (up to %.1f s)",
          g.acked, g.pub_errors, g.opt.messages - g.next_seq, g.opt.drain_s);
    bool any_connected = false;
    for (uint32_t i = 0; i < g.opt.inflight; i++)
        any_connected |= g.pubs[i].ever_connected;
    if (!any_connected) {
        finish(OUT_NO_CONNECT);
        return;
    }
    check_complete();
    if (!g.finishing)
        uv_timer_start(&g.phase_timer, on_drain_timeout, (uint64_t)(g.opt.drain_s * 1e3), 0);
}

/* Allocates the per-message and per-subscriber tracking arrays. */
static int alloc_tracking(void)
{
    uint64_t M = g.opt.messages;
    g.send_ns = calloc(M, sizeof *g.send_ns);
    g.ack_ns = calloc(M, sizeof *g.ack_ns);
    g.msg_count = calloc(M, sizeof *g.msg_count);
    if (!g.send_ns || !g.ack_ns || !g.msg_count)
        return -1;
    g.seen_words = (channel_msgs_max() + 63) / 64; /* bits: channel_index() */
    uint64_t bytes = g.seen_words * 8 * (uint64_t)g.opt.subs;
    if (bytes > SEEN_BITMAP_LIMIT) {
        note("duplicate tracking off: it would need %" PRIu64 " MiB", bytes >> 20);
        return 0;
    }
    g.seen = calloc(bytes ? bytes : 1, 1);
    g.dup_tracking = g.seen != NULL;
    return 0;
}

/* Allocates the publishers, each with a write buffer for --pipeline
 * requests of --batch messages. Returns -1 when memory runs out. */
static int alloc_pubs(void)
{
    g.pubs = calloc(g.opt.inflight, sizeof *g.pubs);
    if (!g.pubs)
        return -1;
    /* One request; options.c bounds --pipeline slots of --batch > 1 messages. */
    size_t line = (size_t)g.opt.size + PUB_BODY_EXTRA + (g.opt.batch > 1 ? PUB_LINE_EXTRA : 0);
    size_t slot = PUB_HEAD_MAX + line * g.opt.batch;
    bool no_buf = false;
    for (uint32_t i = 0; i < g.opt.inflight; i++) {
        struct pub *p = &g.pubs[i];
        p->index = i;
        p->wbuf = malloc(slot * g.opt.pipeline);
        no_buf |= p->wbuf == NULL;
        uv_timer_init(&g.loop, &p->retry);
        p->retry.data = p;
    }
    g.pubs_inited = true; /* the timers exist: finish() must close them */
    if (no_buf) { /* pub_send formats every batch into its connection's buffer */
        fprintf(stderr, "fcload: out of memory for %u request buffers of %zu B\n",
                g.opt.inflight, slot * g.opt.pipeline);
        return -1;
    }
    return 0;
}

/* Starts the publish phase: opens --inflight keep-alive connections. */
static void start_publishing(void)
{
    for (uint32_t i = 0; i < g.opt.subs; i++)
        if (g.subs[i].state == SUB_READY)
            g.subs_on_channel[g.subs[i].channel]++;
    if (alloc_tracking() < 0) {
        fprintf(stderr, "fcload: out of memory for %" PRIu64 " messages\n", g.opt.messages);
        finish(OUT_INTERRUPTED);
        return;
    }
    if (alloc_pubs() < 0) {
        finish(OUT_INTERRUPTED);
        return;
    }
    g.publishing = true;
    g.t_pub0 = uv_hrtime();
    char pipelined[32] = "", batches[32] = "";
    if (g.opt.pipeline > 1)
        snprintf(pipelined, sizeof pipelined, " x%u pipelined", g.opt.pipeline);
    if (g.opt.batch > 1)
        snprintf(batches, sizeof batches, " in batches of %u", g.opt.batch);
    note("publishing %" PRIu64 " messages of %u B%s on %u channel(s), %u in flight%s%s",
          g.opt.messages, g.opt.size, batches, g.opt.channels, g.opt.inflight, pipelined,
          g.opt.rate > 0 ? ", paced" : "");
    if (g.opt.rate > 0)
        uv_timer_start(&g.rate_timer, on_rate_tick, 1, 1);
    for (uint32_t i = 0; i < g.opt.inflight && !g.finishing; i++)
        pub_connect(&g.pubs[i]);
}

static void on_hold_done(uv_timer_t *t)
{
    (void)t;
    finish(OUT_IDLE_DONE);
}

/* Every subscriber is ready or has failed: measure, then hold or publish. */
static void connect_phase_done(void)
{
    g.connect_done = true;
    g.t_connect_done = uv_hrtime();
    g.s_connected = srv_sample();
    note("connected %" PRIu64 " of %u subscribers (%" PRIu64 " failed) in %.2f s",
          g.conn_ok, g.opt.subs, g.conn_failed, elapsed_s(g.t_start, g.t_connect_done));
    if (g.opt.subs > 0 && g.conn_ok == 0) {
        finish(OUT_NO_CONNECT);
        return;
    }
    if (g.opt.idle) {
        note("holding %.1f s", g.opt.hold_s);
        uv_timer_start(&g.phase_timer, on_hold_done, (uint64_t)(g.opt.hold_s * 1e3), 0);
        return;
    }
    start_publishing();
}

/* Starts connecting subscribers while fewer than --connect-concurrency are
 * in progress. Re-entrant calls (from a synchronous failure) are no-ops. */
void subs_start_more(void)
{
    if (g.starting_subs || g.finishing || g.connect_done)
        return;
    g.starting_subs = true;
    while (g.next_sub < g.opt.subs && g.connecting < g.opt.connect_concurrency)
        sub_start(g.next_sub++);
    g.starting_subs = false;
    if (g.next_sub == g.opt.subs && g.connecting == 0)
        connect_phase_done();
}

static void progress(uint64_t now)
{
    if (now - g.t_last_progress < PROGRESS_MS * NS_PER_MS)
        return;
    g.t_last_progress = now;
    if (!g.connect_done)
        note("connecting: %" PRIu64 " ok, %" PRIu64 " failed, %u in progress",
              g.conn_ok, g.conn_failed, g.connecting);
    else if (g.publishing)
        note("published %" PRIu64 "/%" PRIu64 " (acked %" PRIu64 "), deliveries %" PRIu64
              "/%" PRIu64,
              g.next_seq, g.opt.messages, g.acked, g.acked_delivered, g.expected);
}

void on_sweep(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_hrtime();
    if (!g.connect_done)
        subs_sweep(now);
    if (g.publishing)
        pubs_sweep(now);
    if (!g.finishing)
        progress(now);
}

void on_overall_timeout(uv_timer_t *t)
{
    (void)t;
    note("--timeout reached, stopping");
    finish(OUT_TIMEOUT);
}

void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    note("signal %d, stopping", signum);
    finish(OUT_INTERRUPTED);
}

static void close_if_open(uv_handle_t *h)
{
    if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
        uv_close(h, NULL);
}

/* Ends the run: takes the final server sample and closes every handle, so
 * the loop returns. Idempotent. */
void finish(enum outcome why)
{
    if (g.finishing)
        return;
    g.finishing = true;
    g.outcome = why;
    g.t_end = uv_hrtime();
    g.s_end = srv_sample();
    close_if_open((uv_handle_t *)&g.timeout_timer);
    close_if_open((uv_handle_t *)&g.sweep_timer);
    close_if_open((uv_handle_t *)&g.phase_timer);
    close_if_open((uv_handle_t *)&g.rate_timer);
    close_if_open((uv_handle_t *)&g.sigint);
    close_if_open((uv_handle_t *)&g.sigterm);
    /* Closing the watchers restores the default actions; a second signal
     * (e.g. Ctrl-C also forwarded by `timeout`) must not kill the report. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    for (uint32_t i = 0; i < g.next_sub; i++) {
        struct sub *s = &g.subs[i];
        if (s->state >= SUB_CONNECTING && s->state <= SUB_READY) {
            s->state = SUB_CLOSING;
            uv_close((uv_handle_t *)&s->tcp, on_sub_closed);
        }
    }
    for (uint32_t i = 0; g.pubs_inited && i < g.opt.inflight; i++) {
        struct pub *p = &g.pubs[i];
        if (p->state == PUB_CONNECTING || p->state == PUB_IDLE || p->state == PUB_BUSY)
            pub_close(p, NULL);
        close_if_open((uv_handle_t *)&p->retry);
    }
}
