/* The writer thread: group commit, then publish to the hub in commit order,
 * then trim by retention in transactions of their own. */
#include <errno.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#include "store/internal.h"

void fc_store_submit(fc_store_t *s, fc_store_job_t *job) {
  job->next = NULL;
  pthread_mutex_lock(&s->lock);
  if (s->tail)
    s->tail->next = job;
  else
    s->head = job;
  s->tail = job;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
}

static int step_reset(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* The channel's row id, created on first use; first_seq is the id its first
 * event gets (0: none in this job). */
static int channel_id(fc_store_t *s, fc_channel_t *ch, uint64_t first_seq, int64_t *id) {
  fc_channel_store_t *cs = fc_channel_store(ch);
  if (cs->id) {
    *id = cs->id;
    return SQLITE_OK;
  }
  sqlite3_bind_text(s->ins_channel, 1, fc_channel_name(ch), -1, SQLITE_STATIC);
  sqlite3_bind_int64(s->ins_channel, 2, (int64_t)first_seq);
  int rc = sqlite3_step(s->ins_channel);
  if (rc == SQLITE_ROW) {
    cs->id = sqlite3_column_int64(s->ins_channel, 0);
    cs->id_group = s->group;
    rc = SQLITE_OK;
  }
  sqlite3_reset(s->ins_channel);
  sqlite3_clear_bindings(s->ins_channel);
  *id = cs->id;
  return rc;
}

/* Writes the channel's last id and next ordinal into its row, which commits
 * leave behind: due before a delete that may take its newest event. */
static int settle(fc_store_t *s, int64_t id) {
  sqlite3_bind_int64(s->settle_channel, 1, id);
  return step_reset(s->settle_channel);
}

/* Writes one job's events; gives them ids, ordinals and a time. The
 * channel's row is not written: its newest event says as much. */
static int write_job(fc_store_t *s, fc_store_job_t *job, uint64_t *seq, int64_t now) {
  int64_t id;
  int rc = channel_id(s, job->channel, job->purge ? 0 : *seq + 1, &id);
  if (rc != SQLITE_OK) return rc;
  fc_channel_store_t *cs = fc_channel_store(job->channel);
  if (job->purge) {
    if ((rc = settle(s, id)) != SQLITE_OK) return rc;
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(s->db, "DELETE FROM events WHERE channel_id=?", -1, &st, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
    }
    sqlite3_finalize(st);
    return rc;
  }
  if (cs->group != s->group) { /* first job of this channel in the group */
    cs->group = s->group;
    cs->next_n = fc_channel_next_n(s->opts.hub, job->channel);
  }
  for (size_t i = 0; i < job->n && rc == SQLITE_OK; i++) {
    fc_event_in_t *ev = &job->events[i];
    ev->seq = ++*seq;
    ev->n = cs->next_n++;
    ev->time_ms = now;
    sqlite3_stmt *st = s->ins_event;
    sqlite3_bind_int64(st, 1, (int64_t)ev->seq);
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_int64(st, 3, (int64_t)ev->n);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, ev->name.base ? ev->name.base : "", (int)ev->name.len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, ev->data.base ? ev->data.base : "", (int)ev->data.len, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, ev->is_json);
    sqlite3_bind_text(st, 8, ev->from.base ? ev->from.base : "", (int)ev->from.len, SQLITE_STATIC);
    rc = step_reset(st);
  }
  return rc;
}

/* Commits every job of the group in one transaction, then hands the events to
 * the hub and runs the callbacks, in order. */
static void commit_group(fc_store_t *s, fc_store_job_t *jobs) {
  s->group++;
  uint64_t seq = s->last_seq;
  int64_t now = fc_now_ms();
  size_t nevents = 0;
  int rc = step_reset(s->begin);
  for (fc_store_job_t *j = jobs; j && rc == SQLITE_OK; j = j->next) {
    rc = write_job(s, j, &seq, now);
    nevents += j->n;
  }
  if (rc == SQLITE_OK) rc = step_reset(s->commit);
  if (rc != SQLITE_OK) {
    int status = rc == SQLITE_FULL ? -ENOSPC : -EIO;
    fc_log(FC_LOG_ERROR, "store commit failed", "error=\"%s\" jobs_refused=true", sqlite3_errstr(rc));
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    for (fc_store_job_t *j = jobs; j; j = j->next) { /* rows made in the group are gone too */
      fc_channel_store_t *cs = fc_channel_store(j->channel);
      if (cs->id_group == s->group) cs->id = 0;
    }
    s->group++; /* ordinals handed out above were not used: read them afresh */
    for (fc_store_job_t *j = jobs, *next; j; j = next) {
      next = j->next;
      j->status = status;
      atomic_fetch_add(&s->failures, 1);
      j->done(j);
    }
    return;
  }
  s->last_seq = seq;
  atomic_fetch_add(&s->groups, 1);
  atomic_fetch_add(&s->events, nevents);
  for (fc_store_job_t *j = jobs, *next; j; j = next) {
    next = j->next;
    j->status = 0;
    if (j->purge)
      fc_hub_purge(s->opts.hub, j->channel);
    else
      fc_hub_publish(s->opts.hub, j->channel, j->events, j->n, &j->result);
    j->done(j);
  }
}

/* Trims channels past their retention, a bounded batch per call, in a
 * transaction opened only when some channel is due. A channel is due once a
 * quarter of what it keeps (at least TRIM_MIN events) can go: trimming each
 * publish's worth would cost a commit per group. Returns true when there may
 * be more to trim. */
static bool trim_some(fc_store_t *s, fc_channel_t **touched, size_t n) {
  bool more = false, open = false;
  for (size_t i = 0; i < n; i++) {
    fc_channel_store_t *cs = fc_channel_store(touched[i]);
    /* A second retention's worth stays stored so that, after a restart, gap
     * counts are as exact as before it (see fc_hub_restore_event). */
    unsigned keep = fc_channel_retention(touched[i]) * 2;
    uint64_t next_n = fc_channel_next_n(s->opts.hub, touched[i]);
    if (!cs->id || next_n <= keep + 1) continue;
    uint64_t below = next_n - keep, slack = keep / 4 > TRIM_MIN ? keep / 4 : TRIM_MIN;
    if (below <= cs->trimmed_n + slack) continue;
    if (!open && step_reset(s->begin) != SQLITE_OK) return false;
    open = true;
    if (settle(s, cs->id) != SQLITE_OK) continue;
    sqlite3_bind_int64(s->trim_count, 1, cs->id);
    sqlite3_bind_int64(s->trim_count, 2, (int64_t)below);
    sqlite3_bind_int64(s->trim_count, 3, TRIM_BATCH);
    if (step_reset(s->trim_count) != SQLITE_OK) continue;
    int changed = sqlite3_changes(s->db);
    atomic_fetch_add(&s->trimmed, (unsigned)changed);
    if (changed == TRIM_BATCH)
      more = true;
    else
      cs->trimmed_n = below;
  }
  if (open) step_reset(s->commit);
  return more;
}

/* Deletes stored events past their age limit (a bounded batch per rule), and
 * expires them from the hub's history. */
static void trim_by_age(fc_store_t *s) {
  int64_t now = fc_now_ms();
  for (size_t i = 0; i < s->opts.nrules; i++) {
    const fc_hub_rule_t *r = &s->opts.rules[i];
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
  fc_hub_expire(s->opts.hub, now);
}

static bool has_age_rules(const fc_store_t *s) {
  for (size_t i = 0; i < s->opts.nrules; i++)
    if (s->opts.rules[i].max_age_s) return true;
  return false;
}

/* Called with the lock held and jobs queued. Publishers that came together
 * last time are likely to again: a short wait lets more of them join this
 * group, and a commit's cost (about 40 us here: locks, WAL frames) is shared
 * by more events. A lone publisher never waits. The lock is not held while
 * waiting. */
static void gather(fc_store_t *s) {
  if (!s->opts.commit_delay_us || !s->head || s->stopping || s->last_jobs < 2) return;
  pthread_mutex_unlock(&s->lock);
  struct timespec d = {0, (long)s->opts.commit_delay_us * 1000};
  nanosleep(&d, NULL);
  pthread_mutex_lock(&s->lock);
}

void *fc__store_writer(void *arg) {
  fc_store_t *s = arg;
  pthread_setname_np(pthread_self(), "fc-writer");
  /* gather()'s waits are short: the default 50 us of timer slack would double them. */
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  fc_channel_t **touched = NULL;
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
    fc_store_job_t *jobs = s->head;
    s->head = s->tail = NULL;
    bool stop = s->stopping && !jobs;
    pthread_mutex_unlock(&s->lock);
    s->last_jobs = 0;
    for (fc_store_job_t *j = jobs; j; j = j->next) s->last_jobs++;

    for (fc_store_job_t *j = jobs; j; j = j->next) {
      fc_channel_store_t *cs = fc_channel_store(j->channel);
      if (cs->trim_listed) continue;
      cs->trim_listed = true;
      fc_channel_ref(j->channel); /* the list outlives the job */
      if (ntouched == cap) touched = fc_xrealloc(touched, (cap = cap ? cap * 2 : 64) * sizeof *touched);
      touched[ntouched++] = j->channel;
    }
    if (jobs) commit_group(s, jobs);
    /* Trimming waits while publishes are queued: they come first. */
    pthread_mutex_lock(&s->lock);
    bool busy = s->head != NULL;
    pthread_mutex_unlock(&s->lock);
    if ((!busy || stop) && ntouched) {
      bool more = trim_some(s, touched, ntouched);
      if (!more) {
        for (size_t i = 0; i < ntouched; i++) {
          fc_channel_store(touched[i])->trim_listed = false;
          fc_channel_unref(touched[i]);
        }
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
  for (size_t i = 0; i < ntouched; i++) fc_channel_unref(touched[i]);
  free(touched);
  return NULL;
}
