/* Accepting connections. Each loop polls its own listening socket and calls
 * accept4() itself (libuv's uv_listen spins in its accept loop when the
 * process is out of descriptors and its one spare was taken by another
 * thread: it then never returns to the loop, so no connection is closed, no
 * signal is handled, and every turn logs a line).
 *
 * A connection is admitted under two caps, the global --max-connections and
 * --max-connections-per-ip; past either it gets a 503 JSON answer written
 * straight on the socket (no HTTP connection is made for it) and is closed.
 * Out of descriptors (EMFILE, ENFILE), the loop closes its spare descriptor
 * to accept and refuse what waits, then stops accepting for ACCEPT_PAUSE_MS
 * so that the connections it has can close; the log line says so at most
 * once a second. */
#include "net/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCEPT_BATCH 64     /* connections accepted per readiness, so the loop's other work goes on */
#define ACCEPT_PAUSE_MS 500 /* how long a loop stops accepting when out of descriptors (nginx's figure) */
#define SHED_MAX 256        /* waiting connections refused per pause at most */
#define BACKLOG 4096

size_t fc__net_derive_max(uint64_t nofile, unsigned reserve, unsigned loops) {
  uint64_t overhead = (uint64_t)reserve + (uint64_t)FC__LOOP_FDS * loops + FC__PROCESS_FDS;
  if (nofile >= overhead + 16) return (size_t)(nofile - overhead);
  return nofile >= 8 ? (size_t)(nofile / 4) : 1;
}

static const char *const refusal_message[FC__REFUSE_N] = {
    [FC__REFUSE_MAX] = "the server has as many connections as it allows (--max-connections); retry later",
    [FC__REFUSE_PER_IP] = "too many connections from your address (--max-connections-per-ip); close some first",
    [FC__REFUSE_FDS] = "the server is out of file descriptors; retry later",
};
static const char *const refusal_reason[FC__REFUSE_N] = {
    [FC__REFUSE_MAX] = "max_connections",
    [FC__REFUSE_PER_IP] = "max_connections_per_ip",
    [FC__REFUSE_FDS] = "fd_limit",
};

void fc__accept_setup(fc_net_t *net, uint64_t nofile) {
  size_t derived = fc__net_derive_max(nofile, net->opts.fd_reserve, net->opts.threads ? net->opts.threads : 1);
  net->max_conns = net->opts.max_conns ? net->opts.max_conns : derived;
  fc__peers_init(&net->peers, net->opts.max_conns_per_ip);
  fc__ratelog_init(&net->accept_log);
  fc__ratelog_init(&net->refuse_log);
  pthread_mutex_init(&net->accept_lock, NULL);
  for (int i = 0; i < FC__REFUSE_N; i++) {
    fc_buf_t body, b;
    fc_buf_init(&body);
    fc_json_error(&body, "too_many_connections", refusal_message[i]);
    fc_buf_init(&b);
    fc_buf_printf(&b,
                  "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                  "Retry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s",
                  body.len, body.data);
    fc_buf_dispose(&body);
    size_t n;
    char *p = fc_buf_take(&b, &n);
    net->answers[i] = (fc_str_t){p, n};
  }
  fc_log(FC_LOG_INFO, "connection limits", "max_connections=%zu derived=%s max_connections_per_ip=%u fd_limit=%llu",
         net->max_conns, net->opts.max_conns ? "false" : "true", net->opts.max_conns_per_ip,
         (unsigned long long)nofile);
  if (net->opts.max_conns > derived)
    fc_log(FC_LOG_WARN, "max-connections is past what the descriptor limit allows", "max_connections=%zu fits=%zu",
           net->opts.max_conns, derived);
}

void fc__accept_dispose(fc_net_t *net) {
  for (int i = 0; i < FC__REFUSE_N; i++) free((char *)net->answers[i].base);
  fc__peers_dispose(&net->peers);
  fc__ratelog_dispose(&net->accept_log);
  fc__ratelog_dispose(&net->refuse_log);
  pthread_mutex_destroy(&net->accept_lock);
}

/* Answers 503 on a socket we will not serve, then closes it. The input the
 * client already sent is read and dropped first: a close with unread input
 * resets the connection, and the reset could destroy the answer before the
 * client reads it. Loop thread (it reads into the loop's buffer). */
static void refuse(fc_loop_t *l, int fd, fc__refusal_t why) {
  fc_net_t *net = l->net;
  uint64_t n = atomic_fetch_add_explicit(&net->refused[why], 1, memory_order_relaxed) + 1;
  if (!net->opts.refuse_silently) {
    ssize_t w = send(fd, net->answers[why].base, net->answers[why].len, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w; /* a fresh socket's buffer takes it; if not, the close says enough */
  }
  shutdown(fd, SHUT_WR);
  for (int i = 0; i < 4 && recv(fd, l->readbuf, sizeof l->readbuf, MSG_DONTWAIT) > 0; i++) {}
  close(fd);
  uint64_t suppressed;
  if (fc__ratelog_allow(&net->refuse_log, fc_mono_ms(), 1000, &suppressed))
    fc_log(FC_LOG_WARN, "connection refused", "reason=%s refused_total=%llu open=%zu suppressed=%llu",
           refusal_reason[why], (unsigned long long)n, atomic_load(&net->nconns), (unsigned long long)suppressed);
}

void fc__net_release(fc_net_t *net, fc__peer_t *peer) {
  fc__peers_release(&net->peers, peer);
  atomic_fetch_sub(&net->nconns, 1);
}

/* Admits an accepted socket under the caps, or refuses it. */
static void admit(fc_loop_t *l, int fd, const struct sockaddr *sa) {
  fc_net_t *net = l->net;
  if (atomic_fetch_add(&net->nconns, 1) >= net->max_conns) {
    atomic_fetch_sub(&net->nconns, 1);
    refuse(l, fd, FC__REFUSE_MAX);
    return;
  }
  fc__peer_t *peer = NULL;
  if (net->peers.limit) {
    uint8_t key[16];
    fc__peer_key(sa, key);
    if (!(peer = fc__peers_take(&net->peers, key))) {
      atomic_fetch_sub(&net->nconns, 1);
      refuse(l, fd, FC__REFUSE_PER_IP);
      return;
    }
  }
  if (fc__conn_open(l, fd, peer) < 0) fc__net_release(net, peer);
}

static int open_spare(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

/* Out of descriptors: frees the spare to accept and refuse the connections
 * waiting, then takes it again. The loops' accepts wait meanwhile
 * (accept_lock); a thread outside net may still take the freed number, and
 * then the spare is taken again at the end of a pause. Returns how many were
 * refused. */
static unsigned shed(fc_loop_t *l) {
  if (l->spare_fd < 0) return 0;
  pthread_mutex_lock(&l->net->accept_lock);
  close(l->spare_fd);
  l->spare_fd = -1;
  unsigned n = 0;
  while (n < SHED_MAX) {
    int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      break;
    }
    refuse(l, fd, FC__REFUSE_FDS);
    n++;
  }
  l->spare_fd = open_spare();
  pthread_mutex_unlock(&l->net->accept_lock);
  return n;
}

static void on_acceptable(uv_poll_t *p, int status, int events);

static void on_accept_resume(uv_timer_t *t) {
  fc_loop_t *l = t->data;
  l->accept_paused = false;
  if (l->stopping || l->listen_fd < 0) return;
  if (l->spare_fd < 0) l->spare_fd = open_spare();
  uv_poll_start(&l->accept_io, UV_READABLE, on_acceptable);
}

/* accept4() failed with `e` on the listener itself (not on one connection):
 * out of descriptors or memory, or worse. The loop stops accepting for a
 * while instead of trying again at once, which would spin. */
static void accept_failed(fc_loop_t *l, int e) {
  fc_net_t *net = l->net;
  unsigned shed_n = (e == EMFILE || e == ENFILE) ? shed(l) : 0;
  uv_poll_stop(&l->accept_io);
  l->accept_paused = true;
  uv_timer_start(&l->accept_pause, on_accept_resume, ACCEPT_PAUSE_MS, 0);
  atomic_fetch_add_explicit(&net->accept_pauses, 1, memory_order_relaxed);
  uint64_t suppressed;
  if (fc__ratelog_allow(&net->accept_log, fc_mono_ms(), 1000, &suppressed))
    fc_log(FC_LOG_WARN, "accept failed", "error=\"%s\" loop=%u open=%zu refused=%u pause_ms=%d suppressed=%llu",
           strerror(e), l->index, atomic_load(&net->nconns), shed_n, ACCEPT_PAUSE_MS, (unsigned long long)suppressed);
}

static void on_acceptable(uv_poll_t *p, int status, int events) {
  (void)events;
  fc_loop_t *l = p->data;
  if (status < 0) {
    accept_failed(l, -status);
    return;
  }
  for (int i = 0; i < ACCEPT_BATCH && l->listen_fd >= 0 && !l->accept_paused; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    pthread_mutex_lock(&l->net->accept_lock);
    int fd = accept4(l->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int e = errno;
    pthread_mutex_unlock(&l->net->accept_lock);
    if (fd >= 0) {
      admit(l, fd, (struct sockaddr *)&ss);
      continue;
    }
    switch (e) {
      case EAGAIN: return;
      /* The connection failed, not the listener (accept(2), Linux). */
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
      case EPERM: /* a firewall rule */ continue;
      default: accept_failed(l, e); return;
    }
  }
}

int fc__accept_init(fc_loop_t *l, const struct sockaddr_in *addr, char *err, size_t errlen) {
  char ip[INET_ADDRSTRLEN];
  uv_ip4_name(addr, ip, sizeof ip);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot listen on %s:%d: socket: %s", ip, ntohs(addr->sin_port), strerror(e));
    return -e;
  }
  l->listen_fd = fd;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      bind(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 || listen(fd, BACKLOG) < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot listen on %s:%d: %s", ip, ntohs(addr->sin_port), strerror(e));
    return -e;
  }
  int rc = uv_poll_init_socket(&l->uv, &l->accept_io, fd);
  if (rc < 0) {
    snprintf(err, errlen, "cannot poll the listener on %s:%d: %s", ip, ntohs(addr->sin_port), uv_strerror(rc));
    return rc;
  }
  l->accept_io.data = l;
  uv_timer_init(&l->uv, &l->accept_pause); /* cannot fail */
  l->accept_pause.data = l;
  l->spare_fd = open_spare();
  if (l->spare_fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open a spare descriptor: %s", strerror(e));
    return -e;
  }
  rc = uv_poll_start(&l->accept_io, UV_READABLE, on_acceptable);
  if (rc < 0) {
    snprintf(err, errlen, "cannot poll the listener on %s:%d: %s", ip, ntohs(addr->sin_port), uv_strerror(rc));
    return rc;
  }
  return 0;
}

void fc__accept_stop(fc_loop_t *l) {
  if (l->listen_fd < 0) return;
  /* uv_close stops the poll at once; the socket may then be closed. */
  if (!uv_is_closing((uv_handle_t *)&l->accept_io)) uv_close((uv_handle_t *)&l->accept_io, NULL);
  uv_timer_stop(&l->accept_pause);
  close(l->listen_fd);
  l->listen_fd = -1;
  if (l->spare_fd >= 0) close(l->spare_fd);
  l->spare_fd = -1;
}
