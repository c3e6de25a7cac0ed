/* fcload options: --help text, parsing and checking of the command line into struct options. */
#include "fcload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the --help text to out. */
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
        "  --inflight K            keep-alive publisher connections (each with --pipeline requests\n"
        "                          in flight; default 8)\n"
        "  --pipeline D            requests in flight per publisher connection, sent together\n"
        "                          (HTTP/1.1 pipelining; default 1)\n"
        "  --batch B               messages per request, as one NDJSON body (flowcast's batch\n"
        "                          API; default 1)\n"
        "  --rate R                messages per second, 0 = as fast as --inflight and --pipeline\n"
        "                          allow (default 0)\n"
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
    OPT_WS, OPT_PIPELINE, OPT_BATCH, OPT_HELP
};

static const struct option long_opts[] = {
    { "url", required_argument, NULL, OPT_URL },
    { "subs", required_argument, NULL, OPT_SUBS },
    { "channels", required_argument, NULL, OPT_CHANNELS },
    { "channel-prefix", required_argument, NULL, OPT_PREFIX },
    { "messages", required_argument, NULL, OPT_MESSAGES },
    { "size", required_argument, NULL, OPT_SIZE },
    { "inflight", required_argument, NULL, OPT_INFLIGHT },
    { "pipeline", required_argument, NULL, OPT_PIPELINE },
    { "batch", required_argument, NULL, OPT_BATCH },
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
    case OPT_PIPELINE: return parse_u32("pipeline", a, 1, MAX_PIPELINE, &o->pipeline);
    case OPT_BATCH: return parse_u32("batch", a, 1, MAX_BATCH, &o->batch);
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
int parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){
        .url = "http://127.0.0.1:8000", .label = "", .pub_path = "/api/v1/channels/%s/events",
        .sub_path = "/api/v1/channels/%s/sse?replay=0", .channel_prefix = "bench.",
        .subs = 100, .channels = 1, .messages = 1000, .size = 100, .inflight = 8,
        .pipeline = 1, .batch = 1, .connect_concurrency = 500, .hold_s = 5, .timeout_s = 60,
        .drain_s = 10, .request_timeout_s = 10,
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
    uint64_t conn_buf = (uint64_t)o->pipeline * o->batch * (o->size + 200ull);
    if (optind < argc)
        ok = bad("unexpected argument '%s'", argv[optind]);
    else if (o->idle && o->subs == 0)
        ok = bad("--idle needs --subs > 0");
    else if (!o->idle && o->messages == 0)
        ok = bad("--messages must be > 0 (or use --idle)");
    else if (o->ws && o->ready_on_headers)
        ok = bad("--ready-on-headers does not apply to --ws");
    else if (strlen(o->pub_path) + strlen(o->channel_prefix) > 300)
        /* A publish request head must fit PUB_HEAD_MAX bytes (fcload.h). */
        ok = bad("--pub-path and --channel-prefix together: at most 300 characters");
    else if (!o->idle && o->batch > 1 && conn_buf > PUB_CONN_BUF_MAX)
        /* Each publisher connection formats its --pipeline requests into one buffer. */
        ok = bad("--pipeline x --batch x (--size + 200) is %" PRIu64 " MiB per publisher"
                 " connection; at most %u MiB", conn_buf >> 20, PUB_CONN_BUF_MAX >> 20);
    return ok ? 0 : 2;
}
