#ifndef FC_STORE_INTERNAL_H
#define FC_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store/store.h"

/* The operations every implementation fills (store.h says what each does). */
typedef struct {
  void (*close)(fc_store_t *s);
  uint64_t (*last_seq)(fc_store_t *s);
  void (*append)(fc_store_t *s, fc_store_batch_t *b);
  int (*load)(fc_store_t *s, const char *channel, unsigned limit, fc_store_channel_t *out,
              void (*each)(void *ud, const fc_store_event_t *ev), void *ud);
  int (*channels)(fc_store_t *s, const char *after, unsigned limit,
                  void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud);
  bool (*stats)(fc_store_t *s, fc_store_stats_t *out);
  /* Redis only (NULL elsewhere): */
  void (*listen)(fc_store_t *s, fc_bus_cb cb, void *ud);
  void (*interest)(fc_store_t *s, const char *channel, bool on);
  int (*range)(fc_store_t *s, const char *channel, uint64_t after, unsigned limit,
               void (*each)(void *ud, const fc_store_event_t *ev), void *ud);
  bool (*link)(fc_store_t *s, fc_store_link_t *out);
  int (*shared_secret)(fc_store_t *s, const char *name, const uint8_t *candidate, uint8_t *out, size_t len);
  int (*claim)(fc_store_t *s, const char *key, unsigned ttl_s);
  int (*reseed)(fc_store_t *s, uint64_t last_seq, const char *const *names, const uint64_t *last_n, size_t n);
  bool durable;
  bool numbers; /* the store gives ids */
} fc__store_ops_t;

/* The head of every implementation's struct. */
struct fc_store {
  const fc__store_ops_t *ops;
};

/* What the SQLite writer knows of a channel, by name. Writer thread only.
 * Everything here can be derived again from the database, so entries that
 * are not in use are dropped when the table grows past CHANS_MAX. */
typedef struct sq_chan {
  struct sq_chan *next; /* hash chain */
  uint32_t hash;
  int64_t id;          /* row id, 0 until known */
  uint64_t id_group;   /* commit group that created the row: a rollback undoes it */
  uint64_t used_group; /* last group that wrote it */
  uint64_t next_n;     /* ordinal after the newest written, 0 if none yet */
  unsigned keep;       /* events the channel retains (the batch's `keep`) */
  uint64_t trimmed_n;  /* events with smaller ordinals are trimmed */
  bool trim_listed;
  char name[];
} sq_chan_t;

#define CHANS_MAX 65536 /* entries kept before unused ones are dropped */

typedef struct {
  fc_store_t base;
  fc_store_sqlite_opts_t opts;
  char path[4096];
  int lock_fd;
  sqlite3 *db;  /* the writer's connection: writer thread only (and open/close) */
  sqlite3 *rdb; /* reads, serialized by read_lock */
  pthread_mutex_t read_lock;
  sqlite3_stmt *rbegin, *rend, *rchannel, *rtail, *rlist; /* on rdb, under read_lock */
  sqlite3_stmt *ins_event, *begin, *commit, *ins_channel, *settle_channel, *settle_aged, *trim_count, *trim_age;

  pthread_t thread;
  bool running;
  pthread_mutex_t lock; /* the queue below */
  pthread_cond_t wake, idle;
  fc_store_batch_t *head, *tail;
  bool stopping;

  sq_chan_t **chans; /* writer thread: channels by name */
  size_t nchans, chans_cap;

  _Atomic uint64_t last_seq; /* the last id committed (written by the writer thread) */
  uint64_t group;            /* writer thread: number of the group being committed */
  size_t last_batches;       /* writer thread: batches in the last group */
  atomic_ullong groups, events, failures, trimmed;
} fc__sqlite_t;

/* Events deleted per trim statement, so one trim never holds the writer long. */
#define TRIM_BATCH 5000
#define TRIM_MIN 16 /* events a channel may hold past its keep before a trim */

void *fc__store_writer(void *arg);
/* Opens DIR/flowcast.db for records (records_sql.c), creating and upgrading
 * it as fc_store_sqlite_open does, without the server lock. NULL with `err`. */
sqlite3 *fc__store_open_db(const char *dir, char *err, size_t errlen);
void fc__sqlite_append(fc_store_t *s, fc_store_batch_t *b);
/* The writer's entry for `name`, made on first use. Writer thread. */
sq_chan_t *fc__sqlite_chan(fc__sqlite_t *s, const char *name);
void fc__sqlite_chans_free(fc__sqlite_t *s);

#endif
