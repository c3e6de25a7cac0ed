/* fcload internal header: limits, shared types, the global run state, exported functions. */
#ifndef FCLOAD_H
#define FCLOAD_H

#include <uv.h>

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Limits and constants                                                      */
/* ------------------------------------------------------------------------ */

#define READ_BUF_SIZE (256 * 1024)   /* shared by every read on the loop */
#define MAX_LINE (1u << 20)          /* longest SSE / header line accepted */
#define MAX_SOURCE_ADDRS 64
#define MAX_PIDS 16
#define MAX_ERROR_KINDS 32
#define MAX_INFLIGHT 4096
#define MAX_PIPELINE 64              /* --pipeline; also each publisher's ring size */
#define MAX_BATCH 1000               /* --batch: messages per request */
#define PUB_HEAD_MAX 512             /* a publish request head (options.c bounds the path) */
#define PUB_BODY_EXTRA 128           /* message bytes beyond --size: fcseq, fcts, quotes */
#define PUB_LINE_EXTRA 12            /* --batch: an NDJSON line's {"data":...}\n around it */
#define PUB_CONN_BUF_MAX (256u << 20) /* --batch: write buffer per publisher connection */
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
    uint32_t pipeline;      /* requests in flight per publisher connection */
    uint32_t batch;         /* messages per request (> 1: one NDJSON body) */
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
enum { RP_STATUS, RP_HEADERS, RP_BODY_LEN, RP_BODY_CHUNKED, RP_TRAILERS, RP_BODY_EOF, RP_DONE };
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
    bool body_cut;          /* the body went on past what `body` keeps */
};

/* A publish request in flight: messages seq .. seq + count - 1. */
struct pub_req {
    uint64_t seq;
    uint32_t count;
};

/* PUB_IDLE: connected, nothing in flight; PUB_BUSY: requests in flight. */
enum pub_state { PUB_DOWN, PUB_CONNECTING, PUB_IDLE, PUB_BUSY, PUB_CLOSING, PUB_GAVE_UP };

struct pub {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t retry;
    uint32_t index;
    uint8_t state;
    bool write_pending;   /* last write not yet reported: `write` and wbuf in use */
    bool ever_connected;
    uint32_t fails;       /* consecutive connect failures */
    uint32_t head;        /* ring[head] is the oldest request in flight */
    uint32_t nflight;     /* requests in flight (written or being written) */
    struct pub_req ring[MAX_PIPELINE]; /* the requests, in send order = answer order */
    char *wbuf;           /* up to --pipeline requests (of --batch messages), one write */
    struct http_resp resp; /* the answer being read (for ring[head]) */
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

/* The whole run's state, defined in main.c. Loop thread only (fcload has one thread). */
extern struct app g;

/* The channel message `seq` goes to. Requests go round-robin over the
 * channels, and a request's --batch B messages all go to one channel:
 * seq / B mod C (with B = 1: seq mod C). Everything that maps a message to
 * its channel uses this (publishing, expected deliveries, misrouting). */
static inline uint32_t channel_of(uint64_t seq)
{
    return (uint32_t)(seq / g.opt.batch % g.opt.channels);
}

/* The position of message `seq` among its channel's messages (0, 1, ...,
 * dense): the bit of a subscriber's duplicate bitmap (B = 1: seq / C). */
static inline uint64_t channel_index(uint64_t seq)
{
    uint64_t B = g.opt.batch;
    return seq / B / g.opt.channels * B + seq % B;
}

/* Messages per channel at most: channel_index() stays below this. */
static inline uint64_t channel_msgs_max(void)
{
    uint64_t B = g.opt.batch, C = g.opt.channels;
    uint64_t requests = (g.opt.messages + B - 1) / B;
    return (requests + C - 1) / C * B;
}

/* ------------------------------------------------------------------------ */
/* Functions shared between files                                            */
/* ------------------------------------------------------------------------ */

/* Each contract is above the function's definition. All run on the loop thread. */

/* util.c: diagnostics, error counts, line buffers, chunked decoding, parsers */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void count_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double elapsed_s(uint64_t from, uint64_t to);
int lb_append(struct linebuf *lb, const char *p, size_t len);
void lb_free(struct linebuf *lb);
int take_line(struct linebuf *lb, const char **p, size_t *n, const char **line,
              size_t *line_len);
int dechunk_next(struct dechunk *dc, const char **p, size_t *n, const char **run,
                 size_t *run_len);
bool find_number(const char *s, size_t n, const char *key, uint64_t *out);
int parse_status_line(const char *line, size_t len);
bool parse_event_id(const char *s, size_t n, uint64_t id[2]);

/* proc.c: server RSS and CPU from /proc */
struct srv_sample srv_sample(void);
double ticks_to_s(uint64_t ticks);

/* options.c */
int parse_args(int argc, char **argv, struct options *o);

/* run.c: loop helpers, phases, the end of the run */
void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
int tcp_bind_source(uv_tcp_t *tcp, uint32_t n);
void subs_start_more(void);
void check_publish_done(void);
void check_complete(void);
void on_sweep(uv_timer_t *t);
void on_overall_timeout(uv_timer_t *t);
void on_signal(uv_signal_t *h, int signum);
void finish(enum outcome why);

/* sub.c: subscriber connections, response head, delivery accounting */
void on_sub_closed(uv_handle_t *h);
void sub_fail(struct sub *s, const char *why);
void sub_fail_uv(struct sub *s, const char *what, int err);
void sub_ready(struct sub *s);
void record_delivery(struct sub *s, uint64_t seq, uint64_t ts, uint64_t now);
void sub_start(uint32_t i);
void subs_sweep(uint64_t now);

/* sse.c: the SSE body of a subscriber */
void sse_feed(struct sub *s, const char *p, size_t n, uint64_t now);

/* ws.c: WebSocket subscribers (--ws) */
void ws_feed(struct sub *s, const char *p, size_t n, uint64_t now);
void ws_handshake_key(char key[25]);

/* pub.c: publishers */
void pub_connect(struct pub *p);
void pub_close(struct pub *p, const char *why);
void pubs_sweep(uint64_t now);
void pump(void);

/* report.c: latency histogram and the final report */
void hist_record(struct hist *h, uint64_t v);
void report_print(void);

#endif
