/* The SQLite writer thread: group commit, then the batches' callbacks in
 * commit order, then trims by retention in transactions of their own. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "store/internal.h"

void fc__sqlite_append(fc_store_t *base, fc_store_batch_t *b) {
  fc__sqlite_t *s = (fc__sqlite_t *)base;
  b->next = NULL;
  pthread_mutex_lock(&s->lock);
  if (s->tail) s->tail->next = b;
  else s->head = b;
  s->tail = b;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
}

/* ---- the channel table ---------------------------------------------------- */

static void chans_resize(fc__sqlite_t *s, size_t cap) {
  sq_chan_t **b = fc_xcalloc(cap, sizeof *b);
  for (size_t i = 0; i < s->chans_cap; i++) {
    for (sq_chan_t *c = s->chans[i], *next; c; c = next) {
      next = c->next;
      c->next = b[c->hash & (cap - 1)];
      b[c->hash & (cap - 1)] = c;
    }
  }
  free(s->chans);
  s->chans = b;
  s->chans_cap = cap;
}

sq_chan_t *fc__sqlite_chan(fc__sqlite_t *s, const char *name) {
  uint32_t h = fc_hash_fnv1a(name, strlen(name));
  if (!s->chans_cap) chans_resize(s, 64);
  for (sq_chan_t *c = s->chans[h & (s->chans_cap - 1)]; c; c = c->next)
    if (c->hash == h && !strcmp(c->name, name)) return c;
  if (s->nchans >= s->chans_cap) chans_resize(s, s->chans_cap * 2);
  size_t len = strlen(name);
  sq_chan_t *c = fc_xcalloc(1, sizeof *c + len + 1);
  memcpy(c->name, name, len + 1);
  c->hash = h;
  c->next = s->chans[h & (s->chans_cap - 1)];
  s->chans[h & (s->chans_cap - 1)] = c;
  s->nchans++;
  return c;
}

/* Drops the entries nothing needs now (not waiting for a trim); they are
 * read again from the database on their next use. Between groups. */
static void chans_prune(fc__sqlite_t *s) {
  if (s->nchans <= CHANS_MAX) return;
  for (size_t i = 0; i < s->chans_cap; i++) {
    for (sq_chan_t **pp = &s->chans[i], *c; (c = *pp);) {
      if (c->trim_listed) {
        pp = &c->next;
        continue;
      }
      *pp = c->next;
      free(c);
      s->nchans--;
    }
  }
}

void fc__sqlite_chans_free(fc__sqlite_t *s) {
  for (size_t i = 0; i < s->chans_cap; i++) {
    for (sq_chan_t *c = s->chans[i], *next; c; c = next) {
      next = c->next;
      free(c);
    }
  }
  free(s->chans);
  s->chans = NULL;
  s->nchans = s->chans_cap = 0;
}

/* ---- commit --------------------------------------------------------------- */

static int step_reset(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* The channel's row id, created on first use; first_seq is the id its first
 * event gets (0: none in this batch). */
static int channel_id(fc__sqlite_t *s, sq_chan_t *c, uint64_t first_seq) {
  if (c->id) return SQLITE_OK;
  sqlite3_bind_text(s->ins_channel, 1, c->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s->ins_channel, 2, (int64_t)first_seq);
  int rc = sqlite3_step(s->ins_channel);
  if (rc == SQLITE_ROW) {
    c->id = sqlite3_column_int64(s->ins_channel, 0);
    c->id_group = s->group;
    rc = SQLITE_OK;
  }
  sqlite3_reset(s->ins_channel);
  sqlite3_clear_bindings(s->ins_channel);
  return rc;
}

/* Writes the channel's last id and next ordinal into its row, which commits
 * leave behind: due before a delete that may take its newest event. */
static int settle(fc__sqlite_t *s, int64_t id) {
  sqlite3_bind_int64(s->settle_channel, 1, id);
  return step_reset(s->settle_channel);
}

static int purge_batch(fc__sqlite_t *s, sq_chan_t *c) {
  int rc = settle(s, c->id);
  if (rc != SQLITE_OK) return rc;
  sqlite3_stmt *st;
  rc = sqlite3_prepare_v2(s->db, "DELETE FROM events WHERE channel_id=?", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, c->id);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
  }
  sqlite3_finalize(st);
  return rc;
}

/* Numbers one batch (its submitter gives the ids) and writes its events.
 * The channel's row is not written: its newest event says as much. */
static int write_batch(fc__sqlite_t *s, fc_store_batch_t *b) {
  sq_chan_t *c = fc__sqlite_chan(s, b->channel);
  c->used_group = s->group;
  if (b->keep) c->keep = b->keep;
  if (!b->purge && b->n) b->number(b);
  int rc = channel_id(s, c, b->purge || !b->n ? 0 : b->events[0].seq);
  if (rc != SQLITE_OK) return rc;
  if (b->purge) return purge_batch(s, c);
  for (size_t i = 0; i < b->n && rc == SQLITE_OK; i++) {
    const fc_store_event_t *ev = &b->events[i];
    sqlite3_stmt *st = s->ins_event;
    sqlite3_bind_int64(st, 1, (int64_t)ev->seq);
    sqlite3_bind_int64(st, 2, c->id);
    sqlite3_bind_int64(st, 3, (int64_t)ev->n);
    sqlite3_bind_int64(st, 4, ev->time_ms);
    sqlite3_bind_text(st, 5, ev->name.base ? ev->name.base : "", (int)ev->name.len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, ev->data.base ? ev->data.base : "", (int)ev->data.len, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, ev->is_json);
    sqlite3_bind_text(st, 8, ev->from.base ? ev->from.base : "", (int)ev->from.len, SQLITE_STATIC);
    rc = step_reset(st);
  }
  if (rc == SQLITE_OK && b->n) c->next_n = b->events[b->n - 1].n + 1;
  return rc;
}

/* Commits every batch of the group in one transaction, then runs their
 * callbacks, in order. */
static void commit_group(fc__sqlite_t *s, fc_store_batch_t *batches) {
  chans_prune(s);
  s->group++;
  uint64_t last = atomic_load(&s->last_seq);
  size_t nevents = 0;
  int rc = step_reset(s->begin);
  for (fc_store_batch_t *b = batches; b && rc == SQLITE_OK; b = b->next) {
    rc = write_batch(s, b);
    nevents += b->purge ? 0 : b->n;
    if (!b->purge && b->n) last = b->events[b->n - 1].seq;
  }
  if (rc == SQLITE_OK) rc = step_reset(s->commit);
  if (rc != SQLITE_OK) {
    int status = rc == SQLITE_FULL ? -ENOSPC : -EIO;
    fc_log(FC_LOG_ERROR, "store commit failed", "error=\"%s\" jobs_refused=true", sqlite3_errstr(rc));
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    for (fc_store_batch_t *j = batches; j; j = j->next) { /* rows made in the group are gone too */
      sq_chan_t *c = fc__sqlite_chan(s, j->channel);
      if (c->id_group == s->group) c->id = 0;
      c->next_n = 0; /* read afresh before a trim */
    }
    for (fc_store_batch_t *j = batches, *next; j; j = next) {
      next = j->next;
      j->status = status;
      atomic_fetch_add(&s->failures, 1);
      j->done(j);
    }
    return;
  }
  atomic_store(&s->last_seq, last);
  atomic_fetch_add(&s->groups, 1);
  atomic_fetch_add(&s->events, nevents);
  for (fc_store_batch_t *j = batches, *next; j; j = next) {
    next = j->next;
    j->status = 0;
    j->done(j);
  }
}

/* ---- trim ----------------------------------------------------------------- */

/* Trims channels past their retention, a bounded batch per call, in a
 * transaction opened only when some channel is due. A channel is due once a
 * quarter of what it keeps (at least TRIM_MIN events) can go: trimming each
 * publish's worth would cost a commit per group. Returns true when there may
 * be more to trim. */
static bool trim_some(fc__sqlite_t *s, sq_chan_t **touched, size_t n) {
  bool more = false, open = false;
  for (size_t i = 0; i < n; i++) {
    sq_chan_t *c = touched[i];
    /* A second retention's worth stays stored so that, after a restart, gap
     * counts are as exact as before it (see fc_hub_restore_event). */
    uint64_t keep = (uint64_t)c->keep * 2;
    if (!c->id || !c->next_n || c->next_n <= keep + 1) continue;
    uint64_t below = c->next_n - keep, slack = keep / 4 > TRIM_MIN ? keep / 4 : TRIM_MIN;
    if (below <= c->trimmed_n + slack) continue;
    if (!open && step_reset(s->begin) != SQLITE_OK) return false;
    open = true;
    if (settle(s, c->id) != SQLITE_OK) continue;
    sqlite3_bind_int64(s->trim_count, 1, c->id);
    sqlite3_bind_int64(s->trim_count, 2, (int64_t)below);
    sqlite3_bind_int64(s->trim_count, 3, TRIM_BATCH);
    if (step_reset(s->trim_count) != SQLITE_OK) continue;
    int changed = sqlite3_changes(s->db);
    atomic_fetch_add(&s->trimmed, (unsigned)changed);
    if (changed == TRIM_BATCH) more = true;
    else c->trimmed_n = below;
  }
  if (open) step_reset(s->commit);
  return more;
}

/* Deletes stored events past their age limit (a bounded batch per rule),
 * then tells the owner of memory (opts.aged). */
static void trim_by_age(fc__sqlite_t *s) {
  int64_t now = fc_now_ms();
  for (size_t i = 0; i < s->opts.nages; i++) {
    const fc_store_age_rule_t *r = &s->opts.ages[i];
    if (!r->max_age_s) continue;
    int64_t cutoff = now - (int64_t)r->max_age_s * 1000;
    sqlite3_bind_text(s->settle_aged, 1, r->pattern, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->settle_aged, 2, cutoff);
    if (step_reset(s->settle_aged) != SQLITE_OK) continue;
    sqlite3_stmt *st = s->trim_age;
    sqlite3_bind_text(st, 1, r->pattern, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, cutoff);
    sqlite3_bind_int64(st, 3, TRIM_BATCH);
    if (step_reset(st) == SQLITE_OK) atomic_fetch_add(&s->trimmed, (unsigned)sqlite3_changes(s->db));
  }
  if (s->opts.aged) s->opts.aged(s->opts.aged_ud, now);
}

static bool has_age_rules(const fc__sqlite_t *s) {
  for (size_t i = 0; i < s->opts.nages; i++)
    if (s->opts.ages[i].max_age_s) return true;
  return false;
}

/* Called with the lock held and batches queued. Publishers that came
 * together last time are likely to again: a short wait lets more of them
 * join this group, and a commit's cost (about 40 us here: locks, WAL frames)
 * is shared by more events. A lone publisher never waits. The lock is not
 * held while waiting. */
static void gather(fc__sqlite_t *s) {
  if (!s->opts.commit_delay_us || !s->head || s->stopping || s->last_batches < 2) return;
  pthread_mutex_unlock(&s->lock);
  struct timespec d = {0, (long)s->opts.commit_delay_us * 1000};
  nanosleep(&d, NULL);
  pthread_mutex_lock(&s->lock);
}

/* Adds the group's channels to the trim list (once each). */
static void list_touched(fc__sqlite_t *s, fc_store_batch_t *batches, sq_chan_t ***touched, size_t *n, size_t *cap) {
  for (fc_store_batch_t *b = batches; b; b = b->next) {
    sq_chan_t *c = fc__sqlite_chan(s, b->channel);
    if (c->trim_listed) continue;
    c->trim_listed = true;
    if (*n == *cap) *touched = fc_xrealloc(*touched, (*cap = *cap ? *cap * 2 : 64) * sizeof **touched);
    (*touched)[(*n)++] = c;
  }
}

void *fc__store_writer(void *arg) {
  fc__sqlite_t *s = arg;
  pthread_setname_np(pthread_self(), "fc-writer");
  /* gather()'s waits are short: the default 50 us of timer slack would double them. */
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  sq_chan_t **touched = NULL;
  size_t ntouched = 0, cap = 0;
  bool aging = has_age_rules(s);
  uint64_t last_age_trim = 0;
  pthread_mutex_lock(&s->lock);
  for (;;) {
    if (!s->head && !s->stopping && ntouched == 0) {
      if (aging) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
      } else {
        pthread_cond_wait(&s->wake, &s->lock);
      }
    }
    gather(s);
    fc_store_batch_t *batches = s->head;
    s->head = s->tail = NULL;
    bool stop = s->stopping && !batches;
    pthread_mutex_unlock(&s->lock);
    s->last_batches = 0;
    for (fc_store_batch_t *b = batches; b; b = b->next) s->last_batches++;

    if (batches) {
      /* The list is made before the commit: `done` may free a batch. */
      list_touched(s, batches, &touched, &ntouched, &cap);
      commit_group(s, batches);
    }
    /* Trimming waits while publishes are queued: they come first. */
    pthread_mutex_lock(&s->lock);
    bool busy = s->head != NULL;
    pthread_mutex_unlock(&s->lock);
    if ((!busy || stop) && ntouched) {
      bool more = trim_some(s, touched, ntouched);
      if (!more) {
        for (size_t i = 0; i < ntouched; i++) touched[i]->trim_listed = false;
        ntouched = 0;
      }
    }
    if (aging && fc_mono_ms() - last_age_trim >= 1000) {
      last_age_trim = fc_mono_ms();
      trim_by_age(s);
    }
    pthread_mutex_lock(&s->lock);
    if (stop) break;
  }
  pthread_mutex_unlock(&s->lock);
  free(touched);
  return NULL;
}
