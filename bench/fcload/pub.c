/* fcload publishers: keep-alive POST connections (pipelined), their HTTP answers, the send pump. */
#include "fcload.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* Publishers: HTTP response parsing                                         */
/* ------------------------------------------------------------------------ */

static void resp_reset(struct http_resp *r)
{
    r->lb.len = 0;
    memset(&r->dc, 0, sizeof r->dc);
    r->phase = RP_STATUS;
    r->chunked = r->have_len = r->close = false;
    r->status = 0;
    r->body_left = 0;
    r->body_len = 0;
    r->body_cut = false;
}

static void resp_keep_body(struct http_resp *r, const char *p, size_t n)
{
    size_t room = sizeof r->body - 1 - r->body_len;
    if (n > room) {
        n = room;
        r->body_cut = true;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += (uint32_t)n;
}

/* Handles one line of the response head; returns -1 on a malformed head. */
static int resp_head_line(struct http_resp *r, const char *line, size_t len)
{
    if (r->phase == RP_STATUS) {
        r->status = parse_status_line(line, len);
        if (r->status < 0)
            return -1;
        r->close = line[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
        r->phase = RP_HEADERS;
        return 0;
    }
    if (len == 0) { /* end of head: pick the body framing */
        if (r->status >= 100 && r->status < 200)
            r->phase = RP_STATUS;
        else if (r->status == 204 || r->status == 304)
            r->phase = RP_DONE;
        else if (r->chunked)
            r->phase = RP_BODY_CHUNKED;
        else if (r->have_len)
            r->phase = r->body_left ? RP_BODY_LEN : RP_DONE;
        else
            r->phase = RP_BODY_EOF;
        return 0;
    }
    if (len > 15 && strncasecmp(line, "content-length:", 15) == 0) {
        const char *v = line + 15, *end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        r->have_len = true;
        r->body_left = 0;
        for (; v < end && *v >= '0' && *v <= '9'; v++) {
            if (r->body_left > (UINT64_MAX - 9) / 10)
                return -1;
            r->body_left = r->body_left * 10 + (uint64_t)(*v - '0');
        }
    } else if (len > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
        r->chunked = memmem(line + 18, len - 18, "chunked", 7) != NULL;
    } else if (len > 11 && strncasecmp(line, "connection:", 11) == 0) {
        if (memmem(line + 11, len - 11, "close", 5))
            r->close = true;
        else if (memmem(line + 11, len - 11, "keep-alive", 10))
            r->close = false;
    }
    return 0;
}

/*
 * Feeds bytes of a response. Returns 1 when the response is complete (the
 * input then points at any bytes after it), 0 when more input is needed,
 * -1 on a malformed response. A close-delimited body completes at EOF.
 */
static int resp_feed(struct http_resp *r, const char **p, size_t *n)
{
    while (r->phase != RP_DONE) {
        if (*n == 0)
            return 0;
        if (r->phase == RP_STATUS || r->phase == RP_HEADERS) {
            const char *line;
            size_t len;
            int t = take_line(&r->lb, p, n, &line, &len);
            if (t < 0 || (t == 1 && resp_head_line(r, line, len) < 0))
                return -1;
        } else if (r->phase == RP_TRAILERS) {
            const char *line;
            size_t len;
            int t = take_line(&r->lb, p, n, &line, &len);
            if (t < 0)
                return -1;
            if (t == 1 && len == 0)
                r->phase = RP_DONE; /* trailer fields, if any, are ignored */
        } else if (r->phase == RP_BODY_LEN || r->phase == RP_BODY_EOF) {
            size_t take = *n;
            if (r->phase == RP_BODY_LEN && take > r->body_left)
                take = (size_t)r->body_left;
            resp_keep_body(r, *p, take);
            *p += take;
            *n -= take;
            if (r->phase == RP_BODY_LEN && (r->body_left -= take) == 0)
                r->phase = RP_DONE;
        } else {
            const char *run;
            size_t run_len;
            int t = dechunk_next(&r->dc, p, n, &run, &run_len);
            if (t < 0)
                return -1;
            if (t == 1)
                resp_keep_body(r, run, run_len);
            /* The last chunk's size line is read; the trailer section (at
             * least its empty line) still belongs to this answer, and must
             * be consumed or it would start the next pipelined one. */
            if (t == 2)
                r->phase = RP_TRAILERS;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Publishers: connections and requests                                      */
/* ------------------------------------------------------------------------ */

static void on_pub_retry(uv_timer_t *t)
{
    struct pub *p = t->data;
    if (!g.finishing && p->state == PUB_DOWN)
        pub_connect(p);
}

/* After a publisher connection is closed: reconnect if there is work left,
 * after PUB_RETRY_MS when the connection failed. */
static void on_pub_closed(uv_handle_t *h)
{
    struct pub *p = h->data;
    p->state = PUB_DOWN;
    if (g.finishing)
        return;
    if (p->fails >= PUB_MAX_CONNECT_FAILS) {
        p->state = PUB_GAVE_UP;
        note("publisher %u: giving up after %u failed connects", p->index, p->fails);
    } else if (g.next_seq < g.opt.messages) {
        uv_timer_start(&p->retry, on_pub_retry, p->fails ? PUB_RETRY_MS : 0, 0);
    }
    check_publish_done();
}

/* Counts `n` publish errors (failed messages) of kind `why`. */
static void count_pub_errors(uint64_t n, const char *why)
{
    for (uint64_t i = 0; i < n; i++)
        count_error("%s", why);
    g.pub_errors += n;
}

/* Closes a publisher connection. Each message of the requests still in
 * flight counts as a publish error of kind `why` and is not resent (fcload
 * checks loss); with nothing in flight `why` is counted once, as an error
 * kind only. NULL: an orderly close (after the last answer, or at the end
 * of the run). */
void pub_close(struct pub *p, const char *why)
{
    if (p->state == PUB_CLOSING || p->state == PUB_DOWN || p->state == PUB_GAVE_UP)
        return;
    if (why && !g.finishing) {
        uint64_t msgs = 0;
        for (uint32_t i = 0; i < p->nflight; i++)
            msgs += p->ring[(p->head + i) % MAX_PIPELINE].count;
        if (msgs)
            count_pub_errors(msgs, why);
        else
            count_error("%s", why);
    }
    p->nflight = 0;
    p->state = PUB_CLOSING;
    uv_close((uv_handle_t *)&p->tcp, on_pub_closed);
}

static void on_pub_write(uv_write_t *req, int status);

/* Writes message `seq`, sent at `ts`, at `out` (room for --size +
 * PUB_BODY_EXTRA bytes): {"fcseq":N,"fcts":T,"pad":"xx.."}, padded to
 * --size. Returns its length. */
static size_t format_message(char *out, uint64_t seq, uint64_t ts)
{
    char pre[PUB_BODY_EXTRA];
    size_t pre_len = (size_t)snprintf(pre, sizeof pre,
                                      "{\"fcseq\":%" PRIu64 ",\"fcts\":%" PRIu64 ",\"pad\":\"",
                                      seq, ts);
    size_t pad = g.opt.size > pre_len + 2 ? g.opt.size - pre_len - 2 : 0;
    memcpy(out, pre, pre_len);
    memset(out + pre_len, 'x', pad);
    memcpy(out + pre_len + pad, "\"}", 2);
    return pre_len + pad + 2;
}

/* The messages in the request that starts with message `seq`: --batch, or
 * fewer for the last one. Requests start at multiples of --batch. */
static uint32_t req_count(uint64_t seq)
{
    uint64_t left = g.opt.messages - seq;
    return left < g.opt.batch ? (uint32_t)left : g.opt.batch;
}

/* Formats the request publishing messages seq .. seq + count - 1, sent at
 * `ts`, at `out` (room for one slot: PUB_HEAD_MAX + count x (--size +
 * PUB_BODY_EXTRA + PUB_LINE_EXTRA) bytes); returns its length. With --batch
 * 1 the body is the message; with --batch > 1 it is NDJSON, one line
 * {"data":MESSAGE} per message (flowcast's batch publish). */
static size_t format_request(char *out, uint64_t seq, uint32_t count, uint64_t ts)
{
    bool ndjson = g.opt.batch > 1;
    /* The body goes after the longest head, then moves up to the head,
     * whose Content-Length is only known once the body is written. */
    char *body = out + PUB_HEAD_MAX;
    size_t body_len = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (ndjson) {
            memcpy(body + body_len, "{\"data\":", 8);
            body_len += 8;
        }
        body_len += format_message(body + body_len, seq + i, ts);
        if (ndjson) {
            memcpy(body + body_len, "}\n", 2);
            body_len += 2;
        }
    }
    char head[PUB_HEAD_MAX];
    size_t len = (size_t)snprintf(head, sizeof head,
                                  "POST %s HTTP/1.1\r\nHost: %s\r\n"
                                  "Content-Type: %s\r\n"
                                  "Content-Length: %zu\r\n\r\n",
                                  g.pub_path[channel_of(seq)], g.opt.host_header,
                                  ndjson ? "application/x-ndjson" : "application/json", body_len);
    memmove(out + len, body, body_len);
    memcpy(out, head, len);
    return len + body_len;
}

/* Sends the next `nreq` requests (each of --batch messages, or fewer for
 * the last) on a connection with that much room, pipelined in one buffer
 * and one write. Each stays in flight, in the ring, until its answer. */
static void pub_send(struct pub *p, uint32_t nreq)
{
    uint64_t ts = uv_hrtime();
    size_t len = 0;
    for (uint32_t i = 0; i < nreq; i++) {
        uint64_t seq = g.next_seq;
        uint32_t count = req_count(seq);
        g.next_seq += count;
        /* Each request takes at most one slot of the buffer (run.c). */
        len += format_request(p->wbuf + len, seq, count, ts);
        p->ring[(p->head + p->nflight++) % MAX_PIPELINE] = (struct pub_req){ seq, count };
        for (uint32_t j = 0; j < count; j++)
            g.send_ns[seq + j] = ts;
    }
    p->state = PUB_BUSY;
    p->write_pending = true;
    if (!g.t_first_pub)
        g.t_first_pub = ts;
    uv_buf_t buf = uv_buf_init(p->wbuf, (unsigned)len);
    int err = uv_write(&p->write, (uv_stream_t *)&p->tcp, &buf, 1, on_pub_write);
    if (err < 0) {
        p->write_pending = false;
        char why[48];
        snprintf(why, sizeof why, "pub write: %s", uv_err_name(err));
        pub_close(p, why);
    }
}

/* Reads the number after `key` in the kept answer body. A number that
 * runs to the end of a body cut at RESP_BODY_KEEP may be cut too: ignored. */
static bool resp_number(const struct http_resp *r, const char *key, uint64_t *out)
{
    size_t n = r->body_len;
    if (r->body_cut)
        while (n > 0 && r->body[n - 1] >= '0' && r->body[n - 1] <= '9')
            n--;
    return find_number(r->body, n, key, out);
}

/* Accounts the complete answer in p->resp to the oldest request in flight
 * (HTTP/1.1 answers pipelined requests in order): a 2xx acknowledges each
 * of its messages, anything else makes each one a publish error. */
static void pub_account(struct pub *p)
{
    uint64_t now = uv_hrtime();
    struct pub_req q = p->ring[p->head];
    struct http_resp *r = &p->resp;
    p->head = (p->head + 1) % MAX_PIPELINE;
    if (--p->nflight == 0)
        p->state = PUB_IDLE;
    if (r->status >= 200 && r->status < 300) {
        uint32_t subs = g.subs_on_channel[channel_of(q.seq)]; /* one channel per request */
        for (uint64_t seq = q.seq; seq < q.seq + q.count; seq++) {
            g.ack_ns[seq] = now;
            g.acked_delivered += g.msg_count[seq];
        }
        g.acked += q.count;
        g.expected += (uint64_t)subs * q.count;
        uint64_t n;
        r->body[r->body_len] = '\0';
        if (resp_number(r, "\"subscribers\"", &n)) {
            if (g.srv_subs_min < 0 || (int64_t)n < g.srv_subs_min)
                g.srv_subs_min = (int64_t)n;
            if ((int64_t)n > g.srv_subs_max)
                g.srv_subs_max = (int64_t)n;
        }
        /* flowcast's batch answer counts the events it stored. */
        if (g.opt.batch > 1 && resp_number(r, "\"count\"", &n) && n != q.count)
            count_error("pub: batch count mismatch");
    } else {
        char why[48];
        snprintf(why, sizeof why, "pub: HTTP %d", r->status);
        count_pub_errors(q.count, why);
    }
    g.t_last_ack = now;
}

/* One complete answer was read (`more`: bytes follow it in the same read):
 * account it, get the parser ready for the next one, and close if the
 * server closes. Answers are accounted when read, even before the write
 * is reported: the server has seen the request; the write callback only
 * frees the buffer for the next batch. */
static void pub_answer(struct pub *p, bool more)
{
    /* Bytes past the answer to the last request in flight: nothing can
     * explain them, so the stream is not trusted (closed, no error). */
    bool close = p->resp.close || (more && p->nflight == 1);
    pub_account(p);
    resp_reset(&p->resp);
    if (close) /* the server will not answer what is still in flight */
        pub_close(p, p->nflight ? "pub: closed with requests in flight" : NULL);
}

/* After answers were accounted: refill the connections, and see whether
 * publishing (or the whole run) is over. */
static void pub_after_answers(void)
{
    pump();
    check_publish_done();
    check_complete();
}

static void on_pub_write(uv_write_t *req, int status)
{
    struct pub *p = req->handle->data;
    p->write_pending = false;
    if (status == UV_ECANCELED || (p->state != PUB_IDLE && p->state != PUB_BUSY))
        return;
    if (status < 0) {
        char why[48];
        snprintf(why, sizeof why, "pub write: %s", uv_err_name(status));
        pub_close(p, why);
        return;
    }
    pump(); /* the buffer is free; answers read meanwhile may have made room */
}

/* The stream ended (EOF or a read error). A close-delimited answer ends
 * here (as does a chunked one missing only its trailer section); every
 * other request in flight is a publish error. */
static void pub_read_end(struct pub *p)
{
    uint8_t phase = p->resp.phase;
    if (p->state == PUB_BUSY && (phase == RP_BODY_EOF || phase == RP_TRAILERS)) {
        p->resp.phase = RP_DONE;
        p->resp.close = true;
        pub_answer(p, false);
        pub_after_answers();
    } else if (p->state == PUB_BUSY) {
        pub_close(p, "pub: closed before answer");
    } else {
        /* Nothing in flight. If the last write is still unreported, all its
         * requests were answered before the close: as after a last answer. */
        pub_close(p, p->write_pending ? NULL : "pub: closed");
    }
}

static void on_pub_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct pub *p = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        pub_read_end(p);
        return;
    }
    if (p->state != PUB_BUSY) {
        pub_close(p, "pub: unexpected bytes");
        return;
    }
    /* One read may hold several pipelined answers, and part of the next. */
    const char *d = buf->base;
    size_t n = (size_t)nread;
    bool answered = false;
    while (n > 0 && p->state == PUB_BUSY) {
        int r = resp_feed(&p->resp, &d, &n);
        if (r < 0) {
            pub_close(p, "pub: malformed answer");
            break;
        }
        if (r == 1) {
            pub_answer(p, n > 0);
            answered = true;
        }
    }
    if (answered)
        pub_after_answers();
}

/* A connect that failed (at once or later): counted, and the handle closed. */
static void pub_connect_failed(struct pub *p, int err)
{
    p->fails++;
    g.pub_connect_errors++;
    char why[48];
    snprintf(why, sizeof why, "pub connect: %s", uv_err_name(err));
    pub_close(p, why);
}

static void on_pub_connect(uv_connect_t *req, int status)
{
    struct pub *p = req->handle->data;
    if (status == UV_ECANCELED || p->state != PUB_CONNECTING)
        return;
    if (status < 0) {
        pub_connect_failed(p, status);
        return;
    }
    p->fails = 0;
    p->ever_connected = true;
    uv_tcp_nodelay(&p->tcp, 1);
    int err = uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_pub_read);
    if (err < 0) {
        pub_close(p, "pub: read start failed");
        return;
    }
    p->head = p->nflight = 0; /* a new stream: nothing in flight, no partial answer */
    resp_reset(&p->resp);
    p->state = PUB_IDLE;
    pump();
}

/* Opens (or reopens) publisher connection p. */
void pub_connect(struct pub *p)
{
    p->state = PUB_CONNECTING;
    int err = uv_tcp_init_ex(&g.loop, &p->tcp, AF_INET);
    if (err < 0) { /* no socket: the handle does not exist */
        p->fails++;
        g.pub_connect_errors++;
        count_error("pub socket: %s", uv_err_name(err));
        p->state = PUB_DOWN;
        if (p->fails >= PUB_MAX_CONNECT_FAILS)
            p->state = PUB_GAVE_UP;
        else
            uv_timer_start(&p->retry, on_pub_retry, PUB_RETRY_MS, 0);
        check_publish_done();
        return;
    }
    p->tcp.data = p;
    err = tcp_bind_source(&p->tcp, p->index);
    if (err == 0)
        err = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&g.opt.server,
                             on_pub_connect);
    if (err < 0)
        pub_connect_failed(p, err);
}

/* Fails the requests of a connection whose oldest request in flight got
 * no answer within --request-timeout. */
void pubs_sweep(uint64_t now)
{
    uint64_t limit = (uint64_t)(g.opt.request_timeout_s * 1e9);
    for (uint32_t i = 0; g.pubs_inited && i < g.opt.inflight; i++) {
        struct pub *p = &g.pubs[i];
        if (p->state == PUB_BUSY && now - g.send_ns[p->ring[p->head].seq] > limit)
            pub_close(p, "pub: answer timed out");
    }
}

/* Requests connection p may add now: 0 unless it is connected with no
 * write outstanding (one write at a time keeps the buffer simple). */
static uint32_t pub_room(const struct pub *p)
{
    if ((p->state != PUB_IDLE && p->state != PUB_BUSY) || p->write_pending)
        return 0;
    return g.opt.pipeline - p->nflight;
}

/* How many of the next requests (at most `max`) have messages left and
 * are due by --rate: a request is due when its last message is. */
static uint32_t reqs_due(uint32_t max, uint64_t now)
{
    uint32_t k = 0;
    for (uint64_t seq = g.next_seq; k < max && seq < g.opt.messages; k++) {
        uint64_t last = seq + req_count(seq) - 1;
        if (g.opt.rate > 0 && now < g.t_pub0 + (uint64_t)((double)last * 1e9 / g.opt.rate))
            break;
        seq = last + 1;
    }
    return k;
}

/* Sends as many requests as the connections' room and --rate allow, each
 * connection's share pipelined in one write. */
void pump(void)
{
    if (g.finishing || !g.publishing || g.pub_done)
        return;
    uint64_t now = uv_hrtime();
    uint32_t K = g.opt.inflight;
    for (uint32_t i = 0; i < K && g.next_seq < g.opt.messages; i++) {
        struct pub *p = &g.pubs[(g.pump_cursor + i) % K];
        uint32_t room = pub_room(p);
        if (room == 0)
            continue;
        uint32_t k = reqs_due(room, now);
        if (k == 0)
            break; /* --rate: the next request is not due yet */
        pub_send(p, k);
    }
    g.pump_cursor = (g.pump_cursor + 1) % K;
}
