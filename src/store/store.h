/* store: where published events are kept, behind one small interface that
 * knows nothing of the hub. Two implementations today:
 *  - SQLite (sqlite.c, writer.c): durable. One writer thread commits batches
 *    in groups: every batch that arrives while a commit runs goes into the
 *    next single transaction.
 *  - memory (memory.c): keeps nothing; a batch "commits" at once, on the
 *    caller's thread. The hub's retained history is then all there is.
 *  - Redis (redis.c): cluster mode, below.
 *
 * Ids: the store does not choose ids. A batch is numbered by its submitter's
 * `number` callback, which the store calls on its commit thread, in commit
 * order, just before writing the batch; `done` follows once the batch's
 * commit ended, in the same order. Calls to `number` and `done` never run
 * concurrently. A store numbers and ends one group of batches before it
 * numbers the next, so that a failed group's ids can be given back; in a
 * failed group, batches after the failing one may end without having been
 * numbered (their events' seq stays 0). */
#ifndef FC_STORE_H
#define FC_STORE_H

#include "core/core.h"

typedef struct fc_store fc_store_t;

/* One event as the store keeps it. Borrowed slices; the id, ordinal and
 * time are set by the batch's `number` callback (0 before). */
typedef struct {
  fc_str_t name; /* may be empty */
  fc_str_t data;
  fc_str_t from; /* may be empty */
  bool is_json;
  uint64_t seq;    /* server-wide id */
  uint64_t n;      /* 1-based ordinal within its channel */
  int64_t time_ms; /* ms since the epoch */
} fc_store_event_t;

/* One publish (events of one channel, stored together or not at all), or a
 * purge of a channel's stored events. Owned by the submitter; the store
 * borrows it (and everything it points to) until `done` has run. */
typedef struct fc_store_batch fc_store_batch_t;
struct fc_store_batch {
  fc_store_batch_t *next;    /* the store's */
  bool wait_lost;            /* the store's (Redis: its WAIT could not be sent) */
  unsigned store_gen;        /* the store's (Redis: the epoch it was sent in, */
  unsigned store_tries;      /* tries refused for an old epoch, */
  unsigned store_skip_waits; /* and WAIT answers of those still to come) */
  const char *channel;       /* the channel's name, NUL-terminated */
  unsigned keep;             /* events the channel retains: the store keeps at least twice as many */
  uint64_t max_age_s;        /* the channel's age limit (0: none), for a store without age rules of its own */
  fc_store_event_t *events;
  size_t n;
  bool purge;          /* instead of events: remove the channel's stored events */
  uint64_t purge_upto; /* a store that numbers sets it: the last id the purge covers */
  /* Set before `done`: 0, or -ENOSPC (full), -EIO. */
  int status;
  /* Gives the events their seq, n and time. On the store's commit thread,
   * in commit order; not for a purge. Must not block. */
  void (*number)(fc_store_batch_t *b);
  /* The batch's commit ended (`status`). On the store's commit thread, in
   * commit order; the memory store calls it before fc_store_append returns.
   * Must not block. */
  void (*done)(fc_store_batch_t *b);
  void *ud;
};

/* What the store keeps about a channel besides its events. */
typedef struct {
  uint64_t first_seq; /* id of its first event ever, 0 if none */
  uint64_t last_seq;
  uint64_t next_n; /* ordinal its next event gets */
  uint64_t stored; /* events stored now */
} fc_store_channel_t;

typedef struct {
  uint64_t groups;   /* transactions committed */
  uint64_t events;   /* events committed */
  uint64_t failures; /* batches refused (full disk, I/O) */
  uint64_t trimmed;  /* events removed by retention */
} fc_store_stats_t;

typedef enum {
  FC_DURABILITY_CRASH, /* survives a killed process: WAL, synchronous=NORMAL */
  FC_DURABILITY_POWER, /* survives power loss: synchronous=FULL, an fsync per group */
} fc_durability_t;

/* An age limit for channels whose name matches `pattern` (a name, or a glob
 * with '*'). */
typedef struct {
  const char *pattern;
  uint64_t max_age_s;
} fc_store_age_rule_t;

typedef struct {
  const char *dir; /* borrowed until fc_store_close */
  fc_durability_t durability;
  uint64_t max_bytes; /* database size cap; appends fail with -ENOSPC past it (0: none) */
  /* With concurrent publishers (the last group held several), the writer
   * waits this long before taking a group, so that groups are larger and
   * commits fewer (0: never). */
  unsigned commit_delay_us;
  /* Stored events past these are deleted. Borrowed, patterns included, until
   * fc_store_close: the writer thread reads them on every pass. */
  const fc_store_age_rule_t *ages;
  size_t nages;
  /* Called on the writer thread after each age pass (about once a second,
   * whether or not it deleted anything), so that memory drops what is past
   * its age too. May be NULL. */
  void (*aged)(void *ud, int64_t now_ms);
  void *aged_ud;
} fc_store_sqlite_opts_t;

/* Opens (creating) DIR/flowcast.db, locks the directory against a second
 * server, upgrades the schema and starts the writer thread. Returns NULL with
 * a message for the user in `err` for a corrupt, locked, unwritable or newer
 * database, or a writer thread that cannot start. */
fc_store_t *fc_store_sqlite_open(const fc_store_sqlite_opts_t *opts, char *err, size_t errlen);
/* A store that keeps nothing: appends commit at once. Never NULL. */
fc_store_t *fc_store_memory_new(void);

/* ---- Redis: cluster mode ---------------------------------------------------
 * Every node pointed at one Redis shares its events, ids and history. Redis
 * gives the ids (one counter for the cluster), so this store numbers batches
 * itself (fc_store_numbers), and a commit reaches every node that holds its
 * channel, this one included, on a bus (Redis Pub/Sub), in Redis's commit
 * order. */

/* What the bus brings, on the store's thread, one message at a time: a
 * batch committed by some node, a purge, or a catch-up notice (the channel
 * came into this node's memory, or the bus was away: events may have been
 * missed; read them with fc_store_range). */
typedef enum {
  FC_BUS_EVENTS,
  FC_BUS_PURGE,
  FC_BUS_CATCH_UP,
  /* Redis came back without its data: give the store what this node knows
   * (fc_store_reseed), so that ids and ordinals go on increasing. */
  FC_BUS_RESEED,
} fc_bus_kind_t;
typedef struct {
  fc_bus_kind_t kind;
  fc_str_t channel;
  const fc_store_event_t *events; /* FC_BUS_EVENTS: numbered, consecutive */
  size_t n;
  uint64_t upto; /* FC_BUS_PURGE: the last id it covers */
} fc_bus_msg_t;
typedef void (*fc_bus_cb)(void *ud, const fc_bus_msg_t *m);

typedef struct {
  const char *url;        /* redis://[USER:PASSWORD@]HOST[:PORT][/DB]; copied */
  unsigned wait_replicas; /* a commit ends once this many replicas have it (WAIT) */
  /* Called on the store's thread about once a second, so that memory drops
   * what is past its age (as fc_store_sqlite_opts_t.aged). May be NULL. */
  void (*aged)(void *ud, int64_t now_ms);
  void *aged_ud;
} fc_store_redis_opts_t;

/* Parses the URL, connects (checking the password, the database and that
 * Redis has streams), loads the scripts and starts the store's thread.
 * Returns NULL with a message for the user in `err` (a bad URL, Redis
 * unreachable, a refused password). */
fc_store_t *fc_store_redis_open(const fc_store_redis_opts_t *opts, char *err, size_t errlen);

/* "HOST:PORT/DB" of a Redis store (no password), for logs; "" otherwise. */
const char *fc_store_redis_where(fc_store_t *s);

/* True for a store that gives ids itself (Redis): `number` is not called,
 * events carry their seq, n and time when `done` runs, and every committed
 * batch also comes back on the bus. A batch that could not reach Redis ends
 * with -ENOTCONN (after a lost connection it may have been committed: it then
 * comes on the bus like any other). */
bool fc_store_numbers(const fc_store_t *s);
/* Where bus messages go, from now on (before: nowhere). */
void fc_store_listen(fc_store_t *s, fc_bus_cb cb, void *ud);
/* This node holds `channel` in memory (`on`), or no longer. The bus brings a
 * channel's commits only while it is on (one Pub/Sub subscription per
 * channel held, not per client), starting with a catch-up notice once the
 * subscription holds. Calls must come in the order of the changes. Any
 * thread; does not block. No-op without a bus. */
void fc_store_interest(fc_store_t *s, const char *channel, bool on);
/* Calls `each` for stored events of `channel` with id > `after`, oldest
 * first, at most `limit`. Returns how many, -ENOTCONN or -EIO; -ENOTSUP for
 * a store without (memory, SQLite). Any thread; blocks on I/O. */
int fc_store_range(fc_store_t *s, const char *channel, uint64_t after, unsigned limit,
                   void (*each)(void *ud, const fc_store_event_t *ev), void *ud);

/* A secret the cluster shares (the JWT signing key): the stored one, or
 * `candidate` stored first if there is none (SET NX). Copies `len` bytes
 * into `out`; returns 0, -ENOTCONN, -EIO (a stored value of another length),
 * or -ENOTSUP for a store without a cluster. */
int fc_store_shared_secret(fc_store_t *s, const char *name, const uint8_t *candidate, uint8_t *out, size_t len);

/* After FC_BUS_RESEED, on the store's thread: raises the cluster's last id
 * to at least `last_seq` and each of the `n` channels' last ordinal to at
 * least `last_n[i]`. Returns 0, -ENOTCONN or -EIO. */
int fc_store_reseed(fc_store_t *s, uint64_t last_seq, const char *const *names, const uint64_t *last_n, size_t n);

/* Claims `key` for this node for `ttl_s` seconds (Redis SET NX EX): 1 when
 * this node has it, 0 when another node took it first, -ENOTCONN or -EIO;
 * -ENOTSUP for a store without a cluster. Any thread; blocks on I/O. */
int fc_store_claim(fc_store_t *s, const char *key, unsigned ttl_s);

typedef struct {
  bool up;             /* both connections are open */
  uint64_t reconnects; /* connections opened again after a loss */
  uint64_t catch_ups;  /* catch-up notices sent */
} fc_store_link_t;
/* The state of a store's connection; false for a store without one. */
bool fc_store_link(fc_store_t *s, fc_store_link_t *out);

/* Commits what is queued, stops and frees. NULL is a no-op. */
void fc_store_close(fc_store_t *s);

/* True when the store keeps events beyond the hub's memory: channels may
 * then leave memory and load again (fc_store_load). */
bool fc_store_durable(const fc_store_t *s);

/* The highest id ever committed (ids continue from it after a restart). */
uint64_t fc_store_last_seq(fc_store_t *s);

/* Queues a batch for the next commit (see the batch's callbacks). Any thread. */
void fc_store_append(fc_store_t *s, fc_store_batch_t *b);

/* Reads a channel in one snapshot: fills `out` with its counters, then calls
 * `each` for its newest `limit` events, oldest first (the event's slices
 * live until `each` returns). Returns 1, 0 when the channel was never stored,
 * or -EIO. Any thread; it may block on I/O. */
int fc_store_load(fc_store_t *s, const char *channel, unsigned limit, fc_store_channel_t *out,
                  void (*each)(void *ud, const fc_store_event_t *ev), void *ud);

/* Calls `each` for the stored channels whose names sort after `after` (""
 * for all), in name order (bytewise, as strcmp), at most `limit`. Any thread.
 * Returns how many, or -EIO. */
int fc_store_channels(fc_store_t *s, const char *after, unsigned limit,
                      void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud);

/* Counters since start; false (and `out` zeroed) for a store without any. */
bool fc_store_stats(fc_store_t *s, fc_store_stats_t *out);

/* The version of the SQLite library flowcast runs with (a static string). */
const char *fc_store_sqlite_version(void);

/* Copies the database into `path` as one consistent file (SQLite's online
 * backup), while the server may be running. Returns 0, or with a message in
 * `err`: access's errno (-ENOENT, ...) when DIR has no readable database,
 * -EIO when a database cannot be opened or the copy fails. */
int fc_store_backup(const char *dir, const char *path, char *err, size_t errlen);

#endif
