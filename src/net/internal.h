#ifndef FC_NET_INTERNAL_H
#define FC_NET_INTERNAL_H

#include <pthread.h>
#include <sys/socket.h>

#include "net/net.h"

typedef struct fc__wbatch fc__wbatch_t;
typedef struct fc__peer fc__peer_t;

struct fc_loop {
  uv_loop_t uv;
  unsigned index; /* 0..threads-1 */
  fc_net_t *net;
  void *ud;                /* the application's per-loop state */
  int listen_fd;           /* this loop's listening socket; -1 when closed */
  uv_poll_t accept_io;     /* its readiness: the loop accepts itself (accept.c) */
  uv_timer_t accept_pause; /* restarts accept_io after a pause (out of descriptors) */
  bool accept_paused;
  int spare_fd; /* closed to accept and refuse one when out of descriptors; -1: none */
  uv_async_t wake;
  pthread_mutex_t mbox_lock;       /* guards mbox_head and mbox_tail */
  fc_msg_t *mbox_head, *mbox_tail; /* posted messages, oldest first (mailbox.c) */
  uv_check_t flush;                /* writes what poll-phase callbacks queued, once per iteration */
  uv_prepare_t flush_early;        /* writes what timer callbacks queued, before the poll blocks */
  uv_timer_t tick;
  uv_timer_t stop_deadline;
  uv_thread_t thread;
  fc_conn_t *dirty;        /* connections with frames to write */
  fc_conn_t *bulk_dirty;   /* subscriber streams with frames to write: see fc_conn_t.bulk */
  uint64_t bulk_due;       /* uv_hrtime() before which bulk writes wait */
  uint32_t bulk_recent_ms; /* a stream written this recently is written again */
  bool bulk_holding;       /* the last stream pass was followed by a hold */
  uv_timer_t bulk_timer;   /* wakes the loop when they are due */
  atomic_uint_fast64_t writes, batched, bulk_passes, bulk_held; /* see fc_net_stats_t */
  /* References to written frames, dropped together at the end of a pass: a
   * fan-out writes the same frames to every subscriber of the loop, and one
   * atomic operation per frame and pass beats one per subscriber (the other
   * loops' threads touch the same counts). */
  struct {
    fc_frame_t *frame;
    unsigned n;
  } unrefs[128];
  fc__wbatch_t *wbatch;    /* sends of the current pass (uring.c); NULL: one writev each */
  uv_write_t *spare_wreqs; /* write requests to reuse, linked through ->data */
  size_t nspare;
  fc_conn_t *conns; /* every open connection */
  size_t nconns;
  bool stopping;
  char readbuf[64 * 1024]; /* shared by every connection: data is parsed in read_cb */
};

#define FC__QINLINE 4

struct fc_conn {
  uv_tcp_t tcp;
  fc_loop_t *loop;
  const fc_conn_handler_t *h;
  void *ud;
  fc_conn_t *prev, *next; /* in loop->conns */
  fc_conn_t *dirty_next;
  fc_frame_t **q; /* ring of frames to write, oldest first: qinline until more are queued */
  uint32_t qhead, qlen, qcap;
  uint32_t qoff;          /* bytes of the oldest frame already written */
  uint32_t inflight;      /* bytes at the head of the queue in a uv_write */
  uint32_t last_write_ms; /* when a bulk pass last wrote it (uv_hrtime in ms; 0: never) */
  size_t queued;          /* bytes queued and not yet written, in-flight included */
  uint64_t written;       /* bytes written since it opened */
  size_t bound;           /* fc_conn_send fails past this many queued bytes; 0: none */
  uint64_t progress_ms;   /* loop time of the last write progress, or of the queue's last start from empty */
  uv_write_t *wreq;       /* the write in flight, if any: idle connections hold none */
  bool dirty;             /* on loop->dirty or loop->bulk_dirty (as `bulk` was when marked) */
  bool bulk;              /* a subscriber stream: its writes may be coalesced under load */
  bool closing, close_when_flushed, reading;
  bool dead;                      /* closed, left on a dirty list for the flush to free */
  bool lingering;                 /* answered and shut down: input is read and dropped until EOF */
  uint64_t linger_since;          /* loop time the lingering began */
  fc__peer_t *peer;               /* its address's count (--max-connections-per-ip); NULL: no cap */
  const fc_conn_filter_t *filter; /* TLS; NULL: the plain path */
  void *filter_state;
  /* An idle subscriber's few frames (an answer head, a retry line, its position) need no
   * ring of their own on the heap. */
  fc_frame_t *qinline[FC__QINLINE];
};

/* Why a connection is refused; indexes fc_net_t.refused and .answers. */
typedef enum { FC__REFUSE_MAX, FC__REFUSE_PER_IP, FC__REFUSE_FDS, FC__REFUSE_N } fc__refusal_t;

/* Open connections per client address (peers.c), shared by every loop. */
typedef struct {
  pthread_mutex_t lock;
  fc__peer_t **buckets; /* FC__PEER_BUCKETS chains */
  size_t npeers;        /* addresses with at least one connection */
  unsigned limit;       /* connections per address at most; 0: no cap (nothing tracked) */
} fc__peers_t;

/* A log line that may repeat on a hot path: at most one a second, and the
 * next one says how many were left out. */
typedef struct {
  pthread_mutex_t lock;
  uint64_t last_ms;    /* fc_mono_ms() of the last line written; 0: never */
  uint64_t suppressed; /* lines left out since */
} fc__ratelog_t;

struct fc_net {
  fc_net_opts_t opts;
  fc_loop_t **loops;
  unsigned nloops;
  int port;
  atomic_bool stopping;
  atomic_bool abandoned; /* start-up failed: started threads exit without running */
  uv_sem_t go;           /* posted once per started thread by fc_net_run (or to abandon them) */
  unsigned nthreads;     /* loop threads started and not yet let go */
  size_t max_conns;      /* the cap in effect */
  atomic_size_t nconns;  /* open connections, every loop */
  fc__peers_t peers;
  atomic_uint_fast64_t refused[FC__REFUSE_N];
  atomic_uint_fast64_t accept_pauses;
  fc__ratelog_t accept_log, refuse_log;
  /* Held around every accept4() and around a loop's use of its spare
   * descriptor, so that the number a spare frees goes to that loop's accept
   * and not to another loop's (which would leave the spare lost). */
  pthread_mutex_t accept_lock;
  fc_str_t answers[FC__REFUSE_N]; /* each refusal's whole 503 response (malloc'd) */
  struct {
    fc_msg_cb cb;
    void *ud;
  } receivers[FC_NET_MAX_RECEIVERS];
  unsigned nreceivers;
};

/* Runs the messages posted to `l` so far, oldest first, and returns how many
 * (mailbox.c). The loop's thread, or any thread once the loops have ended. */
size_t fc__mailbox_run(fc_loop_t *l);

/* Sets up accepting on `l`: its listening socket (bound to `addr`, with
 * SO_REUSEPORT), the readiness handle, the pause timer and the spare
 * descriptor. Returns 0, or a negative errno (the failing call's: -EADDRINUSE,
 * -EMFILE, ...) with a message in `err`. Start-up thread. */
int fc__accept_init(fc_loop_t *l, const struct sockaddr_in *addr, char *err, size_t errlen);
/* Stops accepting on `l` for good and closes its listening socket. Loop thread. */
void fc__accept_stop(fc_loop_t *l);
/* Builds the refusal answers and derives the caps. Start-up thread. */
void fc__accept_setup(fc_net_t *net, uint64_t nofile);
/* Frees what fc__accept_setup made, once every loop is gone. */
void fc__accept_dispose(fc_net_t *net);
/* The connection cap derived from `nofile` descriptors when none is given:
 * what remains after the application's `reserve`, FC__LOOP_FDS per loop and
 * FC__PROCESS_FDS; a quarter of `nofile` (at least 1) when that leaves too few. */
size_t fc__net_derive_max(uint64_t nofile, unsigned reserve, unsigned loops);
/* Descriptors one loop holds: epoll, its signal pipe (2), its async eventfd,
 * io_uring, its listener, our spare and libuv's own reserve (uv__stream_init). */
#define FC__LOOP_FDS 8
/* stdio, libuv's process-wide signal pipe, and a margin. */
#define FC__PROCESS_FDS 16

/* Wraps an accepted, admitted socket in a connection and hands it to the
 * application. Returns 0; or a negative errno, and then the socket is closed
 * and nothing was created (the caller releases the admission). Loop thread. */
int fc__conn_open(fc_loop_t *l, int fd, fc__peer_t *peer);
/* Gives back a closed connection's admission (its count and its address's). Any thread. */
void fc__net_release(fc_net_t *net, fc__peer_t *peer);

/* The peer table's key for an address: IPv4 as v4-mapped IPv6; IPv6 by its
 * /64 prefix (one host usually has a whole /64). */
void fc__peer_key(const struct sockaddr *sa, uint8_t key[16]);
#define FC__PEER_BUCKETS 4096
void fc__peers_init(fc__peers_t *p, unsigned limit);
void fc__peers_dispose(fc__peers_t *p);
/* Counts one more connection from the address `key`; returns its entry, or
 * NULL when the address already has `limit`. Any thread. */
fc__peer_t *fc__peers_take(fc__peers_t *p, const uint8_t key[16]);
/* Counts one fewer; the entry is freed at zero. Any thread. */
void fc__peers_release(fc__peers_t *p, fc__peer_t *peer);
/* Open connections counted for `key` (tests and logs). */
unsigned fc__peers_count(fc__peers_t *p, const uint8_t key[16]);

void fc__ratelog_init(fc__ratelog_t *r);
void fc__ratelog_dispose(fc__ratelog_t *r);
/* True when a line may be written now (at most one per `interval_ms`); then
 * `*suppressed` is how many were left out since the last. Any thread. */
bool fc__ratelog_allow(fc__ratelog_t *r, uint64_t now_ms, uint64_t interval_ms, uint64_t *suppressed);
/* Writes every dirty connection's queue and drops the references to what was
 * written (the loop's check and prepare callbacks, and the hold timer). */
void fc__conn_flush_all(fc_loop_t *l);
/* Drops the references unref_later() kept (each flush, and loop teardown). */
void fc__conn_drop_refs(fc_loop_t *l);
/* Closes every connection at once (the stop deadline). */
void fc__conn_close_all(fc_loop_t *l);
/* The loop's tick: closes connections that lingered too long, and frees the
 * empty write ring of one that has written nothing for a while. */
void fc__conn_sweep(fc_loop_t *l, uint64_t now);
/* Frees the closed connections still on the dirty lists (no connection is open). */
void fc__conn_free_dead(fc_loop_t *l);
/* Closes the loop's own handles once it is stopping and has no connection. */
void fc__loop_maybe_finish(fc_loop_t *l);

/* Frames one write takes at most. */
#define FC__MAX_IOV 128
/* Fills `bufs` (`max` of them, at most FC__MAX_IOV) with the connection's
 * unwritten bytes; returns how many buffers, and their total length in `*total`. */
uint32_t fc__conn_gather(fc_conn_t *c, uv_buf_t *bufs, uint32_t max, size_t *total);
/* Takes the result of a write of `total` bytes tried elsewhere (bytes
 * written, or a negative errno) and carries on as a direct write would. */
void fc__conn_tried(fc_conn_t *c, int w, size_t total);

/* Batched writes (uring.c). fc__wbatch_new returns NULL, with the errno in
 * `*err`, where io_uring is not available. */
fc__wbatch_t *fc__wbatch_new(int *err);
void fc__wbatch_free(fc__wbatch_t *b);
/* Queues a write of c's queue (c has frames, no write in flight, is not
 * closing); false when the loop has no batch (write it directly). A full
 * batch is flushed at once. */
bool fc__wbatch_add(fc_loop_t *l, fc_conn_t *c);
/* Sends what is queued in one submission and applies every result. */
void fc__wbatch_flush(fc_loop_t *l);

#endif
