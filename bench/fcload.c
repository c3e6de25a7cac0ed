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
 *                keep-alive connections (optionally paced to --rate) while
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
 * and its send time in ns on CLOCK_MONOTONIC ("fcts"); publisher and
 * subscribers live in this process, so latency = receive time - fcts.
 *
 * Memory per subscriber is one struct (a uv_tcp_t, one request and a few
 * counters) plus a heap carry-over buffer that only ever holds a partial
 * line; all reads go into one shared buffer owned by the loop.
 *
 * Exit status: 0 ran to the end (loss is reported, not fatal), 1 no
 * subscriber (or, with --subs 0, no publisher) could connect, 2 bad usage,
 * 3 stopped early by --timeout or a signal (a partial report is printed).
 */
#include <uv.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Limits and constants                                                      */
/* ------------------------------------------------------------------------ */

#define READ_BUF_SIZE (256 * 1024)   /* shared by every read on the loop */
#define MAX_LINE (1u << 20)          /* longest SSE / header line accepted */
#define MAX_SOURCE_ADDRS 64
#define MAX_PIDS 16
#define MAX_ERROR_KINDS 32
#define MAX_INFLIGHT 4096
#define MAX_SIZE (16u << 20)
#define SWEEP_MS 250                 /* timeout checks and progress lines */
#define PROGRESS_MS 5000
#define PUB_RETRY_MS 100             /* publisher reconnect back-off */
#define PUB_MAX_CONNECT_FAILS 20     /* consecutive failures before giving up */
#define SEEN_BITMAP_LIMIT (1ull << 30) /* bytes; above it duplicates go untracked */
#define RESP_BODY_KEEP 256           /* publish answer bytes kept for parsing */
#define WS_PATH "/api/v1/ws"         /* --ws: flowcast's WebSocket endpoint */

#define NS_PER_MS 1000000ull

/* Histogram: log-linear, 128 linear sub-buckets per power of two, so a
 * bucket's midpoint is within 0.4% of any value in it. Values are ns. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

/* ------------------------------------------------------------------------ */
/* Types                                                                     */
/* ------------------------------------------------------------------------ */

struct options {
    const char *url;
    const char *label;
    struct sockaddr_in server;
    char host_header[80];
    const char *pub_path;
    const char *sub_path;
    const char *channel_prefix;
    uint32_t subs;
    uint32_t channels;
    uint64_t messages;
    uint32_t size;
    uint32_t inflight;
    uint32_t connect_concurrency;
    double rate;
    double hold_s;
    double timeout_s;
    double drain_s;
    double request_timeout_s;
    bool idle;
    bool json;
    bool quiet;
    bool ready_on_headers;
    bool ws;                /* --ws: subscribe over WebSocket, not SSE */
    struct sockaddr_in sources[MAX_SOURCE_ADDRS];
    uint32_t nsources;
    int pids[MAX_PIDS];
    uint32_t npids;
};

/* A growable buffer that holds the unfinished tail of a line. */
struct linebuf {
    char *data;
    uint32_t len;
    uint32_t cap;
};

/* Incremental decoder for HTTP/1.1 chunked transfer coding. */
enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_END };
struct dechunk {
    uint8_t state;
    uint8_t digits;
    uint64_t left;
};

enum sub_state {
    SUB_IDLE,        /* not started yet */
    SUB_CONNECTING,  /* TCP connect in progress */
    SUB_HEADERS,     /* request sent, reading the response head */
    SUB_WAIT_BODY,   /* 200 received, waiting for the first body bytes;
                        --ws: 101 received, waiting for "welcome" */
    SUB_WS_SUBSCRIBING, /* --ws: subscribe sent, waiting for "subscribed" */
    SUB_READY,       /* streaming */
    SUB_CLOSING,
    SUB_CLOSED
};

/* WebSocket receive state (--ws): the frame header read so far, then the
 * payload bytes still to come. Payloads split across reads are gathered in
 * the subscriber's carry buffer. */
#define WS_HDR_MAX 10 /* 2 + 8-byte length; server frames carry no mask */
struct ws_rx {
    uint64_t left;            /* payload bytes still to read */
    uint8_t hdr[WS_HDR_MAX];
    uint8_t hdr_len;          /* header bytes read; 0 between frames */
    bool in_payload;
};

/* Subscriber flags. */
#define SF_STATUS_SEEN 0x01
#define SF_CHUNKED 0x02
#define SF_EV_DATA 0x04     /* current event has a data line */
#define SF_EV_SEQ 0x08      /* ...which carried fcseq and fcts */
#define SF_EV_ID 0x10       /* current event has a comparable id */
#define SF_HAVE_LAST_ID 0x20

struct sub {
    uv_tcp_t tcp;
    union {
        uv_connect_t connect; /* used first... */
        uv_write_t write;     /* ...then reused for the request */
    } req;
    struct linebuf carry;
    union {
        struct dechunk dc;  /* SSE over chunked bodies */
        struct ws_rx ws;    /* --ws */
    };
    uint64_t start_ns;      /* connect start, for --request-timeout */
    uint64_t max_sent_ns;   /* latest send time among messages delivered */
    uint64_t ev_seq, ev_ts; /* from the current event's data line */
    uint64_t ev_id[2];      /* current event's id ("a" or "a:b") */
    uint64_t last_id[2];    /* previous delivered event's id */
    uint32_t channel;
    uint16_t http_status;
    uint8_t state;
    uint8_t flags;
};

/* An HTTP response being read by a publisher. */
enum { RP_STATUS, RP_HEADERS, RP_BODY_LEN, RP_BODY_CHUNKED, RP_BODY_EOF, RP_DONE };
struct http_resp {
    struct linebuf lb;
    struct dechunk dc;
    uint8_t phase;
    bool chunked;
    bool have_len;
    bool close;
    int status;
    uint64_t body_left;
    char body[RESP_BODY_KEEP];
    uint32_t body_len;
};

enum pub_state { PUB_DOWN, PUB_CONNECTING, PUB_IDLE, PUB_BUSY, PUB_CLOSING, PUB_GAVE_UP };

struct pub {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t retry;
    uint32_t index;
    uint8_t state;
    bool write_pending;   /* request not yet reported written */
    bool resp_complete;   /* answer fully read, waiting for the write cb */
    bool ever_connected;
    uint32_t fails;       /* consecutive connect failures */
    uint64_t seq;         /* message in flight */
    uint64_t sent_ns;
    char head[512];
    size_t head_len;
    char *body;
    size_t body_len;
    struct http_resp resp;
};

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total, sum, min, max;
};

struct srv_sample {
    bool ok;
    uint64_t rss_kb;
    uint64_t cpu_ticks;
};

struct err_kind {
    char name[56];
    uint64_t count;
};

enum outcome {
    OUT_RUNNING,
    OUT_COMPLETE,       /* every expected delivery arrived */
    OUT_DRAIN_TIMEOUT,  /* --drain expired with deliveries missing */
    OUT_IDLE_DONE,      /* --idle hold finished */
    OUT_NO_CONNECT,     /* nothing could connect */
    OUT_TIMEOUT,        /* --timeout hit */
    OUT_INTERRUPTED     /* SIGINT / SIGTERM */
};

struct app {
    struct options opt;
    uv_loop_t loop;
    uv_timer_t timeout_timer, sweep_timer, phase_timer, rate_timer;
    uv_signal_t sigint, sigterm;
    char *read_buf;
    bool read_buf_busy;

    /* per channel */
    char **sub_req;          /* full GET request text */
    size_t *sub_req_len;
    char **pub_path;         /* expanded publish path */
    uint32_t *subs_on_channel; /* ready subscribers when publishing began */

    /* subscribers */
    struct sub *subs;
    uint32_t next_sub;
    uint32_t connecting;
    bool starting_subs;
    bool connect_done;
    uint64_t conn_attempted, conn_ok, conn_failed, conn_dropped;

    /* publishers and messages */
    struct pub *pubs;
    bool pubs_inited;
    bool publishing;
    bool pub_done;
    uint32_t pump_cursor;
    uint64_t next_seq, acked, pub_errors, pub_connect_errors;
    uint64_t *send_ns, *ack_ns;
    uint32_t *msg_count;       /* unique deliveries per message */
    uint64_t *seen;            /* per subscriber bitmap of channel-local indexes */
    uint64_t seen_words;       /* words per subscriber */
    bool dup_tracking;
    int64_t srv_subs_min, srv_subs_max;

    /* deliveries */
    uint64_t expected, acked_delivered, deliveries, duplicates, reorders;
    uint64_t id_regressions, misrouted, foreign, comments, retry_lines;
    struct hist lat;

    /* time points (uv_hrtime ns) */
    uint64_t t_start, t_connect_done, t_pub0, t_first_pub, t_last_ack;
    uint64_t t_last_delivery, t_end, t_last_progress;

    struct srv_sample s_start, s_connected, s_end;
    struct err_kind errs[MAX_ERROR_KINDS];
    uint32_t nerrs;

    bool finishing;
    enum outcome outcome;
};

static struct app g;

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a progress / diagnostic line on stderr unless --quiet. */
static void note(const char *fmt, ...)
{
    if (g.opt.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fcload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double ns_to_s(uint64_t ns) { return (double)ns / 1e9; }

static double elapsed_s(uint64_t from, uint64_t to)
{
    return (from && to > from) ? ns_to_s(to - from) : 0.0;
}

/* Counts one occurrence of an error kind, e.g. "sub connect: ECONNREFUSED".
 * Kinds are kept in a small table; past MAX_ERROR_KINDS they go to "other". */
static void count_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void count_error(const char *fmt, ...)
{
    char name[sizeof g.errs[0].name];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (uint32_t i = 0; i < g.nerrs; i++) {
        if (strcmp(g.errs[i].name, name) == 0) {
            g.errs[i].count++;
            return;
        }
    }
    if (g.nerrs == MAX_ERROR_KINDS)
        snprintf(name, sizeof name, "other");
    if (g.nerrs < MAX_ERROR_KINDS) {
        snprintf(g.errs[g.nerrs].name, sizeof g.errs[0].name, "%s", name);
        g.errs[g.nerrs++].count = 1;
    } else {
        g.errs[MAX_ERROR_KINDS - 1].count++;
    }
}

/* Appends len bytes to a line buffer, growing it up to MAX_LINE.
 * Returns 0, or -1 when the line is too long or memory runs out. */
static int lb_append(struct linebuf *lb, const char *p, size_t len)
{
    if (len == 0)
        return 0;
    if ((size_t)lb->len + len > MAX_LINE)
        return -1;
    if (lb->len + len > lb->cap) {
        uint32_t cap = lb->cap ? lb->cap : 64;
        while (cap < lb->len + len)
            cap *= 2;
        char *d = realloc(lb->data, cap);
        if (!d)
            return -1;
        lb->data = d;
        lb->cap = cap;
    }
    memcpy(lb->data + lb->len, p, len);
    lb->len += (uint32_t)len;
    return 0;
}

static void lb_free(struct linebuf *lb)
{
    free(lb->data);
    lb->data = NULL;
    lb->len = lb->cap = 0;
}

/*
 * Takes the next complete line from the input (*p, *n), joined with whatever
 * partial line the buffer carried over from earlier input.
 * Returns 1 and sets (*line, *line_len) (without "\n" or "\r\n") and advances
 * the input past the newline; the line stays valid until the next call.
 * Returns 0 when the input holds no newline: it is all kept in the buffer.
 * Returns -1 when the line exceeds MAX_LINE.
 */
static int take_line(struct linebuf *lb, const char **p, size_t *n,
                     const char **line, size_t *line_len)
{
    const char *nl = memchr(*p, '\n', *n);
    if (!nl) {
        if (lb_append(lb, *p, *n) < 0)
            return -1;
        *p += *n;
        *n = 0;
        return 0;
    }
    size_t take = (size_t)(nl - *p);
    if (lb->len == 0) {
        *line = *p;
        *line_len = take;
    } else {
        if (lb_append(lb, *p, take) < 0)
            return -1;
        *line = lb->data;
        *line_len = lb->len;
        lb->len = 0; /* content stays readable until the next append */
    }
    *p = nl + 1;
    *n -= take + 1;
    if (*line_len > 0 && (*line)[*line_len - 1] == '\r')
        (*line_len)--;
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Feeds one framing byte (anything but chunk payload) to the decoder.
 * Returns 0 to go on, 2 at the final zero-size chunk, -1 on bad framing. */
static int dechunk_byte(struct dechunk *dc, char c)
{
    switch (dc->state) {
    case CH_SIZE:
        if (hexval(c) >= 0) {
            if (++dc->digits > 15)
                return -1;
            dc->left = dc->left * 16 + (uint64_t)hexval(c);
            return 0;
        }
        if (dc->digits == 0)
            return -1;
        if (c != '\n') {
            dc->state = CH_EXT; /* ";ext" or "\r": skip to the newline */
            return 0;
        }
        break;
    case CH_EXT:
        if (c != '\n')
            return 0;
        break;
    case CH_DATA_CR:
        if (c == '\r') {
            dc->state = CH_DATA_LF;
            return 0;
        }
        if (c != '\n')
            return -1;
        dc->state = CH_SIZE;
        dc->digits = 0;
        return 0;
    case CH_DATA_LF:
        if (c != '\n')
            return -1;
        dc->state = CH_SIZE;
        dc->digits = 0;
        return 0;
    default:
        return 2;
    }
    /* end of a size line */
    if (dc->left == 0) {
        dc->state = CH_END;
        return 2;
    }
    dc->state = CH_DATA;
    return 0;
}

/*
 * Consumes chunked framing from (*p, *n) and yields the next run of payload.
 * Returns 1 with (*run, *run_len) set, 0 when the input ran out, 2 at the end
 * of the body (zero-size chunk), -1 on malformed framing.
 */
static int dechunk_next(struct dechunk *dc, const char **p, size_t *n,
                        const char **run, size_t *run_len)
{
    while (*n > 0) {
        if (dc->state == CH_DATA) {
            size_t take = *n < dc->left ? *n : (size_t)dc->left;
            *run = *p;
            *run_len = take;
            *p += take;
            *n -= take;
            dc->left -= take;
            if (dc->left == 0)
                dc->state = CH_DATA_CR;
            return 1;
        }
        char c = **p;
        (*p)++;
        (*n)--;
        int r = dechunk_byte(dc, c);
        if (r != 0)
            return r;
    }
    return 0;
}

/*
 * Finds `key` in s[0..n) and reads the unsigned integer after it, skipping
 * up to 6 quote, backslash, colon or space characters, so it works on plain
 * JSON ("fcseq":12) and on JSON escaped inside a string (\"fcseq\":12).
 */
static bool find_number(const char *s, size_t n, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    const char *k = memmem(s, n, key, klen);
    if (!k)
        return false;
    const char *p = k + klen, *end = s + n;
    for (int i = 0; i < 6 && p < end && *p && strchr("\"\\: ", *p); i++)
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    uint64_t v = 0;
    for (int digits = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        if (++digits > 19)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

/* Parses an HTTP/1.x status line ("HTTP/1.1 200 OK"), which is not
 * NUL-terminated. Returns the status code, or -1 if malformed. */
static int parse_status_line(const char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ')
        return -1;
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return -1;
        status = status * 10 + (line[i] - '0');
    }
    return (len == 12 || line[12] == ' ') ? status : -1;
}

/* Parses an SSE id of the form "123" or "123:4" (Nchan: "time:tag", also
 * "time:[tag],..."). Returns false for anything else. */
static bool parse_event_id(const char *s, size_t n, uint64_t id[2])
{
    size_t i = 0;
    id[0] = id[1] = 0;
    if (n == 0 || !isdigit((unsigned char)s[0]))
        return false;
    for (; i < n && isdigit((unsigned char)s[i]) && i < 19; i++)
        id[0] = id[0] * 10 + (uint64_t)(s[i] - '0');
    if (i == n)
        return true;
    if (s[i] != ':')
        return false;
    i++;
    if (i < n && s[i] == '[')
        i++;
    size_t start = i;
    for (; i < n && isdigit((unsigned char)s[i]) && i - start < 19; i++)
        id[1] = id[1] * 10 + (uint64_t)(s[i] - '0');
    return i > start;
}

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

static void hist_record(struct hist *h, uint64_t v)
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
/* Server process statistics (/proc)                                         */
/* ------------------------------------------------------------------------ */

/* Reads VmRSS (kB) from /proc/PID/status and utime+stime (clock ticks) from
 * /proc/PID/stat. Returns false if either cannot be read. */
static bool proc_read(int pid, uint64_t *rss_kb, uint64_t *ticks)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool have_rss = false;
    while (fgets(buf, sizeof buf, f)) {
        if (strncmp(buf, "VmRSS:", 6) == 0) {
            *rss_kb = strtoull(buf + 6, NULL, 10);
            have_rss = true;
        }
    }
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and ')': fields start after the last ')'.
     * Field 3 (state) is token 0, so utime (14) and stime (15) are tokens 11, 12. */
    char *p = strrchr(buf, ')');
    if (!p || !have_rss)
        return false;
    p++;
    uint64_t utime = 0, stime = 0;
    for (int tok = 0; tok <= 12; tok++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        char *end;
        uint64_t v = strtoull(p, &end, 10);
        if (tok == 11)
            utime = v;
        if (tok == 12)
            stime = v;
        p = end;
        while (*p && *p != ' ')
            p++;
    }
    *ticks = utime + stime;
    return true;
}

/* Sums RSS and CPU ticks over every --server-pid. */
static struct srv_sample srv_sample(void)
{
    struct srv_sample s = { .ok = g.opt.npids > 0 };
    for (uint32_t i = 0; i < g.opt.npids; i++) {
        uint64_t rss = 0, ticks = 0;
        if (!proc_read(g.opt.pids[i], &rss, &ticks)) {
            note("cannot read /proc/%d (server gone?)", g.opt.pids[i]);
            s.ok = false;
            continue;
        }
        s.rss_kb += rss;
        s.cpu_ticks += ticks;
    }
    return s;
}

static double ticks_to_s(uint64_t ticks)
{
    long hz = sysconf(_SC_CLK_TCK);
    return (double)ticks / (double)(hz > 0 ? hz : 100);
}

/* ------------------------------------------------------------------------ */
/* Forward declarations                                                      */
/* ------------------------------------------------------------------------ */

static void finish(enum outcome why);
static void subs_start_more(void);
static void pump(void);
static void check_publish_done(void);
static void check_complete(void);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
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
static int tcp_bind_source(uv_tcp_t *tcp, uint32_t n)
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
/* Subscribers                                                               */
/* ------------------------------------------------------------------------ */

static void on_sub_closed(uv_handle_t *h)
{
    struct sub *s = h->data;
    s->state = SUB_CLOSED;
    lb_free(&s->carry);
}

/* Closes a subscriber that failed (before it was ready) or dropped (after).
 * `why` names the error kind. Safe to call from the subscriber's own callbacks. */
static void sub_fail(struct sub *s, const char *why)
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

static void sub_fail_uv(struct sub *s, const char *what, int err)
{
    char why[48];
    snprintf(why, sizeof why, "%s: %s", what, uv_err_name(err));
    sub_fail(s, why);
}

/* The subscription is established: it counts as connected from now on. */
static void sub_ready(struct sub *s)
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
static void record_delivery(struct sub *s, uint64_t seq, uint64_t ts, uint64_t now)
{
    uint64_t C = g.opt.channels;
    if (seq >= g.opt.messages || !g.send_ns || g.send_ns[seq] == 0) {
        g.foreign++; /* not a message this run sent */
        return;
    }
    if (seq % C != s->channel) {
        g.misrouted++;
        return;
    }
    if (g.dup_tracking) {
        uint64_t k = seq / C, idx = (uint64_t)(s - g.subs) * g.seen_words + k / 64;
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

/* End of an SSE event (blank line): account for it, reset event state. */
static void sse_dispatch(struct sub *s, uint64_t now)
{
    if (s->flags & SF_EV_DATA) {
        if (s->flags & SF_EV_SEQ)
            record_delivery(s, s->ev_seq, s->ev_ts, now);
        else
            g.foreign++;
    }
    s->flags &= (uint8_t)~(SF_EV_DATA | SF_EV_SEQ | SF_EV_ID);
}

/* Handles one SSE line (field, comment, or blank line ending an event). */
static void sse_line(struct sub *s, const char *line, size_t len, uint64_t now)
{
    if (len == 0) {
        sse_dispatch(s, now);
        return;
    }
    if (line[0] == ':') {
        g.comments++;
        return;
    }
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t val_len = (size_t)(line + len - val);
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        s->flags |= SF_EV_DATA;
        if (find_number(val, val_len, "fcseq", &s->ev_seq) &&
            find_number(val, val_len, "fcts", &s->ev_ts))
            s->flags |= SF_EV_SEQ;
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
        if (parse_event_id(val, val_len, s->ev_id))
            s->flags |= SF_EV_ID;
    } else if (name_len == 5 && memcmp(line, "retry", 5) == 0) {
        g.retry_lines++;
    }
    /* "event" and unknown fields are ignored */
}

/* Feeds decoded body bytes to the SSE parser. */
static void sse_feed(struct sub *s, const char *p, size_t n, uint64_t now)
{
    if (n > 0 && s->state == SUB_WAIT_BODY)
        sub_ready(s);
    while (n > 0 && s->state == SUB_READY) {
        const char *line;
        size_t len;
        int r = take_line(&s->carry, &p, &n, &line, &len);
        if (r < 0) {
            sub_fail(s, "sub: SSE line too long");
            return;
        }
        if (r == 0)
            return;
        sse_line(s, line, len, now);
    }
}

/* ------------------------------------------------------------------------ */
/* WebSocket subscribers (--ws)                                              */
/* ------------------------------------------------------------------------ */

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
static void ws_feed(struct sub *s, const char *p, size_t n, uint64_t now)
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
static void sub_start(uint32_t i)
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
static void subs_sweep(uint64_t now)
{
    uint64_t limit = (uint64_t)(g.opt.request_timeout_s * 1e9);
    for (uint32_t i = 0; i < g.next_sub && g.connecting > 0; i++) {
        struct sub *s = &g.subs[i];
        if (s->state >= SUB_CONNECTING && s->state < SUB_READY &&
            now - s->start_ns > limit)
            sub_fail(s, "sub: timed out before ready");
    }
}

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
}

static void resp_keep_body(struct http_resp *r, const char *p, size_t n)
{
    size_t room = sizeof r->body - 1 - r->body_len;
    if (n > room)
        n = room;
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
            if (t == 2)
                r->phase = RP_DONE; /* trailers, if any, are not expected */
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Publishers: connections and requests                                      */
/* ------------------------------------------------------------------------ */

static void pub_connect(struct pub *p);

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

/* Closes a publisher connection; the message in flight, if any, counts as a
 * publish error of kind `why` (NULL: closed after a complete answer). */
static void pub_close(struct pub *p, const char *why)
{
    if (p->state == PUB_CLOSING || p->state == PUB_DOWN || p->state == PUB_GAVE_UP)
        return;
    if (why && !g.finishing) {
        count_error("%s", why);
        if (p->state == PUB_BUSY)
            g.pub_errors++;
    }
    p->state = PUB_CLOSING;
    uv_close((uv_handle_t *)&p->tcp, on_pub_closed);
}

static void on_pub_write(uv_write_t *req, int status);

/* Writes the request publishing message `seq` on an idle connection. */
static void pub_send(struct pub *p, uint64_t seq)
{
    uint32_t ch = (uint32_t)(seq % g.opt.channels);
    uint64_t ts = uv_hrtime();
    int n = snprintf(p->body, (size_t)g.opt.size + 128,
                     "{\"fcseq\":%" PRIu64 ",\"fcts\":%" PRIu64 ",\"pad\":\"", seq, ts);
    size_t len = (size_t)n;
    while (len + 2 < g.opt.size)
        p->body[len++] = 'x';
    memcpy(p->body + len, "\"}", 2);
    p->body_len = len + 2;
    p->head_len = (size_t)snprintf(p->head, sizeof p->head,
                                   "POST %s HTTP/1.1\r\nHost: %s\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Content-Length: %zu\r\n\r\n",
                                   g.pub_path[ch], g.opt.host_header, p->body_len);
    resp_reset(&p->resp);
    p->seq = seq;
    p->sent_ns = ts;
    p->state = PUB_BUSY;
    p->write_pending = true;
    p->resp_complete = false;
    g.send_ns[seq] = ts;
    if (!g.t_first_pub)
        g.t_first_pub = ts;
    uv_buf_t bufs[2] = { uv_buf_init(p->head, (unsigned)p->head_len),
                         uv_buf_init(p->body, (unsigned)p->body_len) };
    int err = uv_write(&p->write, (uv_stream_t *)&p->tcp, bufs, 2, on_pub_write);
    if (err < 0) {
        p->write_pending = false;
        char why[48];
        snprintf(why, sizeof why, "pub write: %s", uv_err_name(err));
        pub_close(p, why);
    }
}

/* A complete answer arrived for the message in flight: account for it and
 * make the connection available again (or reconnect if the server closes). */
static void pub_answered(struct pub *p)
{
    uint64_t now = uv_hrtime(), seq = p->seq;
    struct http_resp *r = &p->resp;
    if (r->status >= 200 && r->status < 300) {
        g.ack_ns[seq] = now;
        g.acked++;
        g.expected += g.subs_on_channel[seq % g.opt.channels];
        g.acked_delivered += g.msg_count[seq];
        uint64_t n;
        r->body[r->body_len] = '\0';
        if (find_number(r->body, r->body_len, "\"subscribers\"", &n)) {
            if (g.srv_subs_min < 0 || (int64_t)n < g.srv_subs_min)
                g.srv_subs_min = (int64_t)n;
            if ((int64_t)n > g.srv_subs_max)
                g.srv_subs_max = (int64_t)n;
        }
    } else {
        g.pub_errors++;
        count_error("pub: HTTP %d", r->status);
    }
    g.t_last_ack = now;
    if (r->close) {
        p->state = PUB_IDLE; /* nothing in flight: closing is not an error */
        pub_close(p, NULL);
    } else {
        p->state = PUB_IDLE;
    }
    pump();
    check_publish_done();
    check_complete();
}

/* Completes the request once both the write and the answer are done. */
static void pub_maybe_answered(struct pub *p)
{
    if (p->state == PUB_BUSY && p->resp_complete && !p->write_pending)
        pub_answered(p);
}

static void on_pub_write(uv_write_t *req, int status)
{
    struct pub *p = req->handle->data;
    p->write_pending = false;
    if (status == UV_ECANCELED || p->state != PUB_BUSY)
        return;
    if (status < 0) {
        char why[48];
        snprintf(why, sizeof why, "pub write: %s", uv_err_name(status));
        pub_close(p, why);
        return;
    }
    pub_maybe_answered(p);
}

static void on_pub_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct pub *p = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (p->state == PUB_BUSY && p->resp_complete) {
            p->resp.close = true; /* answered; close once the write is reported */
            uv_read_stop(stream);
            return;
        }
        if (p->state == PUB_BUSY && p->resp.phase == RP_BODY_EOF) {
            p->resp.phase = RP_DONE;
            p->resp.close = true;
            p->resp_complete = true;
            pub_maybe_answered(p);
            return;
        }
        pub_close(p, p->state == PUB_BUSY ? "pub: closed before answer" : "pub: closed");
        return;
    }
    if (p->state != PUB_BUSY || p->resp_complete) {
        pub_close(p, "pub: unexpected bytes");
        return;
    }
    const char *d = buf->base;
    size_t n = (size_t)nread;
    int r = resp_feed(&p->resp, &d, &n);
    if (r < 0) {
        pub_close(p, "pub: malformed answer");
    } else if (r == 1) {
        if (n > 0)
            p->resp.close = true; /* bytes past the answer: do not trust the stream */
        p->resp_complete = true;
        pub_maybe_answered(p);
    }
}

static void on_pub_connect(uv_connect_t *req, int status)
{
    struct pub *p = req->handle->data;
    if (status == UV_ECANCELED || p->state != PUB_CONNECTING)
        return;
    if (status < 0) {
        p->fails++;
        g.pub_connect_errors++;
        char why[48];
        snprintf(why, sizeof why, "pub connect: %s", uv_err_name(status));
        pub_close(p, why);
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
    p->state = PUB_IDLE;
    pump();
}

/* Opens (or reopens) publisher connection p. */
static void pub_connect(struct pub *p)
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
    if (err < 0) {
        p->fails++;
        g.pub_connect_errors++;
        char why[48];
        snprintf(why, sizeof why, "pub connect: %s", uv_err_name(err));
        pub_close(p, why);
    }
}

/* Fails requests that got no answer within --request-timeout. */
static void pubs_sweep(uint64_t now)
{
    uint64_t limit = (uint64_t)(g.opt.request_timeout_s * 1e9);
    for (uint32_t i = 0; g.pubs_inited && i < g.opt.inflight; i++) {
        struct pub *p = &g.pubs[i];
        if (p->state == PUB_BUSY && now - p->sent_ns > limit)
            pub_close(p, "pub: answer timed out");
    }
}

/* Sends as many messages as idle connections and --rate allow. */
static void pump(void)
{
    if (g.finishing || !g.publishing || g.pub_done)
        return;
    uint64_t now = uv_hrtime();
    uint32_t K = g.opt.inflight;
    for (uint32_t i = 0; i < K && g.next_seq < g.opt.messages; i++) {
        struct pub *p = &g.pubs[(g.pump_cursor + i) % K];
        if (p->state != PUB_IDLE)
            continue;
        if (g.opt.rate > 0 &&
            now < g.t_pub0 + (uint64_t)((double)g.next_seq * 1e9 / g.opt.rate))
            break;
        pub_send(p, g.next_seq++);
    }
    g.pump_cursor = (g.pump_cursor + 1) % K;
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
static void check_complete(void)
{
    if (g.pub_done && !g.finishing && g.acked_delivered >= g.expected)
        finish(OUT_COMPLETE);
}

/* Publishing is over when every message was sent and answered (or failed),
 * or when every publisher gave up; then the drain timer starts. */
static void check_publish_done(void)
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
    uint64_t M = g.opt.messages, C = g.opt.channels;
    g.send_ns = calloc(M, sizeof *g.send_ns);
    g.ack_ns = calloc(M, sizeof *g.ack_ns);
    g.msg_count = calloc(M, sizeof *g.msg_count);
    if (!g.send_ns || !g.ack_ns || !g.msg_count)
        return -1;
    uint64_t per_channel = (M + C - 1) / C;
    g.seen_words = (per_channel + 63) / 64;
    uint64_t bytes = g.seen_words * 8 * (uint64_t)g.opt.subs;
    if (bytes > SEEN_BITMAP_LIMIT) {
        note("duplicate tracking off: it would need %" PRIu64 " MiB", bytes >> 20);
        return 0;
    }
    g.seen = calloc(bytes ? bytes : 1, 1);
    g.dup_tracking = g.seen != NULL;
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
    g.pubs = calloc(g.opt.inflight, sizeof *g.pubs);
    if (!g.pubs) {
        finish(OUT_INTERRUPTED);
        return;
    }
    for (uint32_t i = 0; i < g.opt.inflight; i++) {
        struct pub *p = &g.pubs[i];
        p->index = i;
        p->body = malloc((size_t)g.opt.size + 128);
        uv_timer_init(&g.loop, &p->retry);
        p->retry.data = p;
    }
    g.pubs_inited = true;
    g.publishing = true;
    g.t_pub0 = uv_hrtime();
    note("publishing %" PRIu64 " messages of %u B on %u channel(s), %u in flight%s",
          g.opt.messages, g.opt.size, g.opt.channels, g.opt.inflight,
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
static void subs_start_more(void)
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

static void on_sweep(uv_timer_t *t)
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

static void on_overall_timeout(uv_timer_t *t)
{
    (void)t;
    note("--timeout reached, stopping");
    finish(OUT_TIMEOUT);
}

static void on_signal(uv_signal_t *h, int signum)
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
static void finish(enum outcome why)
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

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fputs(
        "usage: fcload [options]\n"
        "Drives an SSE server (flowcast, Nchan) with subscribers and publishers\n"
        "(or flowcast's WebSocket API, with --ws).\n"
        "\n"
        "  --url URL               server, http://IPv4:port (default http://127.0.0.1:8000)\n"
        "  --subs N                SSE (or --ws) subscribers (default 100)\n"
        "  --channels C            channels; subscribers and messages go round-robin (default 1)\n"
        "  --channel-prefix P      channel names are P0..P{C-1} (default \"bench.\")\n"
        "  --messages M            messages to publish in total (default 1000)\n"
        "  --size B                JSON body size in bytes, about (default 100)\n"
        "  --inflight K            keep-alive publisher connections, one request each (default 8)\n"
        "  --rate R                messages per second, 0 = as fast as --inflight allows (default 0)\n"
        "  --idle                  connect subscribers, hold them, measure, exit; no publishing\n"
        "  --hold S                seconds to hold subscribers with --idle (default 5)\n"
        "  --source-addrs A,B,..   bind client sockets round-robin to these IPv4 source addresses\n"
        "  --server-pid P[,P..]    read server RSS and CPU from /proc (summed over the pids)\n"
        "  --timeout S             hard limit on the whole run (default 60)\n"
        "  --drain S               wait for deliveries after the last answer (default 10)\n"
        "  --request-timeout S     per subscriber connect and per publish answer (default 10)\n"
        "  --connect-concurrency N subscriber connects in progress at most (default 500)\n"
        "  --pub-path T            publish path, %s = channel (default /api/v1/channels/%s/events)\n"
        "  --sub-path T            subscribe path (default /api/v1/channels/%s/sse?replay=0)\n"
        "  --ready-on-headers      a subscriber counts as connected at its 200 head, not first bytes\n"
        "  --ws                    subscribe over WebSocket (GET " WS_PATH ", op subscribe),\n"
        "                          ready at \"subscribed\"; publishing stays HTTP POST\n"
        "  --json                  results as one JSON object on stdout (summary on stderr)\n"
        "  --label NAME            name for this run, copied into the report\n"
        "  --quiet                 no progress lines on stderr\n"
        "  --help                  this text\n"
        "\n"
        "Exit status: 0 ran to the end (loss is reported, not fatal), 1 could not connect,\n"
        "2 bad usage, 3 stopped early by --timeout or a signal.\n",
        out);
}

static bool bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fcload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return false;
}

static bool parse_u64(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return bad("--%s wants an integer in %" PRIu64 "..%" PRIu64 ", got '%s'", name, min,
                   max, s);
    *out = v;
    return true;
}

static bool parse_u32(const char *name, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (!parse_u64(name, s, min, max, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_number(const char *name, const char *s, double min, double max, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < min || v > max)
        return bad("--%s wants a number in %g..%g, got '%s'", name, min, max, s);
    *out = v;
    return true;
}

static bool parse_secs(const char *name, const char *s, double min, double *out)
{
    return parse_number(name, s, min, 86400, out);
}

/* Parses "http://A.B.C.D:port[/]" (or "localhost", or without the scheme). */
static bool parse_url(const char *url, struct options *o)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    char host[64];
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof host)
        return bad("bad --url '%s'", url);
    memcpy(host, p, hl);
    host[hl] = '\0';
    unsigned long port = 80;
    p += hl;
    if (*p == ':') {
        char *end;
        port = strtoul(p + 1, &end, 10);
        if (end == p + 1 || port == 0 || port > 65535)
            return bad("bad port in --url '%s'", url);
        p = end;
    }
    if (*p && strcmp(p, "/") != 0)
        return bad("--url takes no path ('%s'); see --pub-path / --sub-path", url);
    memset(&o->server, 0, sizeof o->server);
    o->server.sin_family = AF_INET;
    o->server.sin_port = htons((uint16_t)port);
    const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (inet_pton(AF_INET, ip, &o->server.sin_addr) != 1)
        return bad("--url host must be an IPv4 address, got '%s'", host);
    snprintf(o->host_header, sizeof o->host_header, "%s:%lu", host, port);
    return true;
}

static bool parse_sources(const char *list, struct options *o)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->nsources == MAX_SOURCE_ADDRS)
            return bad("at most %d --source-addrs", MAX_SOURCE_ADDRS);
        struct sockaddr_in *a = &o->sources[o->nsources++];
        memset(a, 0, sizeof *a);
        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, t, &a->sin_addr) != 1)
            return bad("bad --source-addrs entry '%s'", t);
    }
    return o->nsources > 0 || bad("empty --source-addrs");
}

static bool parse_pids(const char *list, struct options *o)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        uint32_t pid;
        if (o->npids == MAX_PIDS)
            return bad("at most %d --server-pid values", MAX_PIDS);
        if (!parse_u32("server-pid", t, 1, INT_MAX, &pid))
            return false;
        o->pids[o->npids++] = (int)pid;
    }
    return o->npids > 0 || bad("empty --server-pid");
}

/* A path template must start with '/' and hold "%s" exactly once. */
static bool check_template(const char *name, const char *t)
{
    const char *first = strstr(t, "%s");
    if (t[0] != '/' || !first || strstr(first + 2, "%s"))
        return bad("--%s must start with '/' and contain %%s once, got '%s'", name, t);
    return true;
}

enum {
    OPT_URL = 256, OPT_SUBS, OPT_CHANNELS, OPT_PREFIX, OPT_MESSAGES, OPT_SIZE, OPT_INFLIGHT,
    OPT_RATE, OPT_IDLE, OPT_HOLD, OPT_SOURCES, OPT_PIDS, OPT_TIMEOUT, OPT_DRAIN, OPT_REQ_TIMEOUT,
    OPT_CONCURRENCY, OPT_PUB_PATH, OPT_SUB_PATH, OPT_READY_HEADERS, OPT_JSON, OPT_LABEL, OPT_QUIET,
    OPT_WS, OPT_HELP
};

static const struct option long_opts[] = {
    { "url", required_argument, NULL, OPT_URL },
    { "subs", required_argument, NULL, OPT_SUBS },
    { "channels", required_argument, NULL, OPT_CHANNELS },
    { "channel-prefix", required_argument, NULL, OPT_PREFIX },
    { "messages", required_argument, NULL, OPT_MESSAGES },
    { "size", required_argument, NULL, OPT_SIZE },
    { "inflight", required_argument, NULL, OPT_INFLIGHT },
    { "rate", required_argument, NULL, OPT_RATE },
    { "idle", no_argument, NULL, OPT_IDLE },
    { "hold", required_argument, NULL, OPT_HOLD },
    { "source-addrs", required_argument, NULL, OPT_SOURCES },
    { "server-pid", required_argument, NULL, OPT_PIDS },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "drain", required_argument, NULL, OPT_DRAIN },
    { "request-timeout", required_argument, NULL, OPT_REQ_TIMEOUT },
    { "connect-concurrency", required_argument, NULL, OPT_CONCURRENCY },
    { "pub-path", required_argument, NULL, OPT_PUB_PATH },
    { "sub-path", required_argument, NULL, OPT_SUB_PATH },
    { "ready-on-headers", no_argument, NULL, OPT_READY_HEADERS },
    { "json", no_argument, NULL, OPT_JSON },
    { "label", required_argument, NULL, OPT_LABEL },
    { "quiet", no_argument, NULL, OPT_QUIET },
    { "ws", no_argument, NULL, OPT_WS },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

/* Applies one parsed option. Returns false on a bad value. */
static bool apply_option(int c, const char *a, struct options *o)
{
    switch (c) {
    case OPT_URL: o->url = a; return parse_url(a, o);
    case OPT_SUBS: return parse_u32("subs", a, 0, 10000000, &o->subs);
    case OPT_CHANNELS: return parse_u32("channels", a, 1, 10000000, &o->channels);
    case OPT_PREFIX: o->channel_prefix = a; return strlen(a) < 200 || bad("prefix too long");
    case OPT_MESSAGES: return parse_u64("messages", a, 0, 1000000000, &o->messages);
    case OPT_SIZE: return parse_u32("size", a, 0, MAX_SIZE, &o->size);
    case OPT_INFLIGHT: return parse_u32("inflight", a, 1, MAX_INFLIGHT, &o->inflight);
    case OPT_RATE: return parse_number("rate", a, 0, 1e9, &o->rate);
    case OPT_IDLE: o->idle = true; return true;
    case OPT_HOLD: return parse_secs("hold", a, 0, &o->hold_s);
    case OPT_SOURCES: return parse_sources(a, o);
    case OPT_PIDS: return parse_pids(a, o);
    case OPT_TIMEOUT: return parse_secs("timeout", a, 0.1, &o->timeout_s);
    case OPT_DRAIN: return parse_secs("drain", a, 0, &o->drain_s);
    case OPT_REQ_TIMEOUT: return parse_secs("request-timeout", a, 0.1, &o->request_timeout_s);
    case OPT_CONCURRENCY:
        return parse_u32("connect-concurrency", a, 1, 1000000, &o->connect_concurrency);
    case OPT_PUB_PATH: o->pub_path = a; return check_template("pub-path", a);
    case OPT_SUB_PATH: o->sub_path = a; return check_template("sub-path", a);
    case OPT_READY_HEADERS: o->ready_on_headers = true; return true;
    case OPT_JSON: o->json = true; return true;
    case OPT_LABEL: o->label = a; return true;
    case OPT_QUIET: o->quiet = true; return true;
    case OPT_WS: o->ws = true; return true;
    default: return false;
    }
}

/* Parses argv into o. Returns 0 to run, 1 after --help, 2 on bad usage. */
static int parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){
        .url = "http://127.0.0.1:8000", .label = "", .pub_path = "/api/v1/channels/%s/events",
        .sub_path = "/api/v1/channels/%s/sse?replay=0", .channel_prefix = "bench.",
        .subs = 100, .channels = 1, .messages = 1000, .size = 100, .inflight = 8,
        .connect_concurrency = 500, .hold_s = 5, .timeout_s = 60, .drain_s = 10,
        .request_timeout_s = 10,
    };
    parse_url(o->url, o);
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            usage(stdout);
            return 1;
        }
        if (c == '?' || c == ':') {
            bad("unknown option or missing value: '%s'", argv[optind - 1]);
            return 2;
        }
        if (!apply_option(c, optarg, o))
            return 2;
    }
    bool ok = true;
    if (optind < argc)
        ok = bad("unexpected argument '%s'", argv[optind]);
    else if (o->idle && o->subs == 0)
        ok = bad("--idle needs --subs > 0");
    else if (!o->idle && o->messages == 0)
        ok = bad("--messages must be > 0 (or use --idle)");
    else if (o->ws && o->ready_on_headers)
        ok = bad("--ready-on-headers does not apply to --ws");
    return ok ? 0 : 2;
}

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
            static const char b64[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            char key[25];
            for (int j = 0; j < 21; j++)
                key[j] = b64[ws_rand() & 63];
            key[21] = b64[ws_rand() & 48]; /* 16 bytes: last char holds 2 bits */
            memcpy(key + 22, "==", 3);
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
        free(g.pubs[i].body);
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

    struct summary m = summarize();
    if (g.opt.json) {
        report_json(stdout, &m);
        report_human(stderr, &m);
    } else {
        report_human(stdout, &m);
    }
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
