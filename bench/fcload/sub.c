/* fcload subscribers: connections, the response head, delivery accounting (SSE and --ws). */
#include "fcload.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Close callback of a subscriber's socket: frees its carry-over buffer. */
void on_sub_closed(uv_handle_t *h)
{
    struct sub *s = h->data;
    s->state = SUB_CLOSED;
    lb_free(&s->carry);
}

/* Closes a subscriber that failed (before it was ready) or dropped (after).
 * `why` names the error kind. Safe to call from the subscriber's own callbacks. */
void sub_fail(struct sub *s, const char *why)
{
    if (s->state == SUB_CLOSING || s->state == SUB_CLOSED)
        return;
    if (!g.finishing) {
        count_error("%s", why);
        if (s->state == SUB_READY) {
            g.conn_dropped++;
        } else {
            g.conn_failed++;
            g.connecting--;
        }
    }
    s->state = SUB_CLOSING;
    uv_close((uv_handle_t *)&s->tcp, on_sub_closed);
    subs_start_more();
}

void sub_fail_uv(struct sub *s, const char *what, int err)
{
    char why[48];
    snprintf(why, sizeof why, "%s: %s", what, uv_err_name(err));
    sub_fail(s, why);
}

/* The subscription is established: it counts as connected from now on. */
void sub_ready(struct sub *s)
{
    s->state = SUB_READY;
    g.connecting--;
    g.conn_ok++;
    subs_start_more();
}

/*
 * Accounts for one delivered event carrying (seq, ts): duplicates,
 * misrouting, causal order, id order, and latency. `now` is the read time.
 */
void record_delivery(struct sub *s, uint64_t seq, uint64_t ts, uint64_t now)
{
    if (seq >= g.opt.messages || !g.send_ns || g.send_ns[seq] == 0) {
        g.foreign++; /* not a message this run sent */
        return;
    }
    if (channel_of(seq) != s->channel) {
        g.misrouted++;
        return;
    }
    if (g.dup_tracking) {
        uint64_t k = channel_index(seq), idx = (uint64_t)(s - g.subs) * g.seen_words + k / 64;
        uint64_t bit = 1ull << (k % 64);
        if (g.seen[idx] & bit) {
            g.duplicates++;
            return;
        }
        g.seen[idx] |= bit;
    }
    g.deliveries++;
    g.msg_count[seq]++;
    if (g.ack_ns[seq])
        g.acked_delivered++;
    g.t_last_delivery = now;
    hist_record(&g.lat, now > ts ? now - ts : 0);

    /* Causal order: this message was acknowledged before an already
     * delivered message was even sent, yet arrives after it. */
    if (g.ack_ns[seq] && g.ack_ns[seq] < s->max_sent_ns)
        g.reorders++;
    if (g.send_ns[seq] > s->max_sent_ns)
        s->max_sent_ns = g.send_ns[seq];

    if (s->flags & SF_EV_ID) {
        bool have = s->flags & SF_HAVE_LAST_ID;
        if (have && (s->ev_id[0] < s->last_id[0] ||
                     (s->ev_id[0] == s->last_id[0] && s->ev_id[1] <= s->last_id[1])))
            g.id_regressions++;
        s->last_id[0] = s->ev_id[0];
        s->last_id[1] = s->ev_id[1];
        s->flags |= SF_HAVE_LAST_ID;
    }
    check_complete();
}

/* Handles one line of the response head. */
static void sub_header_line(struct sub *s, const char *line, size_t len)
{
    if (!(s->flags & SF_STATUS_SEEN)) {
        int status = parse_status_line(line, len);
        if (status < 0) {
            sub_fail(s, "sub: bad status line");
            return;
        }
        s->http_status = (uint16_t)status;
        s->flags |= SF_STATUS_SEEN;
        return;
    }
    if (len > 0) {
        if (len > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0 &&
            memmem(line + 18, len - 18, "chunked", 7))
            s->flags |= SF_CHUNKED;
        return;
    }
    /* blank line: end of the head */
    if (g.opt.ws) {
        if (s->http_status == 101) {
            s->state = SUB_WAIT_BODY; /* frames follow; "welcome" first */
        } else {
            char why[48];
            snprintf(why, sizeof why, "sub: HTTP %u", s->http_status);
            sub_fail(s, why);
        }
        return;
    }
    if (s->http_status >= 100 && s->http_status < 200) {
        s->flags &= (uint8_t)~SF_STATUS_SEEN; /* interim answer: read on */
        return;
    }
    if (s->http_status != 200) {
        char why[48];
        snprintf(why, sizeof why, "sub: HTTP %u", s->http_status);
        sub_fail(s, why);
        return;
    }
    s->state = SUB_WAIT_BODY;
    if (g.opt.ready_on_headers)
        sub_ready(s);
}

/* Processes bytes read from a subscriber: response head, then (possibly
 * chunked) SSE body, or WebSocket frames with --ws. Stops as soon as the
 * subscriber gets closed. */
static void sub_feed(struct sub *s, const char *p, size_t n, uint64_t now)
{
    while (n > 0 && s->state >= SUB_HEADERS && s->state <= SUB_READY) {
        if (s->state == SUB_HEADERS) {
            const char *line;
            size_t len;
            int r = take_line(&s->carry, &p, &n, &line, &len);
            if (r < 0)
                sub_fail(s, "sub: header too long");
            if (r <= 0)
                return;
            sub_header_line(s, line, len);
            continue;
        }
        if (g.opt.ws) {
            ws_feed(s, p, n, now);
            return;
        }
        if (!(s->flags & SF_CHUNKED)) {
            sse_feed(s, p, n, now);
            return;
        }
        const char *run;
        size_t run_len;
        int r = dechunk_next(&s->dc, &p, &n, &run, &run_len);
        if (r == 1)
            sse_feed(s, run, run_len, now);
        else if (r == 2)
            sub_fail(s, "sub: stream ended");
        else if (r < 0)
            sub_fail(s, "sub: bad chunked framing");
    }
}

static void on_sub_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sub *s = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        sub_fail_uv(s, nread == UV_EOF ? "sub closed by server" : "sub read", (int)nread);
        return;
    }
    sub_feed(s, buf->base, (size_t)nread, uv_hrtime());
}

static void on_sub_write(uv_write_t *req, int status)
{
    struct sub *s = req->handle->data;
    if (status < 0 && status != UV_ECANCELED)
        sub_fail_uv(s, "sub write", status);
}

static void on_sub_connect(uv_connect_t *req, int status)
{
    struct sub *s = req->handle->data;
    if (status == UV_ECANCELED || s->state != SUB_CONNECTING)
        return;
    if (status < 0) {
        sub_fail_uv(s, "sub connect", status);
        return;
    }
    s->state = SUB_HEADERS;
    /* libuv is done with the connect request: reuse its memory to write. */
    uv_buf_t b = uv_buf_init(g.sub_req[s->channel], (unsigned)g.sub_req_len[s->channel]);
    int err = uv_write(&s->req.write, (uv_stream_t *)&s->tcp, &b, 1, on_sub_write);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_sub_read);
    if (err < 0)
        sub_fail_uv(s, "sub request", err);
}

/* Starts connecting subscriber number i. */
void sub_start(uint32_t i)
{
    struct sub *s = &g.subs[i];
    s->channel = i % g.opt.channels;
    s->start_ns = uv_hrtime();
    s->state = SUB_CONNECTING;
    g.conn_attempted++;
    g.connecting++;
    int err = uv_tcp_init_ex(&g.loop, &s->tcp, AF_INET);
    if (err < 0) {
        /* no socket (EMFILE...): the handle does not exist, nothing to close */
        count_error("sub socket: %s", uv_err_name(err));
        s->state = SUB_CLOSED;
        g.connecting--;
        g.conn_failed++;
        return;
    }
    s->tcp.data = s;
    err = tcp_bind_source(&s->tcp, i);
    if (err == 0)
        err = uv_tcp_connect(&s->req.connect, &s->tcp,
                             (const struct sockaddr *)&g.opt.server, on_sub_connect);
    if (err < 0)
        sub_fail_uv(s, "sub connect", err);
}

/* Fails subscribers that have not become ready within --request-timeout. */
void subs_sweep(uint64_t now)
{
    uint64_t limit = (uint64_t)(g.opt.request_timeout_s * 1e9);
    for (uint32_t i = 0; i < g.next_sub && g.connecting > 0; i++) {
        struct sub *s = &g.subs[i];
        if (s->state >= SUB_CONNECTING && s->state < SUB_READY &&
            now - s->start_ns > limit)
            sub_fail(s, "sub: timed out before ready");
    }
}
