/* fcfloor: the least an SSE server can do, as a reference point for benchmarks.
 *
 * It speaks just enough HTTP/1.1 for fcload: `GET /sub/NAME` opens an event
 * stream, `POST /pub/NAME` queues the body as one SSE event for each
 * subscriber of NAME and answers 201; each thread sends the event to its own
 * subscribers, one send per subscriber, made together in io_uring
 * submissions of up to 256 (a system call costs about as much as a send on
 * this VM; one submission enters the kernel once for all of them).
 * Nothing is stored, nothing is coalesced, there are no timers or keepalives.
 * What it costs per delivery is what the kernel costs on this machine, plus
 * a few hundred instructions: a floor for latency at low rates and for
 * scenarios where every write carries one event.
 *
 * Threads: --threads of them (default 2), each with its own SO_REUSEPORT
 * listener, epoll set, and its own subscribers of every channel. A publish
 * takes the channel's next id and queues the event to every thread's inbox
 * under the channel's lock, so every thread sees a channel's events in id
 * order; each thread then writes them to its own subscribers. A write that
 * would block waits for the socket (poll, 10 s at most, then the subscriber
 * is dropped), so nothing is lost and that thread is slowed instead.
 *
 * Not a server for anything but benchmarks: no authentication, no history,
 * no limits beyond 1 MiB of unparsed request. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_THREADS 16
#define NAME_MAX_LEN 64
#define CHAN_BUCKETS 4096
#define WRITE_WAIT_MS 10000
#define RING 256 /* sends per io_uring submission */

struct conn;

/* One thread's subscribers of one channel; only that thread touches it. */
struct sublist {
    struct conn **v;
    size_t n, cap;
};

struct channel {
    struct channel *next;         /* bucket chain */
    pthread_mutex_t lock;         /* seq, and the order events enter the inboxes */
    uint64_t seq;                 /* last event id */
    struct sublist subs[MAX_THREADS];
    char name[NAME_MAX_LEN + 1];
};

/* An event as written, shared by the threads' inboxes. */
struct event {
    atomic_int refs;
    struct channel *chan;
    size_t len;
    char data[];
};

struct inbox {
    pthread_mutex_t lock;
    struct event **v;
    size_t n, cap;
    int efd;                      /* eventfd, written when v goes non-empty */
};

struct conn {
    struct conn *prev, *next;     /* its thread's connections */
    int fd;
    struct channel *chan;         /* set once it subscribed */
    size_t sub_index;             /* its place in chan->subs[its thread] */
    bool failed;                  /* a write failed: drop it once the event is sent */
    char *buf;                    /* unparsed request bytes (HTTP only) */
    size_t len, cap;
};

static struct {
    struct sockaddr_in addr;
    int threads;
    size_t max_request;
    struct channel *buckets[CHAN_BUCKETS];
    pthread_mutex_t chan_lock;    /* buckets */
    struct inbox inbox[MAX_THREADS];
    struct conn *conns[MAX_THREADS]; /* each thread's, so that all stay reachable */
    struct io_uring ring[MAX_THREADS];
} g = {.threads = 2, .max_request = 1 << 20, .chan_lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int self; /* this thread's index */

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        die("realloc");
    return p;
}

/* Finds or creates the channel called name[0..len). */
static struct channel *channel_get(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    struct channel **b = &g.buckets[h % CHAN_BUCKETS], *c;
    pthread_mutex_lock(&g.chan_lock);
    for (c = *b; c; c = c->next)
        if (strlen(c->name) == len && memcmp(c->name, name, len) == 0)
            break;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        pthread_mutex_init(&c->lock, NULL);
        memcpy(c->name, name, len);
        c->next = *b;
        *b = c;
    }
    pthread_mutex_unlock(&g.chan_lock);
    return c;
}

/* Writes all of p[0..n) to a non-blocking socket, waiting while it is full.
 * Returns 0, or -1 if the peer is gone or stayed full for WRITE_WAIT_MS. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, WRITE_WAIT_MS) <= 0)
            return -1;
    }
    return 0;
}

static void unsubscribe(struct conn *c)
{
    struct sublist *l = &c->chan->subs[self];
    struct conn *last = l->v[--l->n];
    l->v[c->sub_index] = last;
    last->sub_index = c->sub_index;
    c->chan = NULL;
}

static void conn_close(struct conn *c)
{
    if (c->chan)
        unsubscribe(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        g.conns[self] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->fd); /* also takes it out of the epoll set */
    free(c->buf);
    free(c);
}

static int subscribe(struct conn *c, const char *name, size_t len)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\n\r\n"
                               ":\n\n"; /* a first comment: fcload counts a stream ready at its first byte */
    if (write_all(c->fd, head, sizeof head - 1) < 0)
        return -1;
    struct channel *ch = channel_get(name, len);
    struct sublist *l = &ch->subs[self];
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    c->chan = ch;
    c->sub_index = l->n;
    l->v[l->n++] = c;
    free(c->buf); /* a subscriber sends nothing more that matters */
    c->buf = NULL;
    c->len = c->cap = 0;
    return 0;
}

static void event_unref(struct event *e)
{
    if (atomic_fetch_sub(&e->refs, 1) == 1)
        free(e);
}

/* Queues the event to every thread's inbox, then answers the publish: once
 * answered, an event has its place, so a later publish comes after it. */
static int publish(struct conn *c, const char *name, size_t len, const char *body, size_t blen)
{
    static const char ok[] = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    struct channel *ch = channel_get(name, len);
    struct event *e = malloc(sizeof *e + blen + 64);
    if (!e)
        die("malloc");
    atomic_init(&e->refs, g.threads);
    e->chan = ch;
    pthread_mutex_lock(&ch->lock);
    int n = snprintf(e->data, 64, "id: %llu\ndata: ", (unsigned long long)++ch->seq);
    memcpy(e->data + n, body, blen);
    memcpy(e->data + n + blen, "\n\n", 2);
    e->len = (size_t)n + blen + 2;
    for (int t = 0; t < g.threads; t++) {
        struct inbox *in = &g.inbox[t];
        pthread_mutex_lock(&in->lock);
        if (in->n == in->cap) {
            in->cap = in->cap ? in->cap * 2 : 64;
            in->v = xrealloc(in->v, in->cap * sizeof *in->v);
        }
        in->v[in->n++] = e;
        int wake = in->n == 1;
        pthread_mutex_unlock(&in->lock);
        if (wake && eventfd_write(in->efd, 1) < 0)
            die("eventfd_write");
    }
    pthread_mutex_unlock(&ch->lock);
    return write_all(c->fd, ok, sizeof ok - 1);
}

/* Sends ev[0..len) to subscribers l->v[from..to) in one io_uring submission
 * (each send still one event to one socket); what a full socket did not take
 * is finished with write_all. A subscriber that fails is marked to drop. */
static void send_batch(struct sublist *l, size_t from, size_t to, const char *ev, size_t len)
{
    struct io_uring *ring = &g.ring[self];
    for (size_t k = from; k < to; k++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_send(sqe, l->v[k]->fd, ev, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        sqe->user_data = k;
    }
    int sub = io_uring_submit(ring);
    if (sub != (int)(to - from))
        die("io_uring_submit");
    int res[RING];
    for (size_t k = from; k < to; k++) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(ring, &cqe) < 0)
            die("io_uring_wait_cqe");
        res[cqe->user_data - from] = cqe->res;
        io_uring_cqe_seen(ring, cqe);
    }
    for (size_t k = from; k < to; k++) {
        int r = res[k - from];
        size_t done = r > 0 ? (size_t)r : 0;
        if ((r < 0 && r != -EAGAIN) || write_all(l->v[k]->fd, ev + done, len - done) < 0)
            l->v[k]->failed = true;
    }
}

/* Writes the queued events to this thread's subscribers: one send per event
 * and subscriber, made in io_uring submissions of up to RING sends. */
static void drain_inbox(void)
{
    struct inbox *in = &g.inbox[self];
    eventfd_t ignored;
    (void)eventfd_read(in->efd, &ignored);
    pthread_mutex_lock(&in->lock);
    struct event **v = in->v;
    size_t n = in->n;
    in->v = NULL;
    in->n = in->cap = 0;
    pthread_mutex_unlock(&in->lock);
    for (size_t i = 0; i < n; i++) {
        struct event *e = v[i];
        struct sublist *l = &e->chan->subs[self];
        for (size_t from = 0; from < l->n; from += RING)
            send_batch(l, from, from + RING < l->n ? from + RING : l->n, e->data, e->len);
        for (size_t k = l->n; k-- > 0;) { /* backwards: a drop moves the last one here */
            struct conn *s = l->v[k];
            if (s->failed) {
                unsubscribe(s); /* its read then sees the close and frees it */
                shutdown(s->fd, SHUT_RDWR);
            }
        }
        event_unref(e);
    }
    free(v);
}

/* The value of header `name` in head[0..n), or NULL. */
static const char *header(const char *head, size_t n, const char *name)
{
    size_t nl = strlen(name);
    const char *end = head + n, *p = memchr(head, '\n', n);
    while (p && p + 1 + nl + 1 < end) {
        p++;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < end && *v == ' ')
                v++;
            return v;
        }
        p = memchr(p, '\n', (size_t)(end - p));
    }
    return NULL;
}

/* Handles every complete request in c->buf. Returns -1 to close. */
static int serve(struct conn *c)
{
    static const char bad[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    size_t off = 0;
    while (off < c->len) {
        const char *req = c->buf + off, *hend = memmem(req, c->len - off, "\r\n\r\n", 4);
        if (!hend)
            break;
        size_t hlen = (size_t)(hend - req) + 4, blen = 0;
        const char *cl = header(req, hlen, "content-length");
        if (cl)
            blen = strtoul(cl, NULL, 10);
        if (blen > g.max_request)
            return -1;
        if (c->len - off < hlen + blen)
            break;
        const char *sp = memchr(req, ' ', hlen), *path = sp ? sp + 1 : req;
        const char *pend = memchr(path, ' ', (size_t)(hend - path));
        size_t plen = pend ? (size_t)(pend - path) : 0, qlen = plen;
        const char *q = memchr(path, '?', plen);
        if (q)
            qlen = (size_t)(q - path);
        off += hlen + blen;
        int named = qlen > 5 && qlen - 5 <= NAME_MAX_LEN, r;
        if (named && memcmp(path, "/sub/", 5) == 0 && req[0] == 'G')
            return subscribe(c, path + 5, qlen - 5);
        if (named && memcmp(path, "/pub/", 5) == 0 && req[0] == 'P')
            r = publish(c, path + 5, qlen - 5, req + hlen, blen);
        else
            r = write_all(c->fd, bad, sizeof bad - 1);
        if (r < 0)
            return -1;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return 0;
}

/* Reads what the socket has; returns -1 to close. */
static int on_readable(struct conn *c)
{
    if (c->chan) { /* a subscriber: only its close matters */
        char sink[512];
        ssize_t r = read(c->fd, sink, sizeof sink);
        return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) ? -1 : 0;
    }
    if (c->cap - c->len < 4096) {
        size_t cap = c->cap ? c->cap * 2 : 8192;
        if (cap > g.max_request)
            return -1;
        c->buf = xrealloc(c->buf, cap);
        c->cap = cap;
    }
    ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        return -1;
    if (r > 0)
        c->len += (size_t)r;
    return serve(c);
}

static void accept_all(int lfd, int ep)
{
    int fd, one = 1;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->fd = fd;
        c->next = g.conns[self];
        if (c->next)
            c->next->prev = c;
        g.conns[self] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }
}

static void *loop(void *arg)
{
    self = (int)(intptr_t)arg;
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&g.addr, sizeof g.addr) < 0 || listen(lfd, 4096) < 0)
        die("listen");
    int ep = epoll_create1(0), efd = g.inbox[self].efd;
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &lfd};
    struct epoll_event iev = {.events = EPOLLIN, .data.ptr = &g.inbox[self]}, evs[256];
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, efd, &iev) < 0)
        die("epoll");
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &lfd)
                accept_all(lfd, ep);
            else if (p == &g.inbox[self])
                drain_inbox();
            else if (on_readable(p) < 0)
                conn_close(p);
        }
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fcfloor [--listen 127.0.0.1:PORT] [--threads N]\n"
               "The least an SSE server can do, as a benchmark reference (see bench/README.md).\n"
               "  GET  /sub/NAME   an event stream of channel NAME\n"
               "  POST /pub/NAME   201, then the body as one event to each subscriber, one write each\n"
               "Drive it with fcload --pub-path '/pub/%%s' --sub-path '/sub/%%s'. No storage, no\n"
               "history, no coalescing, no keepalives. Stops on SIGINT or SIGTERM.\n"
               "  --listen A:P     address (default 127.0.0.1:8100)\n"
               "  --threads N      event loops (default 2, at most %d)\n",
            MAX_THREADS);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *listen_at = "127.0.0.1:8100";
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (o == 'l')
            listen_at = optarg;
        else if (o == 't')
            g.threads = atoi(optarg);
        else {
            usage(o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
    }
    char host[64];
    const char *colon = strrchr(listen_at, ':');
    g.addr.sin_family = AF_INET;
    if (!colon || (size_t)(colon - listen_at) >= sizeof host || g.threads < 1 ||
        g.threads > MAX_THREADS) {
        usage(stderr);
        return 2;
    }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = '\0';
    long port = strtol(colon + 1, NULL, 10);
    if (inet_pton(AF_INET, host, &g.addr.sin_addr) != 1 || port < 1 || port > 65535) {
        fprintf(stderr, "fcfloor: --listen wants IPv4:PORT, got '%s'\n", listen_at);
        return 2;
    }
    g.addr.sin_port = htons((uint16_t)port);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* the loops inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < g.threads; i++) {
        pthread_mutex_init(&g.inbox[i].lock, NULL);
        if (io_uring_queue_init(RING, &g.ring[i], 0) < 0)
            die("io_uring_queue_init");
        g.inbox[i].efd = eventfd(0, EFD_NONBLOCK);
        if (g.inbox[i].efd < 0)
            die("eventfd");
    }
    for (int i = 0; i < g.threads; i++)
        if (pthread_create(&t[i], NULL, loop, (void *)(intptr_t)i) != 0)
            die("pthread_create");
    printf("fcfloor: listening on %s with %d thread(s)\n", listen_at, g.threads);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    return 0; /* exit ends the loops; the kernel closes the sockets */
}
