/* Test helpers: a real net (one loop, on the test's thread) listening on a
 * loopback port, and a client that runs on its own thread with blocking
 * sockets. The client records what it saw; the test asserts after the loop
 * has ended (cmocka asserts must not run inside libuv callbacks or on other
 * threads). */
#ifndef FC_TEST_LOOPBACK_H
#define FC_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"

/* A net of one loop on 127.0.0.1 and a kernel-chosen port, with handlers `h`. */
static inline fc_net_t *lb_net(fc_net_handlers_t h) {
  char err[256] = "";
  fc_net_opts_t o = {.host = "127.0.0.1", .port = 0, .threads = 1, .h = h, .stop_grace_ms = 1000, .fd_reserve = 16};
  fc_net_t *net = fc_net_new(&o, NULL, err, sizeof err);
  if (!net) fprintf(stderr, "fc_net_new: %s\n", err);
  return net;
}

/* A blocking client socket connected to the net's port (TCP_NODELAY, so each
 * send leaves at once), with `rcvbuf` bytes of receive buffer when not 0.
 * Returns the descriptor or -1. */
static inline int lb_connect(fc_net_t *net, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fc_net_port(net))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends all of [p, p+n). Returns 0 or -1. */
static inline int lb_send(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w, n -= (size_t)w;
  }
  return 0;
}

/* Reads what arrives within `ms` of silence into `out` (at most `cap`
 * bytes), stopping early at EOF or once `want` bytes are there (0: no
 * target). Returns the bytes read; `*eof` says whether the peer closed. */
static inline size_t lb_read(int fd, char *out, size_t cap, size_t want, int ms, bool *eof) {
  size_t n = 0;
  if (eof) *eof = false;
  while (n < cap && (!want || n < want)) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t got = recv(fd, out + n, cap - n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (eof) *eof = true;
      break;
    }
    n += (size_t)got;
  }
  return n;
}

static inline void lb_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

#endif
