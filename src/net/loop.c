/* Loops, listeners and graceful stop. */
#include "net/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_connection(uv_stream_t *server, int status) {
  fc_loop_t *l = server->data;
  if (status < 0) {
    fc_log(FC_LOG_WARN, "accept failed", "error=%s", uv_strerror(status));
    return;
  }
  fc__conn_accept(l);
}

/* The grace period is over: whatever is still open is closed now. */
static void on_stop_deadline(uv_timer_t *t) { fc__conn_close_all(t->data); }

static void begin_stop(fc_loop_t *l) {
  if (l->stopping) return;
  l->stopping = true;
  if (!uv_is_closing((uv_handle_t *)&l->listener)) uv_close((uv_handle_t *)&l->listener, NULL);
  if (l->net->opts.h.on_stop) l->net->opts.h.on_stop(l);
  uv_timer_start(&l->stop_deadline, on_stop_deadline, l->net->opts.stop_grace_ms, 0);
  fc__loop_maybe_finish(l);
}

static void on_wake(uv_async_t *a) {
  fc_loop_t *l = a->data;
  if (atomic_load(&l->net->stopping)) begin_stop(l);
  if (l->net->opts.h.on_wake) l->net->opts.h.on_wake(l);
}

static void on_check(uv_check_t *h) { fc__conn_flush_all(h->data); }
static void on_prepare(uv_prepare_t *h) { fc__conn_flush_all(h->data); }

static void on_tick(uv_timer_t *t) {
  fc_loop_t *l = t->data;
  fc__conn_sweep_lingering(l, uv_now(&l->uv));
  if (l->net->opts.h.on_tick) l->net->opts.h.on_tick(l, uv_now(&l->uv));
}

void fc__loop_maybe_finish(fc_loop_t *l) {
  if (!l->stopping || l->nconns > 0) return;
  fc__conn_free_dead(l);
  /* The wake handle stays open (other threads may still signal it) but no longer
   * keeps the loop alive; fc_net_free() closes it once every thread is joined. */
  uv_unref((uv_handle_t *)&l->wake);
  uv_handle_t *hs[] = {(uv_handle_t *)&l->flush, (uv_handle_t *)&l->flush_early, (uv_handle_t *)&l->tick,
                       (uv_handle_t *)&l->stop_deadline, (uv_handle_t *)&l->bulk_timer};
  for (size_t i = 0; i < FC_ARRAY_LEN(hs); i++)
    if (!uv_is_closing(hs[i])) uv_close(hs[i], NULL);
}

/* SO_REUSEPORT would let this process share a port another server holds:
 * a plain bind first tells whether the port is free. */
static int port_free(const struct sockaddr_in *addr, char *err, size_t errlen) {
  if (addr->sin_port == 0) return 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc = bind(fd, (const struct sockaddr *)addr, sizeof *addr);
  int e = errno;
  close(fd);
  if (rc == 0) return 0;
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip);
  snprintf(err, errlen, "cannot listen on %s:%d: %s", ip, ntohs(addr->sin_port), strerror(e));
  return -1;
}

/* A listening socket with SO_REUSEPORT, so every loop accepts on the same port
 * and the kernel spreads connections over them. */
static int open_listener(fc_loop_t *l, const struct sockaddr_in *addr, char *err, size_t errlen) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip);
    snprintf(err, errlen, "cannot listen on %s:%d: %s", ip, ntohs(addr->sin_port), strerror(errno));
    close(fd);
    return -1;
  }
  uv_tcp_init(&l->uv, &l->listener);
  l->listener.data = l;
  int rc = uv_tcp_open(&l->listener, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&l->listener, 4096, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "listen: %s", uv_strerror(rc));
    return -1;
  }
  return 0;
}

static fc_loop_t *loop_new(fc_net_t *net, unsigned index, void *ud) {
  fc_loop_t *l = fc_xcalloc(1, sizeof *l);
  l->index = index;
  l->net = net;
  l->ud = ud;
  uv_loop_init(&l->uv);
  uv_async_init(&l->uv, &l->wake, on_wake);
  l->wake.data = l;
  uv_check_init(&l->uv, &l->flush);
  l->flush.data = l;
  uv_check_start(&l->flush, on_check);
  uv_prepare_init(&l->uv, &l->flush_early);
  l->flush_early.data = l;
  uv_prepare_start(&l->flush_early, on_prepare);
  uv_timer_init(&l->uv, &l->tick);
  l->tick.data = l;
  uv_timer_start(&l->tick, on_tick, 1000, 1000);
  uv_timer_init(&l->uv, &l->bulk_timer);
  l->bulk_timer.data = l;
  uv_timer_init(&l->uv, &l->stop_deadline);
  l->stop_deadline.data = l;
  uv_unref((uv_handle_t *)&l->stop_deadline);
  if (net->opts.io_uring) {
    int err = 0;
    l->wbatch = fc__wbatch_new(&err);
    if (!l->wbatch && index == 0)
      fc_log(FC_LOG_INFO, "io_uring not available: each socket is written with its own writev", "error=\"%s\"",
             strerror(err));
  }
  return l;
}

static void loop_thread(void *arg) {
  fc_loop_t *l = arg;
  char name[16]; /* the kernel's limit, NUL included: shown by top -H and perf */
  snprintf(name, sizeof name, "fc-loop-%u", l->index);
  pthread_setname_np(pthread_self(), name);
  uv_run(&l->uv, UV_RUN_DEFAULT);
}

fc_net_t *fc_net_new(const fc_net_opts_t *opts, void **loop_uds, char *err, size_t errlen) {
  struct sockaddr_in addr;
  if (uv_ip4_addr(opts->host, opts->port, &addr) != 0) {
    snprintf(err, errlen, "bad listen address %s:%d (expected an IPv4 address)", opts->host, opts->port);
    return NULL;
  }
  if (port_free(&addr, err, errlen) < 0) return NULL;
  fc_net_t *net = fc_xcalloc(1, sizeof *net);
  net->opts = *opts;
  net->nloops = opts->threads ? opts->threads : 1;
  net->loops = fc_xcalloc(net->nloops, sizeof *net->loops);
  for (unsigned i = 0; i < net->nloops; i++) {
    net->loops[i] = loop_new(net, i, loop_uds ? loop_uds[i] : NULL);
    if (open_listener(net->loops[i], &addr, err, errlen) < 0) {
      net->nloops = i + 1;
      fc_net_free(net);
      return NULL;
    }
    if (i == 0 && addr.sin_port == 0) {
      /* Port 0: the other loops share the port the kernel gave the first. */
      struct sockaddr_storage ss;
      int len = sizeof ss;
      uv_tcp_getsockname(&net->loops[0]->listener, (struct sockaddr *)&ss, &len);
      addr.sin_port = ((struct sockaddr_in *)&ss)->sin_port;
    }
  }
  net->port = ntohs(addr.sin_port);
  for (unsigned i = 1; i < net->nloops; i++) uv_thread_create(&net->loops[i]->thread, loop_thread, net->loops[i]);
  return net;
}

void fc_net_run(fc_net_t *net) {
  uv_run(&net->loops[0]->uv, UV_RUN_DEFAULT);
  for (unsigned i = 1; i < net->nloops; i++) uv_thread_join(&net->loops[i]->thread);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void fc_net_free(fc_net_t *net) {
  if (!net) return;
  for (unsigned i = 0; i < net->nloops; i++) {
    fc_loop_t *l = net->loops[i];
    uv_walk(&l->uv, close_walk, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    uv_loop_close(&l->uv);
    fc__conn_drop_refs(l);
    fc__wbatch_free(l->wbatch);
    for (uv_write_t *w = l->spare_wreqs, *next; w; w = next) {
      next = w->data;
      free(w);
    }
    free(l);
  }
  free(net->loops);
  free(net);
}

void fc_net_stop(fc_net_t *net) {
  atomic_store(&net->stopping, true);
  for (unsigned i = 0; i < net->nloops; i++) uv_async_send(&net->loops[i]->wake);
}

void fc_net_wake(fc_net_t *net, unsigned index) { uv_async_send(&net->loops[index]->wake); }

unsigned fc_net_threads(const fc_net_t *net) { return net->nloops; }

fc_loop_t *fc_net_loop(fc_net_t *net, unsigned index) { return net->loops[index]; }

void fc_net_stats(fc_net_t *net, fc_net_stats_t *out) {
  *out = (fc_net_stats_t){0};
  for (unsigned i = 0; i < net->nloops; i++) {
    fc_loop_t *l = net->loops[i];
    out->writes += atomic_load_explicit(&l->writes, memory_order_relaxed);
    out->batched += atomic_load_explicit(&l->batched, memory_order_relaxed);
    out->bulk_passes += atomic_load_explicit(&l->bulk_passes, memory_order_relaxed);
    out->bulk_held += atomic_load_explicit(&l->bulk_held, memory_order_relaxed);
  }
}

int fc_net_port(const fc_net_t *net) { return net->port; }
