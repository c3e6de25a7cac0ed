/* The real application for fuzz targets: the server's modules (hub, sse,
 * http with api's routes, pub with the memory store, ws) wired as
 * src/server does with --open, on one loop that the fuzz target runs itself.
 * Bytes go in through a real connection (net's fc__conn_open over a
 * socketpair), handed to the HTTP layer in the reads the target chooses,
 * so request parsing, pipelining, routing, handlers, upgrades and
 * WebSocket sessions all run as they do behind a socket. */
#ifndef FC_FUZZ_APP_H
#define FC_FUZZ_APP_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api.h"
#include "net/internal.h"

static struct {
  fc_config_t cfg;
  fc_app_t *app;
  fc_loop_t *loop;
  fc_msg_t hub_msg;
} fz;

static void fz_on_accept(fc_conn_t *c) { fc_http_accept(fz.app->http, c); }
static void fz_on_tick(fc_loop_t *l, uint64_t now) {
  fc_http_tick(l, now);
  fc_sse_tick(fz.app->sse, l, now);
  fc_ws_tick(fz.app->ws, l);
  fc_hub_sweep(fz.app->hub, fc_mono_ms());
}
static void fz_on_stop(fc_loop_t *l) { fc_http_stop(l); }
static void fz_hub_notify(unsigned thread, void *ud) {
  (void)ud;
  fc_net_post(fz.app->net, thread, &fz.hub_msg);
}
static void fz_on_hub_msg(fc_loop_t *l, fc_msg_t *m, void *ud) {
  (void)m, (void)ud;
  fc_hub_drain(fz.app->hub, fc_loop_index(l));
}

/* Builds the application once per process (the first input). Aborts when it
 * cannot: a fuzz run without its target is no run. */
static void fz_init(void) {
  if (fz.app) return;
  signal(SIGPIPE, SIG_IGN);
  fc_log_set_level(FC_LOG_ERROR + 1);
  char *argv[] = {"--open",      "--storage",        "memory", "--threads",  "1",     "--listen",
                  "127.0.0.1:0", "--channel-idle",   "1",      "--max-body", "65536", "--max-channels",
                  "1000",        "--ws-max-message", "65536",  NULL};
  char err[512];
  if (fc_config_load(&fz.cfg, (int)(sizeof argv / sizeof *argv) - 1, argv, err, sizeof err) < 0) {
    fprintf(stderr, "fuzz: config: %s\n", err);
    abort();
  }
  fc_app_t *app = fz.app = fc_api_new(&fz.cfg);
  const fc_config_t *cfg = &fz.cfg;
  app->hub = fc_hub_new(&(fc_hub_opts_t){.threads = 1,
                                         .retention = cfg->retention,
                                         .max_channels = cfg->max_channels,
                                         .idle_ms = (uint64_t)cfg->channel_idle_s * 1000,
                                         .notify = fz_hub_notify});
  app->sse = fc_sse_new(&(fc_sse_opts_t){
      .hub = app->hub, .threads = 1, .keepalive_ms = 15000, .retry_ms = 3000, .queue_bytes = cfg->queue_bytes});
  size_t nroutes;
  const fc_route_t *routes = fc_api_routes(&nroutes);
  app->http = fc_http_new(&(fc_http_opts_t){.max_header_bytes = 16 * 1024,
                                            .max_url_bytes = 8 * 1024,
                                            .max_body_bytes = cfg->max_body,
                                            .header_timeout_ms = 10000,
                                            .idle_timeout_ms = 60000,
                                            .body_timeout_ms = 60000,
                                            .send_timeout_ms = 60000,
                                            .cors_origins = (const char *const *)cfg->cors_list,
                                            .routes = routes,
                                            .nroutes = nroutes,
                                            .authorize = fc_api_authorize,
                                            .h2c = true, /* fuzz_h2 */
                                            .ud = app});
  if (fc_api_auth_init(app, err, sizeof err) < 0) abort();
  app->net =
      fc_net_new(&(fc_net_opts_t){.host = "127.0.0.1",
                                  .threads = 1,
                                  .stop_grace_ms = 1000,
                                  .fd_reserve = 16,
                                  .h = {.on_accept = fz_on_accept, .on_tick = fz_on_tick, .on_stop = fz_on_stop}},
                 NULL, err, sizeof err);
  if (!app->net) abort();
  int rx = fc_net_receiver(app->net, fz_on_hub_msg, NULL);
  if (rx < 0) abort();
  fz.hub_msg.receiver = (unsigned)rx;
  app->pub = fc_pub_new(&(fc_pub_opts_t){.hub = app->hub, .threads = 1, .net = app->net});
  app->ws = app->pub ? fc_api_ws_new(app) : NULL;
  if (!app->ws) abort();
  fz.loop = fc_net_loop(app->net, 0);
}

static int fz_send_direct(void *ud, const char *to, const char *from, const json_t *data) {
  (void)ud;
  return fc_ws_send_direct(fz.app->ws, to, from, data);
}

/* The workflow runner on the application (as --workflows DIR, memory
 * storage), once per process: DIR is a new temporary directory holding
 * `files` (name, text pairs, NULL-terminated); its path goes to `dir`. */
static inline void fz_init_jobs(const char *const *files, char dir[64]) {
  static char made[64];
  if (!made[0]) {
    fz_init();
    snprintf(made, sizeof made, "/tmp/fc-fuzz-XXXXXX");
    if (!mkdtemp(made)) abort();
    for (const char *const *f = files; f && *f; f += 2) {
      char path[128];
      snprintf(path, sizeof path, "%s/%s", made, f[0]);
      FILE *o = fopen(path, "w");
      if (!o) abort();
      fprintf(o, f[1], made);
      fclose(o);
    }
    char err[256];
    fz.app->jobs = fc_jobs_new(&(fc_jobs_opts_t){.loop = fz.loop,
                                                 .threads = 1,
                                                 .workflows_dir = made,
                                                 .max_jobs = 4,
                                                 .max_queued_jobs = 16,
                                                 .hub = fz.app->hub,
                                                 .pub = fz.app->pub,
                                                 .net = fz.app->net,
                                                 .send_direct = fz_send_direct},
                               err, sizeof err);
    if (!fz.app->jobs) {
      fprintf(stderr, "fuzz: jobs: %s\n", err);
      abort();
    }
  }
  memcpy(dir, made, sizeof made);
}

/* Runs the loop without blocking, a few passes (writes, mailbox, closes). */
static inline void fz_spin(void) {
  for (int i = 0; i < 4; i++) uv_run(&fz.loop->uv, UV_RUN_NOWAIT);
}

/* Reads and drops what the server wrote, so its socket never fills; appends
 * up to `cap` bytes of it to `out` when not NULL. Returns false at EOF. */
static inline bool fz_drain(int fd, char *out, size_t cap, size_t *len) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (out && *len < cap) {
      size_t k = (size_t)n < cap - *len ? (size_t)n : cap - *len;
      memcpy(out + *len, buf, k);
      *len += k;
    }
  }
}

/* Opens a connection to the application and returns it with the client's
 * end of the socketpair in *peer. */
static inline fc_conn_t *fz_connect(int *peer) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) abort();
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  if (fc__conn_open(fz.loop, sv[0], NULL) < 0) abort();
  *peer = sv[1];
  return fz.loop->conns; /* fc__conn_open puts the new one first */
}

/* Hands [p, p+n) to the connection as one read, as net's read callback does.
 * While reading is paused (answers unsent, a request deferred) the loop runs
 * and what the server wrote is drained, as a socket would hold the bytes
 * meanwhile. Returns false once the connection is closing or gone. */
static inline bool fz_feed(fc_conn_t *c, int peer, const char *p, size_t n) {
  for (int tries = 0; tries < 1000; tries++) {
    fc_conn_t *o = fz.loop->conns;
    while (o && o != c) o = o->next; /* gone from the list: freed */
    if (!o || c->closing) return false;
    if (c->reading) {
      c->h->on_data(c, p, n);
      return true;
    }
    uv_run(&fz.loop->uv, UV_RUN_NOWAIT);
    fz_drain(peer, NULL, 0, NULL);
  }
  return false;
}

/* Hands [p, p+n) to the connection in reads whose sizes `seed` picks (0:
 * one read; else pieces of 1 to 16 bytes), running the loop and draining
 * what the server wrote after each (into `out`, as fz_drain). Returns false
 * once the connection is closing or gone. */
static inline bool fz_feed_split(fc_conn_t *c, int peer, const char *p, size_t n, unsigned seed, char *out, size_t cap,
                                 size_t *got) {
  bool open = true;
  for (size_t i = 0; i < n && open;) {
    size_t k = n - i;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      size_t piece = (seed >> 16) % 16 + 1;
      if (piece < k) k = piece;
    }
    open = fz_feed(c, peer, p + i, k);
    i += k;
    fz_spin();
    open = fz_drain(peer, out, cap, got) && open;
  }
  return open;
}

/* The client hangs up; runs the loop until the server has let every
 * connection go (bounded: a connection left behind is a leak LSan reports
 * at exit, and a hang the fuzzer's -timeout reports). */
static inline void fz_hangup(int peer) {
  shutdown(peer, SHUT_WR);
  for (int i = 0; i < 10000 && fz.loop->nconns; i++) {
    uv_run(&fz.loop->uv, UV_RUN_NOWAIT);
    if (!fz_drain(peer, NULL, 0, NULL)) {
      close(peer);
      peer = -1;
      for (int k = 0; k < 10000 && fz.loop->nconns; k++) uv_run(&fz.loop->uv, UV_RUN_NOWAIT);
      break;
    }
  }
  if (peer >= 0) close(peer);
}

#endif
