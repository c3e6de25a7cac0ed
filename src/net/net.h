/* net: one libuv loop per thread, listeners sharing the port (SO_REUSEPORT),
 * and connections whose write queues hold references to shared frames.
 * Each loop accepts on its own listener and admits a connection only under the
 * global and per-address caps; a refused one gets a 503 written on the socket.
 * Out of file descriptors, a loop sheds what waits and pauses accepting.
 * Queued frames are flushed once per loop iteration with one writev, so frames
 * queued in the same tick coalesce into one write. */
#ifndef FC_NET_H
#define FC_NET_H

#include <uv.h>

#include "core/core.h"

typedef struct fc_net fc_net_t;
typedef struct fc_loop fc_loop_t;
typedef struct fc_conn fc_conn_t;
typedef struct fc__wbatch fc__wbatch_t;
typedef struct fc__peer fc__peer_t;

/* What the application does on a loop. All run on that loop's thread. */
typedef struct {
  void (*on_accept)(fc_conn_t *c);       /* a new connection: set c->h and c->ud */
  void (*on_wake)(fc_loop_t *l);         /* fc_net_wake() was called for this loop */
  void (*on_tick)(fc_loop_t *l, uint64_t now_ms); /* about once a second */
  void (*on_stop)(fc_loop_t *l);         /* shutdown began: end streams, finish requests */
} fc_net_handlers_t;

/* What a connection does with its bytes. All run on the connection's loop. */
typedef struct {
  void (*on_data)(fc_conn_t *c, const char *p, size_t n);
  void (*on_eof)(fc_conn_t *c); /* peer closed or a read error: call fc_conn_close() */
  void (*on_drained)(fc_conn_t *c); /* the write queue became empty; may be NULL */
  void (*on_close)(fc_conn_t *c); /* the socket is closed: release c->ud */
} fc_conn_handler_t;

struct fc_loop {
  uv_loop_t uv;
  unsigned index;   /* 0..threads-1 */
  fc_net_t *net;
  void *ud;         /* the application's per-loop state */
  int listen_fd;            /* this loop's listening socket; -1 when closed */
  uv_poll_t accept_io;      /* its readiness: the loop accepts itself (accept.c) */
  uv_timer_t accept_pause;  /* restarts accept_io after a pause (out of descriptors) */
  bool accept_paused;
  int spare_fd;             /* closed to accept and refuse one when out of descriptors; -1: none */
  uv_async_t wake;
  uv_check_t flush; /* writes what poll-phase callbacks queued, once per iteration */
  uv_prepare_t flush_early; /* writes what timer callbacks queued, before the poll blocks */
  uv_timer_t tick;
  uv_timer_t stop_deadline;
  uv_thread_t thread;
  fc_conn_t *dirty;  /* connections with frames to write */
  fc_conn_t *bulk_dirty; /* subscriber streams with frames to write: see fc_conn_t.bulk */
  uint64_t bulk_due;     /* uv_hrtime() before which bulk writes wait */
  uint32_t bulk_recent_ms; /* a stream written this recently is written again */
  bool bulk_holding;       /* the last stream pass was followed by a hold */
  uv_timer_t bulk_timer; /* wakes the loop when they are due */
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
  fc_conn_t *conns;  /* every open connection */
  size_t nconns;
  bool stopping;
  char readbuf[64 * 1024]; /* shared by every connection: data is parsed in read_cb */
};

struct fc_conn {
  uv_tcp_t tcp;
  fc_loop_t *loop;
  const fc_conn_handler_t *h;
  void *ud;
  fc_conn_t *prev, *next; /* in loop->conns */
  fc_conn_t *dirty_next;
  fc_frame_t **q;        /* ring of frames to write, oldest first */
  uint32_t qhead, qlen, qcap;
  uint32_t qoff;         /* bytes of the oldest frame already written */
  uint32_t inflight;     /* bytes at the head of the queue in a uv_write */
  size_t queued;         /* bytes queued and not yet written, in-flight included */
  size_t bound;          /* fc_conn_send fails past this many queued bytes; 0: none */
  uint64_t progress_ms;  /* loop time of the last write progress, or of the queue's last start from empty */
  uv_write_t *wreq;      /* the write in flight, if any: idle connections hold none */
  bool dirty;             /* on loop->dirty or loop->bulk_dirty (as `bulk` was when marked) */
  bool bulk;              /* a subscriber stream: its writes may be coalesced under load */
  bool closing, close_when_flushed, reading;
  bool dead;              /* closed, left on a dirty list for the flush to free */
  bool lingering;       /* answered and shut down: input is read and dropped until EOF */
  uint64_t linger_since; /* loop time the lingering began */
  uint32_t last_write_ms; /* when a bulk pass last wrote it (uv_hrtime in ms; 0: never) */
  fc__peer_t *peer;      /* its address's count (--max-connections-per-ip); NULL: no cap */
};

typedef struct {
  const char *host;
  int port;
  unsigned threads;
  fc_net_handlers_t h;
  unsigned stop_grace_ms; /* how long a stop waits for connections before closing them */
  unsigned coalesce_ms;   /* at most this long a busy loop holds stream writes to batch them */
  bool io_uring;          /* send a pass's writes in one io_uring submission where the kernel allows */
  size_t max_conns;       /* open connections at most, every loop; 0: derived from the descriptor limit */
  unsigned max_conns_per_ip; /* open connections from one address at most; 0: no cap */
  unsigned fd_reserve;    /* descriptors the application needs besides connections and the loops' own */
} fc_net_opts_t;

/* Raises the soft descriptor limit to the hard one, binds one listener per
 * loop and starts loops 1..n-1 on their own threads. Loop 0 runs in
 * fc_net_run() on the caller's thread. Returns NULL and fills `err` on failure
 * (address in use, bad address, out of descriptors, a thread that cannot
 * start); nothing is left running then. */
fc_net_t *fc_net_new(const fc_net_opts_t *opts, void **loop_uds, char *err, size_t errlen);
/* Runs loop 0 until every loop has stopped, then joins the threads. */
void fc_net_run(fc_net_t *net);
/* Frees what fc_net_run left. */
void fc_net_free(fc_net_t *net);
/* Begins a graceful stop: listeners close, on_stop runs on each loop, loops end
 * when their connections are gone (or at the grace deadline). Any thread. */
void fc_net_stop(fc_net_t *net);
/* Calls on_wake on loop `index` soon. Any thread. */
void fc_net_wake(fc_net_t *net, unsigned index);
unsigned fc_net_threads(const fc_net_t *net);
fc_loop_t *fc_net_loop(fc_net_t *net, unsigned index);
/* Counters summed over the loops; any thread. */
typedef struct {
  uint64_t writes;      /* writes to sockets (writev, or sends in a batch), answers and streams */
  uint64_t batched;     /* of those, sends made in io_uring submissions */
  uint64_t bulk_passes; /* passes that wrote subscriber streams */
  uint64_t bulk_held;   /* of those, passes followed by a hold to coalesce */
  uint64_t connections; /* open connections, every loop (what max_connections caps) */
  uint64_t max_connections; /* the cap in effect (given, or derived) */
  uint64_t max_connections_per_ip; /* 0: none */
  uint64_t refused_max;    /* connections refused at max_connections */
  uint64_t refused_per_ip; /* refused at max_connections_per_ip */
  uint64_t refused_fds;    /* refused because the process was out of descriptors */
  uint64_t accept_pauses;  /* times accepting paused (out of descriptors or memory) */
} fc_net_stats_t;
void fc_net_stats(fc_net_t *net, fc_net_stats_t *out);
/* The port the listeners are bound to (useful with port 0). */
int fc_net_port(const fc_net_t *net);

/* Queues a frame; takes a reference of its own. Returns -ENOBUFS when the queue
 * would pass c->bound (nothing queued), -EPIPE when the connection is closing. */
int fc_conn_send(fc_conn_t *c, fc_frame_t *f);
/* Queues a copy of the bytes. */
int fc_conn_send_copy(fc_conn_t *c, const void *p, size_t n);
/* Queues a copy that the bound never refuses: protocol control bytes (a
 * WebSocket pong or close) that must go out even to a full queue. */
int fc_conn_send_control(fc_conn_t *c, const void *p, size_t n);
/* Closes the connection; with `flush` after the queued frames are written. */
void fc_conn_close(fc_conn_t *c, bool flush);
/* Writes what is queued, shuts the sending side down, then reads and drops
 * what the peer still sends until it closes (at most 2 s), so that a peer
 * still sending a request we refused reads our answer instead of a reset. */
void fc_conn_close_linger(fc_conn_t *c);
void fc_conn_read_stop(fc_conn_t *c);
void fc_conn_read_start(fc_conn_t *c);
/* The peer address as "ip:port". */
void fc_conn_peer(fc_conn_t *c, char *out, size_t len);

#endif
