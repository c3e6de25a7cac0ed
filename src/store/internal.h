#ifndef FC_STORE_INTERNAL_H
#define FC_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store/store.h"

struct fc_store {
  fc_store_opts_t opts;
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
  fc_store_job_t *head, *tail;
  bool stopping;

  uint64_t last_seq; /* writer thread: the last id committed */
  uint64_t group;    /* writer thread: number of the group being committed */
  size_t last_jobs;  /* writer thread: jobs in the last group */
  atomic_ullong groups, events, failures, trimmed;
};

/* Events deleted per trim statement, so one trim never holds the writer long. */
#define TRIM_BATCH 5000
#define TRIM_MIN 16 /* events a channel may hold past its keep before a trim */

void *fc__store_writer(void *arg);
/* Opens DIR/flowcast.db for records (records_sql.c), creating and upgrading
 * it as fc_store_open does, without the server lock. NULL with `err`. */
sqlite3 *fc__store_open_db(const char *dir, char *err, size_t errlen);

#endif
