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

/* What the application does on a loop. All run on that loop's thread. */
typedef struct {
  void (*on_accept)(fc_conn_t *c);                /* a new connection: fc_conn_set_handler() it */
  void (*on_tick)(fc_loop_t *l, uint64_t now_ms); /* about once a second */
  void (*on_stop)(fc_loop_t *l);                  /* shutdown began: end streams, finish requests */
} fc_net_handlers_t;

/* What a connection does with its bytes. All run on the connection's loop. */
typedef struct {
  void (*on_data)(fc_conn_t *c, const char *p, size_t n);
  void (*on_eof)(fc_conn_t *c);     /* peer closed or a read error: call fc_conn_close() */
  void (*on_drained)(fc_conn_t *c); /* the write queue became empty; may be NULL */
  void (*on_close)(fc_conn_t *c);   /* the socket is closed: release fc_conn_ud(c) */
} fc_conn_handler_t;

typedef struct {
  const char *host;
  int port;
  unsigned threads;
  fc_net_handlers_t h;
  unsigned stop_grace_ms;    /* how long a stop waits for connections before closing them */
  unsigned coalesce_ms;      /* at most this long a busy loop holds stream writes to batch them */
  bool io_uring;             /* send a pass's writes in one io_uring submission where the kernel allows */
  size_t max_conns;          /* open connections at most, every loop; 0: derived from the descriptor limit */
  unsigned max_conns_per_ip; /* open connections from one address at most; 0: no cap */
  unsigned fd_reserve;       /* descriptors the application needs besides connections and the loops' own */
  bool refuse_silently;      /* the port speaks TLS: a refused connection is closed without the plain 503 */
} fc_net_opts_t;

/* Raises the soft descriptor limit to the hard one, binds one listener per
 * loop and starts loops 1..n-1 on their own threads, which wait for
 * fc_net_run() (connections wait in the listen backlog meanwhile, so the
 * application can wire its modules and receivers between the two). Loop 0
 * runs in fc_net_run() on the caller's thread. Returns NULL and fills `err` on failure
 * (address in use, bad address, out of descriptors, a thread that cannot
 * start); nothing is left running then. */
fc_net_t *fc_net_new(const fc_net_opts_t *opts, void **loop_uds, char *err, size_t errlen);
/* Lets every loop run, runs loop 0 until every loop has stopped, then joins
 * the threads. */
void fc_net_run(fc_net_t *net);
/* Frees what fc_net_run left (or, never run, ends the waiting threads).
 * Messages still queued are dropped without running (fc_net_deliver_rest
 * first); posting after this is undefined. */
void fc_net_free(fc_net_t *net);
/* Begins a graceful stop: listeners close, on_stop runs on each loop, loops end
 * when their connections are gone (or at the grace deadline). Any thread. */
void fc_net_stop(fc_net_t *net);
/* Cross-thread messages. Each loop has one mailbox and one wakeup: any thread
 * posts a message to a loop, and that loop runs the message's receiver on its
 * own thread, in the order the messages were posted. A message is embedded in
 * the sender's own struct (nothing is allocated); from fc_net_post() until its
 * receiver runs it belongs to the mailbox, and then to the receiver. */
typedef struct fc_msg fc_msg_t;
struct fc_msg {
  fc_msg_t *next;    /* the mailbox's */
  unsigned receiver; /* from fc_net_receiver() */
  bool queued;       /* the mailbox's: posted and not yet run (posting it again is a bug) */
};
typedef void (*fc_msg_cb)(fc_loop_t *l, fc_msg_t *m, void *ud);
#define FC_NET_MAX_RECEIVERS 16
/* Registers a receiver (the same on every loop) and returns its number for
 * fc_msg_t.receiver, or -ENOSPC. Call at start-up, before anything may post
 * to it. */
int fc_net_receiver(fc_net_t *net, fc_msg_cb cb, void *ud);
/* Queues `m` (its `receiver` set) for loop `index`, and wakes that loop when
 * its mailbox was empty. `m` must not be queued already (a receiver may post
 * its own message again: it has left the mailbox). Any thread. */
void fc_net_post(fc_net_t *net, unsigned index, fc_msg_t *m);
/* After fc_net_run() returned, or when it never ran: runs what the mailboxes
 * hold, on the caller's thread, until they stay empty (receivers may post on,
 * but not forever), so that receivers answer or free what their messages
 * own. Call it before fc_net_free and before freeing what receivers use. */
void fc_net_deliver_rest(fc_net_t *net);
unsigned fc_net_threads(const fc_net_t *net);
fc_loop_t *fc_net_loop(fc_net_t *net, unsigned index);
/* Counters summed over the loops; any thread. */
typedef struct {
  uint64_t writes;                 /* writes to sockets (writev, or sends in a batch), answers and streams */
  uint64_t batched;                /* of those, sends made in io_uring submissions */
  uint64_t bulk_passes;            /* passes that wrote subscriber streams */
  uint64_t bulk_held;              /* of those, passes followed by a hold to coalesce */
  uint64_t connections;            /* open connections, every loop (what max_connections caps) */
  uint64_t max_connections;        /* the cap in effect (given, or derived) */
  uint64_t max_connections_per_ip; /* 0: none */
  uint64_t refused_max;            /* connections refused at max_connections */
  uint64_t refused_per_ip;         /* refused at max_connections_per_ip */
  uint64_t refused_fds;            /* refused because the process was out of descriptors */
  uint64_t accept_pauses;          /* times accepting paused (out of descriptors or memory) */
} fc_net_stats_t;
void fc_net_stats(fc_net_t *net, fc_net_stats_t *out);
/* The port the listeners are bound to (useful with port 0). */
int fc_net_port(const fc_net_t *net);

/* The loop's position, 0..threads-1. Any thread. */
unsigned fc_loop_index(const fc_loop_t *l);
/* The libuv loop, for the application's own handles and work on this loop.
 * Loop thread (uv_async_send on it excepted). */
uv_loop_t *fc_loop_uv(fc_loop_t *l);
/* The application's per-loop state (loop_uds[index] given to fc_net_new). Any thread. */
void *fc_loop_ud(const fc_loop_t *l);
/* True once a graceful stop has begun on the loop. Loop thread. */
bool fc_loop_stopping(const fc_loop_t *l);
/* Calls `cb(c, arg)` on each open connection of the loop that is not closing
 * and whose handler is `h` (NULL: any). `cb` may close `c` (closed
 * connections leave the list only after their close completes). Loop thread. */
void fc_loop_each_conn(fc_loop_t *l, const fc_conn_handler_t *h, void (*cb)(fc_conn_t *c, void *arg), void *arg);

/* A transport filter between the socket and the handler (TLS): it sees the
 * bytes read before the handler does and seals what the handler sends. A
 * connection without one (the plain fast path) never calls through it. All
 * run on the connection's loop. */
typedef struct {
  /* Bytes read from the socket: hands the plaintext to fc_conn_deliver() and
   * queues its own records with fc_conn_send_raw(). Returns 0, or a negative
   * errno: the connection is then closed after what is queued is written. */
  int (*on_read)(fc_conn_t *c, const char *p, size_t n);
  /* Seals `n` bytes the handler sends and queues the result with
   * fc_conn_send_raw(). Returns 0 or a negative errno (nothing queued). */
  int (*send)(fc_conn_t *c, const void *p, size_t n);
  /* A flushing close or a lingering close began: queue a goodbye (TLS
   * close_notify) with fc_conn_send_raw(). May be NULL. */
  void (*on_shutdown)(fc_conn_t *c);
  /* The socket is closed: release the filter's state. */
  void (*on_close)(fc_conn_t *c);
} fc_conn_filter_t;

/* Puts a filter and its state on a fresh connection, before it has a
 * handler (the application's on_accept, first thing). */
void fc_conn_set_filter(fc_conn_t *c, const fc_conn_filter_t *f, void *state);
/* The state given with filter `f`; NULL when `c` has another filter or none. */
void *fc_conn_filter_state(const fc_conn_t *c, const fc_conn_filter_t *f);
/* The filter hands plaintext to the handler (nothing once it is closing). */
void fc_conn_deliver(fc_conn_t *c, const char *p, size_t n);
/* The filter queues bytes for the wire as they are: the queue's bound never
 * refuses them. Takes a reference of its own. Returns 0, or -EPIPE when the
 * connection is closing. */
int fc_conn_send_raw(fc_conn_t *c, fc_frame_t *f);
/* The filter reports the peer's end of the stream (TLS close_notify): the
 * handler's on_eof runs, as for a TCP end. */
void fc_conn_eof(fc_conn_t *c);

/* Gives the connection its handler and the handler's state; on_accept does,
 * before returning. Loop thread, as every fc_conn_ call below. */
void fc_conn_set_handler(fc_conn_t *c, const fc_conn_handler_t *h, void *ud);
/* The state given to fc_conn_set_handler. */
void *fc_conn_ud(const fc_conn_t *c);
fc_loop_t *fc_conn_loop(const fc_conn_t *c);
/* True once fc_conn_close (or a lingering close) was called on it. */
bool fc_conn_closing(const fc_conn_t *c);
/* Bytes queued and not yet written, those in flight included. */
size_t fc_conn_queued(const fc_conn_t *c);
/* Bytes written to the socket since the connection opened (with TLS, the
 * encrypted bytes). */
uint64_t fc_conn_written(const fc_conn_t *c);
/* Milliseconds of loop time since the queue last made write progress (or
 * last started from empty); 0 when nothing is queued. For send timeouts. */
uint64_t fc_conn_stalled_ms(const fc_conn_t *c, uint64_t now_ms);
/* Sets the queue's byte bound: fc_conn_send refuses a frame that would take
 * the queued bytes past `bytes` (0: no bound). What is queued stays. */
void fc_conn_set_bound(fc_conn_t *c, size_t bytes);
size_t fc_conn_bound(const fc_conn_t *c);
/* Marks a subscriber stream: under load, its writes may be held up to the
 * coalesce window and batched with others (fc_net_opts_t.coalesce_ms). May be
 * set at any time: what is already waiting to be written goes as it was marked. */
void fc_conn_set_bulk(fc_conn_t *c, bool bulk);

/* Queues a frame; takes a reference of its own. Returns -ENOBUFS when the queue
 * would pass the bound (nothing queued), -EPIPE when the connection is closing. */
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
