/* Loops, listeners and graceful stop. */
#include "net/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* The grace period is over: whatever is still open is closed now. */
static void on_stop_deadline(uv_timer_t *t) { fc__conn_close_all(t->data); }

static void begin_stop(fc_loop_t *l) {
  if (l->stopping) return;
  l->stopping = true;
  fc__accept_stop(l);
  if (l->net->opts.h.on_stop) l->net->opts.h.on_stop(l);
  uv_timer_start(&l->stop_deadline, on_stop_deadline, l->net->opts.stop_grace_ms, 0);
  fc__loop_maybe_finish(l);
}

static void on_wake(uv_async_t *a) {
  fc_loop_t *l = a->data;
  if (atomic_load(&l->net->stopping)) begin_stop(l);
  fc__mailbox_run(l);
}

static void on_check(uv_check_t *h) { fc__conn_flush_all(h->data); }
static void on_prepare(uv_prepare_t *h) { fc__conn_flush_all(h->data); }

static void on_tick(uv_timer_t *t) {
  fc_loop_t *l = t->data;
  fc__conn_sweep(l, uv_now(&l->uv));
  if (l->net->opts.h.on_tick) l->net->opts.h.on_tick(l, uv_now(&l->uv));
}

void fc__loop_maybe_finish(fc_loop_t *l) {
  if (!l->stopping || l->nconns > 0) return;
  fc__conn_free_dead(l);
  /* The wake handle stays open (other threads may still signal it) but no longer
   * keeps the loop alive; fc_net_free() closes it once every thread is joined. */
  uv_unref((uv_handle_t *)&l->wake);
  uv_handle_t *hs[] = {(uv_handle_t *)&l->flush,      (uv_handle_t *)&l->flush_early,
                       (uv_handle_t *)&l->tick,       (uv_handle_t *)&l->stop_deadline,
                       (uv_handle_t *)&l->bulk_timer, (uv_handle_t *)&l->accept_pause};
  for (size_t i = 0; i < FC_ARRAY_LEN(hs); i++)
    if (!uv_is_closing(hs[i])) uv_close(hs[i], NULL);
}

/* SO_REUSEPORT would let this process share a port another server holds:
 * a plain bind first tells whether the port is free. */
static int port_free(const struct sockaddr_in *addr, char *err, size_t errlen) {
  if (addr->sin_port == 0) return 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open a socket: %s", strerror(e));
    return -e;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc = bind(fd, (const struct sockaddr *)addr, sizeof *addr);
  int e = errno;
  close(fd);
  if (rc == 0) return 0;
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip);
  snprintf(err, errlen, "cannot listen on %s:%d: %s", ip, ntohs(addr->sin_port), strerror(e));
  return -e;
}

/* Sets up a loop's handles once uv_loop_init succeeded. Returns 0, or
 * libuv's negative errno with a message in `err`; fc_net_free() closes what
 * was set up. */
static int loop_init(fc_loop_t *l, char *err, size_t errlen) {
  l->wake.data = l->flush.data = l->flush_early.data = l->tick.data = l->bulk_timer.data = l->stop_deadline.data = l;
  int rc = uv_async_init(&l->uv, &l->wake, on_wake);
  if (rc == 0) rc = uv_check_init(&l->uv, &l->flush);
  if (rc == 0) rc = uv_check_start(&l->flush, on_check);
  if (rc == 0) rc = uv_prepare_init(&l->uv, &l->flush_early);
  if (rc == 0) rc = uv_prepare_start(&l->flush_early, on_prepare);
  if (rc == 0) rc = uv_timer_init(&l->uv, &l->tick);
  if (rc == 0) rc = uv_timer_start(&l->tick, on_tick, 1000, 1000);
  if (rc == 0) rc = uv_timer_init(&l->uv, &l->bulk_timer);
  if (rc == 0) rc = uv_timer_init(&l->uv, &l->stop_deadline);
  if (rc < 0) {
    snprintf(err, errlen, "cannot set up event loop %u: %s", l->index, uv_strerror(rc));
    return rc;
  }
  uv_unref((uv_handle_t *)&l->stop_deadline);
  if (l->net->opts.io_uring) {
    int e = 0;
    l->wbatch = fc__wbatch_new(&e);
    if (!l->wbatch && l->index == 0)
      fc_log(FC_LOG_INFO, "io_uring not available: each socket is written with its own writev", "error=\"%s\"",
             strerror(e));
  }
  return 0;
}

/* Loops 1..n-1: wait until every thread has started (fc_net_new), then run. */
static void loop_thread(void *arg) {
  fc_loop_t *l = arg;
  char name[16]; /* the kernel's limit, NUL included: shown by top -H and perf */
  snprintf(name, sizeof name, "fc-loop-%u", l->index);
  pthread_setname_np(pthread_self(), name);
  uv_sem_wait(&l->net->go);
  if (atomic_load(&l->net->abandoned)) return;
  uv_run(&l->uv, UV_RUN_DEFAULT);
}

/* Raises the soft descriptor limit to the hard one (connections are
 * descriptors); returns the soft limit in effect. */
static uint64_t raise_nofile(void) {
  const rlim_t cap = (rlim_t)1 << 20; /* the kernel's usual nr_open, for an unlimited hard limit */
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 1024;
  if (r.rlim_cur != RLIM_INFINITY) {
    rlim_t want = r.rlim_max == RLIM_INFINITY ? cap : r.rlim_max;
    if (want > r.rlim_cur && setrlimit(RLIMIT_NOFILE, &(struct rlimit){want, r.rlim_max}) == 0) r.rlim_cur = want;
  }
  return r.rlim_cur == RLIM_INFINITY ? (uint64_t)cap : (uint64_t)r.rlim_cur;
}

/* Descriptors open in the process now. */
static unsigned count_open_fds(uint64_t nofile) {
  unsigned n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    for (struct dirent *e; (e = readdir(d));)
      if (e->d_name[0] != '.') n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* less the directory's own */
  }
  /* At the limit, or no /proc: ask each number. */
  for (int fd = 0; fd < (int)(nofile < 65536 ? nofile : 65536); fd++) n += fcntl(fd, F_GETFD) != -1;
  return n;
}

/* libuv aborts the process when the first loop cannot make its signal pipe:
 * make sure the loops' descriptors fit before any is made. */
static int check_fd_room(uint64_t nofile, unsigned loops, char *err, size_t errlen) {
  uint64_t open_now = count_open_fds(nofile), need = (uint64_t)FC__LOOP_FDS * loops + 2 + 1;
  if (open_now + need <= nofile) return 0;
  snprintf(err, errlen,
           "the open-files limit (%llu) is too low: %llu descriptors are open and %u event loops need about %llu more"
           " (raise ulimit -n, or lower --threads)",
           (unsigned long long)nofile, (unsigned long long)open_now, loops, (unsigned long long)need);
  return -EMFILE;
}

/* Creates loop `i` with its listener; on port 0 it fills in the port the
 * kernel gave loop 0, which the others then share. Returns 0, or a negative
 * errno with a message in `err`. */
static int add_loop(fc_net_t *net, unsigned i, void *ud, struct sockaddr_in *addr, char *err, size_t errlen) {
  fc_loop_t *l = fc_xcalloc(1, sizeof *l);
  l->index = i;
  l->net = net;
  l->ud = ud;
  l->listen_fd = l->spare_fd = -1;
  pthread_mutex_init(&l->mbox_lock, NULL);
  int rc = uv_loop_init(&l->uv);
  if (rc < 0) {
    pthread_mutex_destroy(&l->mbox_lock);
    free(l);
    snprintf(err, errlen, "cannot create event loop %u: %s", i, uv_strerror(rc));
    return rc;
  }
  net->loops[net->nloops++] = l;
  if ((rc = loop_init(l, err, errlen)) < 0 || (rc = fc__accept_init(l, addr, err, errlen)) < 0) return rc;
  if (i == 0 && addr->sin_port == 0) {
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    if (getsockname(l->listen_fd, (struct sockaddr *)&bound, &len) < 0) {
      int e = errno;
      snprintf(err, errlen, "getsockname: %s", strerror(e));
      return -e;
    }
    addr->sin_port = bound.sin_port;
  }
  return 0;
}

/* Lets the started loop threads go (to run, or to exit when abandoned) and,
 * when abandoned, waits for them to end. */
static void release_threads(fc_net_t *net) {
  for (unsigned i = 0; i < net->nthreads; i++) uv_sem_post(&net->go);
  if (atomic_load(&net->abandoned))
    for (unsigned i = 1; i <= net->nthreads; i++) uv_thread_join(&net->loops[i]->thread);
  net->nthreads = 0;
}

/* Starts loops 1..n-1, which wait on `go` until fc_net_run: when one cannot
 * start, the others exit without having run. Returns 0, or libuv's negative
 * errno with a message in `err`. */
static int start_threads(fc_net_t *net, char *err, size_t errlen) {
  unsigned started = 1;
  int rc = 0;
  for (; started < net->nloops; started++) {
    rc = uv_thread_create(&net->loops[started]->thread, loop_thread, net->loops[started]);
    if (rc < 0) break;
  }
  if (rc < 0) {
    snprintf(err, errlen, "cannot start the thread of event loop %u (of %u): %s", started, net->nloops,
             uv_strerror(rc));
    atomic_store(&net->abandoned, true);
  }
  net->nthreads = started - 1;
  if (rc == 0) return 0;
  release_threads(net);
  return rc;
}

fc_net_t *fc_net_new(const fc_net_opts_t *opts, void **loop_uds, char *err, size_t errlen) {
  struct sockaddr_in addr;
  if (uv_ip4_addr(opts->host, opts->port, &addr) != 0) {
    snprintf(err, errlen, "bad listen address %s:%d (expected an IPv4 address)", opts->host, opts->port);
    return NULL;
  }
  if (port_free(&addr, err, errlen) < 0) return NULL;
  uint64_t nofile = raise_nofile();
  unsigned n = opts->threads ? opts->threads : 1;
  if (check_fd_room(nofile, n, err, errlen) < 0) return NULL;
  fc_net_t *net = fc_xcalloc(1, sizeof *net);
  net->opts = *opts;
  int rc = uv_sem_init(&net->go, 0);
  if (rc < 0) {
    snprintf(err, errlen, "cannot start: semaphore: %s", uv_strerror(rc));
    free(net);
    return NULL;
  }
  net->loops = fc_xcalloc(n, sizeof *net->loops);
  fc__accept_setup(net, nofile);
  for (unsigned i = 0; i < n; i++)
    if (add_loop(net, i, loop_uds ? loop_uds[i] : NULL, &addr, err, errlen) < 0) goto fail;
  net->port = ntohs(addr.sin_port);
  if (start_threads(net, err, errlen) < 0) goto fail;
  return net;
fail:
  fc_net_free(net);
  return NULL;
}

void fc_net_run(fc_net_t *net) {
  release_threads(net);
  uv_run(&net->loops[0]->uv, UV_RUN_DEFAULT);
  for (unsigned i = 1; i < net->nloops; i++) uv_thread_join(&net->loops[i]->thread);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void fc_net_free(fc_net_t *net) {
  if (!net) return;
  if (net->nthreads) { /* never run: the loop threads exit without running */
    atomic_store(&net->abandoned, true);
    release_threads(net);
  }
  for (unsigned i = 0; i < net->nloops; i++) {
    fc_loop_t *l = net->loops[i];
    uv_walk(&l->uv, close_walk, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    uv_loop_close(&l->uv);
    if (l->listen_fd >= 0) close(l->listen_fd);
    if (l->spare_fd >= 0) close(l->spare_fd);
    fc__conn_drop_refs(l);
    fc__wbatch_free(l->wbatch);
    for (uv_write_t *w = l->spare_wreqs, *next; w; w = next) {
      next = w->data;
      free(w);
    }
    pthread_mutex_destroy(&l->mbox_lock);
    free(l);
  }
  fc__accept_dispose(net);
  uv_sem_destroy(&net->go);
  free(net->loops);
  free(net);
}

void fc_net_stop(fc_net_t *net) {
  atomic_store(&net->stopping, true);
  for (unsigned i = 0; i < net->nloops; i++) uv_async_send(&net->loops[i]->wake);
}

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
  out->connections = atomic_load(&net->nconns);
  out->max_connections = net->max_conns;
  out->max_connections_per_ip = net->opts.max_conns_per_ip;
  out->refused_max = atomic_load_explicit(&net->refused[FC__REFUSE_MAX], memory_order_relaxed);
  out->refused_per_ip = atomic_load_explicit(&net->refused[FC__REFUSE_PER_IP], memory_order_relaxed);
  out->refused_fds = atomic_load_explicit(&net->refused[FC__REFUSE_FDS], memory_order_relaxed);
  out->accept_pauses = atomic_load_explicit(&net->accept_pauses, memory_order_relaxed);
}

int fc_net_port(const fc_net_t *net) { return net->port; }

unsigned fc_loop_index(const fc_loop_t *l) { return l->index; }

uv_loop_t *fc_loop_uv(fc_loop_t *l) { return &l->uv; }

void *fc_loop_ud(const fc_loop_t *l) { return l->ud; }

bool fc_loop_stopping(const fc_loop_t *l) { return l->stopping; }

void fc_loop_each_conn(fc_loop_t *l, const fc_conn_handler_t *h, void (*cb)(fc_conn_t *c, void *arg), void *arg) {
  for (fc_conn_t *c = l->conns, *next; c; c = next) {
    next = c->next; /* a close unlinks c only in its close callback, but be safe */
    if (c->closing || (h && c->h != h)) continue;
    cb(c, arg);
  }
}
