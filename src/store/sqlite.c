/* The embedded store: SQLite in WAL mode, one writer thread with group commit. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

#define SCHEMA_VERSION 5

/* Each entry upgrades the schema from version i to i+1. */
static const char *const migrations[] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta VALUES('last_seq', 0);"
    "CREATE TABLE channels(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " first_seq INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,"
    " next_n INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE events(seq INTEGER PRIMARY KEY, channel_id INTEGER NOT NULL, n INTEGER NOT NULL,"
    " time_ms INTEGER NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, is_json INTEGER NOT NULL,"
    " from_conn TEXT NOT NULL);"
    "CREATE INDEX events_channel_n ON events(channel_id, n);",
    "CREATE TABLE users(name TEXT PRIMARY KEY, hash TEXT NOT NULL, admin INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL) WITHOUT ROWID;",
    /* 3: workflow jobs and their task results (records_sql.c) */
    "CREATE TABLE jobs(id TEXT PRIMARY KEY, workflow_id INTEGER NOT NULL, status TEXT NOT NULL,"
    " reason TEXT, input TEXT, created_ms INTEGER NOT NULL, started_ms INTEGER, ended_ms INTEGER,"
    " final_seq INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE INDEX jobs_workflow ON jobs(workflow_id, created_ms);"
    "CREATE TABLE job_tasks(job_id TEXT NOT NULL, idx INTEGER NOT NULL, type TEXT NOT NULL,"
    " status TEXT NOT NULL, exit_code INTEGER, started_ms INTEGER, ended_ms INTEGER,"
    " PRIMARY KEY(job_id, idx)) WITHOUT ROWID;",
    /* 4: meta.last_seq is no longer written by each commit: the id counter
     * is the largest channels.last_seq (channel rows are never deleted, and
     * each commit updates the rows of its channels). The version is raised
     * so that an older flowcast, which reads only meta, refuses the file
     * rather than hand out ids again. */
    "UPDATE meta SET value=max(value, (SELECT coalesce(max(last_seq), 0) FROM channels)) WHERE key='last_seq';",
    /* 5: commits no longer write channel rows either (with many channels
     * each one dirtied a page per channel). A channel's last id and next
     * ordinal are the larger of its row's and its newest stored event's; the
     * row is brought up to date (SETTLE) before any delete that could take
     * that event. Nothing to convert: schema-4 rows are current. The version
     * is raised so that an older flowcast, which trusts the rows alone,
     * refuses the file rather than hand out ordinals again. */
    "",
};

/* A channel's newest stored event, by ordinal (the events_channel_n index). */
#define NEWEST(col, chan) "(SELECT " col " FROM events e WHERE e.channel_id=" chan " ORDER BY e.n DESC LIMIT 1)"
/* Brings channel rows matching WHERE up to date with their newest events.
 * Only stale rows are written: a stored event at or past next_n, which is
 * then the newest, and its id the channel's last (ids rise with ordinals). */
#define SETTLE(where)                                                                                                  \
  "UPDATE channels SET last_seq=" NEWEST("seq", "channels.id") ", next_n=" NEWEST(                                     \
      "n", "channels.id") " + 1"                                                                                       \
                          " WHERE " where " AND next_n <= " NEWEST("n", "channels.id")

static int exec(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL); }

static int step_reset(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Reads PRAGMA user_version, applies what migrations are missing. Returns 0,
 * or with `err`: -EIO (unreadable, not a database, failed upgrade) or
 * -EPROTONOSUPPORT (a newer schema). */
static int migrate(sqlite3 *db, char *err, size_t errlen) {
  sqlite3_stmt *st;
  int version = -1, rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
  if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
  rc = sqlite3_finalize(st);
  if (version < 0 || rc != SQLITE_OK) {
    snprintf(err, errlen, "cannot read the database: %s (is it a flowcast database? is it corrupt?)",
             sqlite3_errmsg(db));
    return -EIO;
  }
  if (version > SCHEMA_VERSION) {
    snprintf(err, errlen,
             "the database has schema version %d, newer than this flowcast understands (%d): "
             "run a newer flowcast, or restore a backup",
             version, SCHEMA_VERSION);
    return -EPROTONOSUPPORT;
  }
  for (int v = version; v < SCHEMA_VERSION; v++) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v + 1);
    if (exec(db, "BEGIN IMMEDIATE") || exec(db, migrations[v]) || exec(db, sql) || exec(db, "COMMIT")) {
      snprintf(err, errlen, "cannot upgrade the database schema to version %d: %s", v + 1, sqlite3_errmsg(db));
      exec(db, "ROLLBACK");
      return -EIO;
    }
    if (version > 0) fc_log(FC_LOG_INFO, "schema upgraded", "from=%d to=%d", v, v + 1);
  }
  return 0;
}

/* Takes an exclusive lock on DIR/flowcast.lock: one server per data directory.
 * Returns the lock's descriptor, or with `err`: -EBUSY (another server holds
 * it) or open's errno. */
static int lock_dir(const char *dir, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/flowcast.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
    return -e;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    if (n > 0) pid[n] = '\0';
    snprintf(err, errlen, "the data directory %s is in use by another flowcast%s%s", dir, n > 0 ? " (pid " : "",
             n > 0 ? pid : "");
    if (n > 0) strncat(err, ")", errlen - strlen(err) - 1);
    close(fd);
    return -EBUSY;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
  if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) < 0) { /* informative only */
  }
  return fd;
}

/* mkdir -p, each new directory with mode 0700. Returns 0 or mkdir's -errno. */
static int make_dirs(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0700) < 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  return mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

/* Creates the data directory if needed and checks it can be written.
 * Returns 0, or a negative errno with `err` (-ENOTDIR, -EACCES, ...). */
static int prepare_dir(const char *dir, char *err, size_t errlen) {
  int rc = make_dirs(dir);
  if (rc < 0) {
    snprintf(err, errlen, "cannot create the data directory %s: %s", dir, strerror(-rc));
    return rc;
  }
  struct stat st;
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "the data directory %s is not a directory", dir);
    return -ENOTDIR;
  }
  if (access(dir, R_OK | W_OK | X_OK) < 0) {
    int e = errno;
    snprintf(err, errlen, "the data directory %s is not writable by this user (mode %o): %s", dir, st.st_mode & 0777,
             strerror(e));
    return -e;
  }
  return 0;
}

static sqlite3 *open_db(const char *path, int flags, char *err, size_t errlen) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_extended_result_codes(db, 0);
  return db;
}

/* Sets the journal and sync mode and the size cap; checks the file is a
 * database. Returns 0, or -EIO with `err`. */
static int configure(fc__sqlite_t *s, char *err, size_t errlen) {
  const char *sync =
      s->opts.durability == FC_DURABILITY_POWER ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  if (exec(s->db, "PRAGMA journal_mode=WAL") != SQLITE_OK || exec(s->db, sync) != SQLITE_OK) {
    snprintf(err, errlen, "cannot use the database %s: %s (is it corrupt, or not a database?)", s->path,
             sqlite3_errmsg(s->db));
    return -EIO;
  }
  exec(s->db, "PRAGMA wal_autocheckpoint=4000");
  if (s->opts.max_bytes) {
    sqlite3_stmt *st;
    sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL);
    int page = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 4096;
    sqlite3_finalize(st);
    char sql[80];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count=%llu",
             (unsigned long long)(s->opts.max_bytes / (uint64_t)(page > 0 ? page : 4096)));
    exec(s->db, sql);
  }
  return 0;
}

static int prepare_statements(fc__sqlite_t *s) {
  static const char *const sql[] = {
      "INSERT INTO events(seq, channel_id, n, time_ms, name, data, is_json, from_conn) VALUES(?,?,?,?,?,?,?,?)",
      "BEGIN IMMEDIATE",
      "COMMIT",
      "INSERT INTO channels(name, first_seq) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE "
      "SET first_seq=CASE first_seq WHEN 0 THEN excluded.first_seq ELSE first_seq END RETURNING id",
      SETTLE("id=?1"),
      /* before an age trim: the channels it would leave without events */
      SETTLE("name GLOB ?1 AND " NEWEST("time_ms", "channels.id") " < ?2"),
      "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE channel_id=? AND n<? LIMIT ?)",
      "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e JOIN channels c ON c.id=e.channel_id "
      "WHERE c.name GLOB ?1 AND e.time_ms<?2 LIMIT ?3)",
  };
  sqlite3_stmt **out[] = {&s->ins_event,      &s->begin,       &s->commit,     &s->ins_channel,
                          &s->settle_channel, &s->settle_aged, &s->trim_count, &s->trim_age};
  for (size_t i = 0; i < FC_ARRAY_LEN(sql); i++)
    if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, out[i], NULL) != SQLITE_OK) return -EIO;
  return 0;
}

/* The stored counters of a channel: its first id, its last id and next
 * ordinal (the larger of its row's and its newest event's, see SETTLE), and
 * how many events it holds. */
#define CHANNEL_COLUMNS                                                                                                \
  "c.first_seq, max(c.last_seq, coalesce(" NEWEST(                                                                     \
      "seq", "c.id") ", 0)), "                                                                                         \
                     "max(c.next_n, coalesce(" NEWEST(                                                                 \
                         "n", "c.id") ", 0) + 1), "                                                                    \
                                      "(SELECT count(*) FROM events e WHERE e.channel_id = c.id)"

static int prepare_reads(fc__sqlite_t *s) {
  static const char *const sql[] = {
      "BEGIN",
      "COMMIT",
      "SELECT c.id, " CHANNEL_COLUMNS " FROM channels c WHERE c.name=?1",
      "SELECT * FROM (SELECT e.seq, e.n, e.time_ms, e.name, e.data, e.is_json, e.from_conn FROM events e "
      "WHERE e.channel_id=?1 ORDER BY e.n DESC LIMIT ?2) ORDER BY n",
      "SELECT c.name, " CHANNEL_COLUMNS " FROM channels c WHERE c.name > ?1 ORDER BY c.name LIMIT ?2",
  };
  sqlite3_stmt **out[] = {&s->rbegin, &s->rend, &s->rchannel, &s->rtail, &s->rlist};
  for (size_t i = 0; i < FC_ARRAY_LEN(sql); i++)
    if (sqlite3_prepare_v3(s->rdb, sql[i], -1, SQLITE_PREPARE_PERSISTENT, out[i], NULL) != SQLITE_OK) return -EIO;
  return 0;
}

/* The id counter: the last id stored or settled in a channel row, or what
 * schema 3 kept in meta. */
static uint64_t read_last_seq(sqlite3 *db) {
  sqlite3_stmt *st;
  uint64_t v = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT max((SELECT value FROM meta WHERE key='last_seq'),"
                         " (SELECT coalesce(max(last_seq), 0) FROM channels),"
                         " (SELECT coalesce(max(seq), 0) FROM events))",
                         -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

sqlite3 *fc__store_open_db(const char *dir, char *err, size_t errlen) {
  if (prepare_dir(dir, err, errlen) < 0) return NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s/flowcast.db", dir);
  sqlite3 *db = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
  if (!db) return NULL;
  if (exec(db, "PRAGMA journal_mode=WAL") != SQLITE_OK) {
    snprintf(err, errlen, "cannot use the database %s: %s (is it corrupt, or not a database?)", path,
             sqlite3_errmsg(db));
    sqlite3_close(db);
    return NULL;
  }
  if (migrate(db, err, errlen) < 0) {
    sqlite3_close(db);
    return NULL;
  }
  return db;
}

static void sqlite_close(fc_store_t *base);
static uint64_t sqlite_last_seq(fc_store_t *base);
static int sqlite_load(fc_store_t *base, const char *channel, unsigned limit, fc_store_channel_t *out,
                       void (*each)(void *ud, const fc_store_event_t *ev), void *ud);
static int sqlite_channels(fc_store_t *base, const char *after, unsigned limit,
                           void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud);
static bool sqlite_stats(fc_store_t *base, fc_store_stats_t *out);

static const fc__store_ops_t sqlite_ops = {
    .close = sqlite_close,
    .last_seq = sqlite_last_seq,
    .append = fc__sqlite_append,
    .load = sqlite_load,
    .channels = sqlite_channels,
    .stats = sqlite_stats,
    .durable = true,
};

fc_store_t *fc_store_sqlite_open(const fc_store_sqlite_opts_t *opts, char *err, size_t errlen) {
  if (prepare_dir(opts->dir, err, errlen) < 0) return NULL;
  fc__sqlite_t *s = fc_xcalloc(1, sizeof *s);
  s->base.ops = &sqlite_ops;
  s->opts = *opts;
  s->lock_fd = -1;
  snprintf(s->path, sizeof s->path, "%s/flowcast.db", opts->dir);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->wake, NULL);
  pthread_cond_init(&s->idle, NULL);
  pthread_mutex_init(&s->read_lock, NULL);
  s->lock_fd = lock_dir(opts->dir, err, errlen);
  if (s->lock_fd < 0) goto fail;
  s->db = open_db(s->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
  if (!s->db || configure(s, err, errlen) < 0 || migrate(s->db, err, errlen) < 0) goto fail;
  if (prepare_statements(s) < 0) {
    snprintf(err, errlen, "cannot prepare statements on %s: %s", s->path, sqlite3_errmsg(s->db));
    goto fail;
  }
  s->rdb = open_db(s->path, SQLITE_OPEN_READONLY, err, errlen);
  if (!s->rdb) goto fail;
  if (prepare_reads(s) < 0) {
    snprintf(err, errlen, "cannot prepare statements on %s: %s", s->path, sqlite3_errmsg(s->rdb));
    goto fail;
  }
  atomic_store(&s->last_seq, read_last_seq(s->db));
  int rc = pthread_create(&s->thread, NULL, fc__store_writer, s);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the storage writer thread: %s", strerror(rc));
    goto fail;
  }
  s->running = true;
  return &s->base;
fail:
  sqlite_close(&s->base);
  return NULL;
}

static void sqlite_close(fc_store_t *base) {
  fc__sqlite_t *s = (fc__sqlite_t *)base;
  if (s->running) {
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
  }
  sqlite3_stmt *sts[] = {s->ins_event,   s->begin,      s->commit,   s->ins_channel, s->settle_channel,
                         s->settle_aged, s->trim_count, s->trim_age, s->rbegin,      s->rend,
                         s->rchannel,    s->rtail,      s->rlist};
  for (size_t i = 0; i < FC_ARRAY_LEN(sts); i++) sqlite3_finalize(sts[i]);
  sqlite3_close(s->rdb);
  sqlite3_close(s->db);
  if (s->lock_fd >= 0) close(s->lock_fd);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->wake);
  pthread_cond_destroy(&s->idle);
  pthread_mutex_destroy(&s->read_lock);
  fc__sqlite_chans_free(s);
  free(s);
}

static uint64_t sqlite_last_seq(fc_store_t *base) { return atomic_load(&((fc__sqlite_t *)base)->last_seq); }

static fc_store_channel_t channel_counters(sqlite3_stmt *st, int col) {
  return (fc_store_channel_t){(uint64_t)sqlite3_column_int64(st, col), (uint64_t)sqlite3_column_int64(st, col + 1),
                              (uint64_t)sqlite3_column_int64(st, col + 2), (uint64_t)sqlite3_column_int64(st, col + 3)};
}

static int done_reset(sqlite3_stmt *st, int rc) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int sqlite_channels(fc_store_t *base, const char *after, unsigned limit,
                           void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud) {
  fc__sqlite_t *s = (fc__sqlite_t *)base;
  pthread_mutex_lock(&s->read_lock);
  sqlite3_stmt *st = s->rlist;
  sqlite3_bind_text(st, 1, after, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    fc_store_channel_t c = channel_counters(st, 1);
    each(ud, (const char *)sqlite3_column_text(st, 0), &c);
    n++;
  }
  rc = done_reset(st, rc);
  pthread_mutex_unlock(&s->read_lock);
  if (rc != SQLITE_OK) {
    fc_log(FC_LOG_ERROR, "store read failed", "what=channels error=\"%s\"", sqlite3_errstr(rc));
    return -EIO;
  }
  return n;
}

/* Calls `each` for the channel's newest `limit` events, oldest first. Read lock held. */
static int load_tail(fc__sqlite_t *s, int64_t id, unsigned limit, void (*each)(void *ud, const fc_store_event_t *ev),
                     void *ud) {
  sqlite3_stmt *st = s->rtail;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, limit);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    fc_store_event_t ev = {
        .seq = (uint64_t)sqlite3_column_int64(st, 0),
        .n = (uint64_t)sqlite3_column_int64(st, 1),
        .time_ms = sqlite3_column_int64(st, 2),
        .name = {(const char *)sqlite3_column_text(st, 3), (size_t)sqlite3_column_bytes(st, 3)},
        .data = {(const char *)sqlite3_column_blob(st, 4), (size_t)sqlite3_column_bytes(st, 4)},
        .is_json = sqlite3_column_int(st, 5) != 0,
        .from = {(const char *)sqlite3_column_text(st, 6), (size_t)sqlite3_column_bytes(st, 6)},
    };
    each(ud, &ev);
  }
  return done_reset(st, rc);
}

static int sqlite_load(fc_store_t *base, const char *channel, unsigned limit, fc_store_channel_t *out,
                       void (*each)(void *ud, const fc_store_event_t *ev), void *ud) {
  fc__sqlite_t *s = (fc__sqlite_t *)base;
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&s->read_lock);
  /* One read transaction: the counters and the tail are one snapshot. */
  int rc = step_reset(s->rbegin), found = 0;
  if (rc == SQLITE_OK) {
    sqlite3_stmt *st = s->rchannel;
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    int64_t id = 0;
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      id = sqlite3_column_int64(st, 0);
      *out = channel_counters(st, 1);
      found = 1;
    }
    rc = done_reset(st, rc);
    if (rc == SQLITE_OK && found) rc = load_tail(s, id, limit, each, ud);
    int end = step_reset(s->rend);
    if (rc == SQLITE_OK) rc = end;
  }
  pthread_mutex_unlock(&s->read_lock);
  if (rc != SQLITE_OK) {
    fc_log(FC_LOG_ERROR, "store read failed", "channel=%s error=\"%s\"", channel, sqlite3_errstr(rc));
    return -EIO;
  }
  return found;
}

int fc_store_backup(const char *dir, const char *path, char *err, size_t errlen) {
  char src[4096];
  snprintf(src, sizeof src, "%s/flowcast.db", dir);
  if (access(src, R_OK) < 0) {
    int e = errno;
    snprintf(err, errlen, "no database at %s: %s", src, strerror(e));
    return -e;
  }
  sqlite3 *from = open_db(src, SQLITE_OPEN_READONLY, err, errlen);
  if (!from) return -EIO;
  sqlite3 *to = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
  int rc = -EIO;
  if (to) {
    sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
    int step = b ? sqlite3_backup_step(b, -1) : SQLITE_ERROR;
    if (b) sqlite3_backup_finish(b);
    if (step == SQLITE_DONE) rc = 0;
    else snprintf(err, errlen, "backup to %s failed: %s", path, sqlite3_errmsg(to));
  }
  sqlite3_close(to);
  sqlite3_close(from);
  return rc;
}

static bool sqlite_stats(fc_store_t *base, fc_store_stats_t *out) {
  fc__sqlite_t *s = (fc__sqlite_t *)base;
  out->groups = atomic_load(&s->groups);
  out->events = atomic_load(&s->events);
  out->failures = atomic_load(&s->failures);
  out->trimmed = atomic_load(&s->trimmed);
  return true;
}
