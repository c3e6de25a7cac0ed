/* fcload --ws subscribers: handshake key, masked client frames, server frame parsing. */
#include "fcload.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA

/* xorshift64: masking keys and handshake keys need not be secret here. */
static uint64_t ws_rand_state;
static uint64_t ws_rand(void)
{
    if (ws_rand_state == 0)
        ws_rand_state = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    uint64_t x = ws_rand_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return ws_rand_state = x;
}

/* Writes a random Sec-WebSocket-Key (16 bytes in base64: 24 characters and a
 * NUL) to key. */
void ws_handshake_key(char key[25])
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int j = 0; j < 21; j++)
        key[j] = b64[ws_rand() & 63];
    key[21] = b64[ws_rand() & 48]; /* 16 bytes: last char holds 2 bits */
    memcpy(key + 22, "==", 3);
}

/*
 * Sends one masked client frame. The frames are tiny (a subscribe message,
 * a pong), so they go out with uv_try_write from a stack buffer; the one
 * uv_write_t of a subscriber belongs to its handshake request. Returns 0, or
 * -1 after failing the subscriber if the socket would not take the frame.
 */
static int ws_send(struct sub *s, uint8_t op, const char *payload, size_t len)
{
    char frame[512];
    size_t h = 0;
    if (len > sizeof frame - 8) {
        sub_fail(s, "sub: ws message too long to send");
        return -1;
    }
    frame[h++] = (char)(0x80 | op);
    if (len < 126) {
        frame[h++] = (char)(0x80 | len);
    } else {
        frame[h++] = (char)(0x80 | 126);
        frame[h++] = (char)(len >> 8);
        frame[h++] = (char)len;
    }
    uint32_t key = (uint32_t)ws_rand();
    uint8_t mask[4] = { (uint8_t)key, (uint8_t)(key >> 8), (uint8_t)(key >> 16),
                        (uint8_t)(key >> 24) };
    memcpy(frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        frame[h + i] = (char)((uint8_t)payload[i] ^ mask[i % 4]);
    uv_buf_t b = uv_buf_init(frame, (unsigned)(h + len));
    int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (n == (int)(h + len))
        return 0;
    if (n < 0)
        sub_fail_uv(s, "sub ws write", n);
    else
        sub_fail(s, "sub ws write: partial");
    return -1;
}

/* Finds `"key":"` in s[0..n) and returns the string value's start, setting
 * *len to its length (up to the next quote), or NULL. */
static const char *ws_json_str(const char *s, size_t n, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    const char *k = memmem(s, n, key, klen);
    if (!k)
        return NULL;
    const char *v = k + klen, *end = s + n;
    const char *q = memchr(v, '"', (size_t)(end - v));
    if (!q)
        return NULL;
    *len = (size_t)(q - v);
    return v;
}

static bool ws_type_is(const char *t, size_t tl, const char *want)
{
    return t && tl == strlen(want) && memcmp(t, want, tl) == 0;
}

/*
 * Handles one text message from the server. flowcast writes "type" first,
 * then "channel" and "id", then the event's data, so the first match of each
 * key is the message's own even though the data is embedded as JSON.
 */
static void ws_text(struct sub *s, const char *p, size_t n, uint64_t now)
{
    size_t tl = 0;
    const char *t = ws_json_str(p, n, "\"type\":\"", &tl);
    if (ws_type_is(t, tl, "event")) {
        if (s->state != SUB_READY)
            return;
        size_t il = 0;
        const char *id = ws_json_str(p, n, "\"id\":\"", &il);
        s->flags &= (uint8_t)~SF_EV_ID;
        if (id && parse_event_id(id, il, s->ev_id))
            s->flags |= SF_EV_ID;
        uint64_t seq, ts;
        if (find_number(p, n, "\"fcseq\"", &seq) && find_number(p, n, "\"fcts\"", &ts))
            record_delivery(s, seq, ts, now);
        else
            g.foreign++;
        s->flags &= (uint8_t)~SF_EV_ID;
    } else if (ws_type_is(t, tl, "welcome")) {
        if (s->state != SUB_WAIT_BODY)
            return;
        char msg[320];
        int len = snprintf(msg, sizeof msg,
                           "{\"op\":\"subscribe\",\"channel\":\"%s%u\",\"replay\":0}",
                           g.opt.channel_prefix, s->channel);
        if (ws_send(s, WS_OP_TEXT, msg, (size_t)len) == 0)
            s->state = SUB_WS_SUBSCRIBING;
    } else if (ws_type_is(t, tl, "subscribed")) {
        if (s->state == SUB_WS_SUBSCRIBING)
            sub_ready(s);
    } else if (ws_type_is(t, tl, "error")) {
        size_t cl = 0;
        const char *code = ws_json_str(p, n, "\"code\":\"", &cl);
        char why[48];
        snprintf(why, sizeof why, "sub: ws error %.*s", code ? (int)(cl < 30 ? cl : 30) : 1,
                 code ? code : "?");
        sub_fail(s, why);
    }
    /* other types (ack, direct...) are not expected and ignored */
}

/* Handles one complete frame (payload p[0..n)). */
static void ws_frame(struct sub *s, uint8_t op, const char *p, size_t n, uint64_t now)
{
    switch (op) {
    case WS_OP_TEXT:
        ws_text(s, p, n, now);
        break;
    case WS_OP_PING:
        g.comments++; /* counted with SSE keepalive comments */
        ws_send(s, WS_OP_PONG, p, n);
        break;
    case WS_OP_PONG:
        break;
    case WS_OP_CLOSE: {
        char why[48];
        unsigned code = n >= 2 ? ((unsigned)(uint8_t)p[0] << 8 | (uint8_t)p[1]) : 0;
        snprintf(why, sizeof why, "sub: ws close %u", code);
        sub_fail(s, why);
        break;
    }
    default:
        sub_fail(s, "sub: ws binary or unknown frame");
    }
}

/* Header bytes needed so far, given the bytes read (0 until 2 are in). */
static uint8_t ws_hdr_need(const struct ws_rx *w)
{
    if (w->hdr_len < 2)
        return 2;
    uint8_t l7 = w->hdr[1] & 0x7f;
    return l7 == 127 ? 10 : l7 == 126 ? 4 : 2;
}

/*
 * Feeds bytes after the 101 head to the frame parser. Headers and payloads
 * may be split anywhere across reads: a partial header waits in the
 * subscriber's struct, a partial payload in its carry buffer; a payload that
 * is whole in one read is handled in place. Fragmented messages are not
 * supported (flowcast sends every message as one frame).
 */
void ws_feed(struct sub *s, const char *p, size_t n, uint64_t now)
{
    struct ws_rx *w = &s->ws;
    while (n > 0 && s->state >= SUB_WAIT_BODY && s->state <= SUB_READY) {
        if (!w->in_payload) {
            while (n > 0 && w->hdr_len < ws_hdr_need(w)) {
                w->hdr[w->hdr_len++] = (uint8_t)*p++;
                n--;
            }
            if (w->hdr_len < ws_hdr_need(w))
                return;
            uint8_t b0 = w->hdr[0], b1 = w->hdr[1], op = b0 & 0x0f;
            if (b1 & 0x80) {
                sub_fail(s, "sub: ws masked server frame");
                return;
            }
            if (!(b0 & 0x80) || op == WS_OP_CONT) {
                sub_fail(s, "sub: ws fragmented message");
                return;
            }
            uint64_t len = b1 & 0x7f;
            if (len == 126)
                len = (uint64_t)w->hdr[2] << 8 | w->hdr[3];
            else if (len == 127)
                for (int i = 2; i < 10; i++)
                    len = (i == 2 ? 0 : len << 8) | w->hdr[i];
            if (len > MAX_LINE || (op >= 0x8 && len > 125)) {
                sub_fail(s, "sub: ws frame too long");
                return;
            }
            w->left = len;
            w->in_payload = true;
            s->carry.len = 0;
        }
        uint8_t op = w->hdr[0] & 0x0f;
        const char *payload = p;
        size_t plen = 0;
        if (s->carry.len == 0 && n >= w->left) {
            plen = (size_t)w->left; /* whole payload in this read */
            p += plen;
            n -= plen;
        } else {
            size_t take = n < w->left ? n : (size_t)w->left;
            if (lb_append(&s->carry, p, take) < 0) {
                sub_fail(s, "sub: out of memory");
                return;
            }
            p += take;
            n -= take;
            w->left -= take;
            if (w->left > 0)
                return; /* n is 0: wait for more */
            payload = s->carry.data;
            plen = s->carry.len;
            s->carry.len = 0;
        }
        w->left = 0;
        w->in_payload = false;
        w->hdr_len = 0;
        ws_frame(s, op, payload, plen, now);
    }
}
