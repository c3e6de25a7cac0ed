/* store: durable event storage behind one interface. The embedded default is
 * SQLite (sqlite.c). One writer thread commits publishes in groups: every job
 * that arrives while a commit runs goes into the next single transaction, and
 * each job's callback runs after its transaction is committed, in commit order.
 * Reads (a channel's tail when it comes back into memory, the channel list)
 * use a separate connection. */
#ifndef FC_STORE_H
#define FC_STORE_H

#include "hub/hub.h"

typedef struct fc_store fc_store_t;

typedef enum {
  FC_DURABILITY_CRASH, /* survives a killed process: WAL, synchronous=NORMAL */
  FC_DURABILITY_POWER, /* survives power loss: synchronous=FULL, an fsync per group */
} fc_durability_t;

/* Retention for channels whose name matches a glob pattern. */
typedef struct {
  char *pattern;    /* a channel name, or a glob with '*' */
  unsigned count;   /* events kept (0: the default) */
  uint64_t max_age_s; /* events older are dropped (0: no age limit) */
} fc_retention_rule_t;

typedef struct {
  const char *dir;
  fc_durability_t durability;
  uint64_t max_bytes; /* database size cap; publishes answer 503 past it (0: none) */
  /* With concurrent publishers (the last group held several), the writer
   * waits this long before taking a group, so that groups are larger and
   * commits fewer (0: never). */
  unsigned commit_delay_us;
  fc_hub_t *hub;      /* where committed events are published */
  const fc_hub_rule_t *rules; /* age limits are enforced from these */
  size_t nrules;
} fc_store_opts_t;

/* Opens (creating) DIR/flowcast.db, locks the directory against a second
 * server, upgrades the schema and starts the writer thread. Returns NULL with
 * a message for the user in `err` for a corrupt, locked, unwritable or newer
 * database, or a writer thread that cannot start. */
fc_store_t *fc_store_open(const fc_store_opts_t *opts, char *err, size_t errlen);
/* The version of the SQLite library flowcast runs with (a static string). */
const char *fc_store_sqlite_version(void);

/* Commits what is queued, stops the writer and closes. */
void fc_store_close(fc_store_t *s);

/* The highest id ever given (ids continue from it after a restart). */
uint64_t fc_store_last_seq(fc_store_t *s);

/* What the store keeps about a channel besides its events. */
typedef struct {
  uint64_t first_seq; /* id of its first event ever, 0 if none */
  uint64_t last_seq;
  uint64_t next_n;    /* ordinal its next event gets */
  uint64_t stored;    /* events stored now */
} fc_store_channel_t;

/* Calls `each` for the stored channels whose names sort after `after` (""
 * for all), in name order (bytewise, as strcmp), at most `limit`. Any thread.
 * Returns how many, or -EIO. */
int fc_store_channels(fc_store_t *s, const char *after, unsigned limit,
                      void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud);

/* The hub's load hook (fc_hub_load_cb, with the store as `ud`): gives `ch`
 * its stored counters and its newest `limit` events, read in one snapshot.
 * Returns 1, 0 when the channel was never stored, or -EIO. Any thread. */
int fc_store_load_channel(void *store, fc_channel_t *ch, unsigned limit);

/* One publish: events for one channel, stored together or not at all. */
typedef struct fc_store_job fc_store_job_t;
struct fc_store_job {
  fc_store_job_t *next;
  fc_channel_t *channel; /* a reference the submitter holds until `done` */
  /* Borrowed until `done`; the writer fills in each one's seq, n and time. */
  fc_event_in_t *events;
  size_t n;
  bool purge; /* instead of events: remove the channel's stored events */
  /* Set before `done`: 0 and the ids given, or -ENOSPC (full), -EIO. */
  int status;
  fc_publish_result_t result;
  /* Runs on the writer thread once the job's transaction ended, after the
   * events went to the hub (on success). Must not block. */
  void (*done)(fc_store_job_t *job);
  void *ud;
};

/* Queues a job for the next group commit. Any thread. */
void fc_store_submit(fc_store_t *s, fc_store_job_t *job);

/* Copies the database into `path` as one consistent file (SQLite's online
 * backup), while the server may be running. */
int fc_store_backup(const char *dir, const char *path, char *err, size_t errlen);

typedef struct {
  uint64_t groups;       /* transactions committed */
  uint64_t events;       /* events committed */
  uint64_t failures;     /* jobs refused (full disk, I/O) */
  uint64_t trimmed;      /* events removed by retention */
} fc_store_stats_t;
void fc_store_stats(fc_store_t *s, fc_store_stats_t *out);

#endif
