/* jobq: workflow jobs shared by the nodes of a cluster, in Redis — their
 * records, the queue of jobs waiting to run, the nodes' leases and the notes
 * nodes leave each other (control requests, reload notices). Cluster mode
 * only; one node's jobs live in records.h.
 *
 * Keys (in the --redis database):
 *   fc:job:ID        hash: the job's record (fields below)
 *   fc:jobs:WF       sorted set: WF's jobs by creation time (ms); the newest
 *                    FC_JOBQ_KEEP per workflow are kept, older records go
 *   fc:jobq          list: ids of jobs waiting to run, oldest first
 *   fc:running       hash: id -> node, the jobs claimed and not yet ended
 *   fc:wfrun         hash: workflow -> its jobs in fc:running (maxConcurrent)
 *   fc:node:NODE     a node's lease (PX); fc:nodes: live nodes by lease end
 *   fc:ctl:NODE      list: notes for NODE; fc:ctlr:KEY: an answer
 *   fc:wfdef         hash: workflow -> the hash of its definition
 *
 * A handle is one blocking connection, used by one thread at a time. A call
 * that cannot reach Redis fails fast (-ENOTCONN) for a second after a failed
 * connect, so that a caller on an event loop is not held while Redis is away.
 * Returns are 0 (or a count) or a negative errno; fc_jobq_error says why. */
#ifndef FC_STORE_JOBQ_H
#define FC_STORE_JOBQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Records kept per workflow. */
#define FC_JOBQ_KEEP 10000

typedef struct fc_jobq fc_jobq_t;

/* A job's record. Strings are borrowed when saved; owned by fc_jobq_rows_t
 * when read. NULL (or 0) is "none". */
typedef struct {
  const char *id;
  int64_t wf;
  const char *status; /* the jobs module's names: "Pending", "Running", ... */
  const char *reason, *input, *starter, *name, *description;
  const char *node; /* the node that claimed it */
  int64_t created_ms, started_ms, ended_ms;
  uint64_t final_seq; /* its final event's id */
  uint64_t task;      /* index of its current task */
  unsigned max;       /* its workflow's maxConcurrent when it was queued (0: none) */
} fc_jobq_row_t;

typedef struct {
  fc_jobq_row_t *rows;
  size_t n;
} fc_jobq_rows_t;
void fc_jobq_rows_dispose(fc_jobq_rows_t *r);

/* Opens a handle on the Redis at `url` (redis.c's URL form) and connects.
 * NULL with `err` for a bad URL or an unreachable Redis. Any thread. */
fc_jobq_t *fc_jobq_open(const char *url, char *err, size_t errlen);
void fc_jobq_close(fc_jobq_t *q);
const char *fc_jobq_error(const fc_jobq_t *q);

/* Saves a record (every field of `row`), lists it under its workflow and,
 * when `final`, takes it out of fc:running (its workflow's count drops).
 * Returns 0, -ENOTCONN or -EIO. */
int fc_jobq_save(fc_jobq_t *q, const fc_jobq_row_t *row, bool final);
/* Saves a new Pending record unless `max_queued` (0: no cap) jobs already
 * wait: 0, -EAGAIN (nothing saved), -ENOTCONN or -EIO. The job waits in no
 * queue until fc_jobq_push. */
int fc_jobq_create(fc_jobq_t *q, const fc_jobq_row_t *row, unsigned max_queued);
/* Appends job `id` to the queue: 1; 0 when fc_jobq_unqueue came first (the
 * job is to end Stopped, by the caller); 2 when fc_jobq_stranded took the
 * job over meanwhile (nothing to do); -ENOTCONN or -EIO. `swept`: the caller
 * got the job from fc_jobq_stranded. */
int fc_jobq_push(fc_jobq_t *q, const char *id, bool swept);
/* Takes over the Pending jobs created before `before_ms` and never queued
 * (their node died, or lost Redis, between fc_jobq_create and fc_jobq_push):
 * reads their records into `out` for the caller to queue (fc_jobq_push with
 * `swept`). Exactly one caller gets each job. 0 or an error. */
int fc_jobq_stranded(fc_jobq_t *q, int64_t before_ms, fc_jobq_rows_t *out);
/* Takes the oldest queued job whose workflow is below its maxConcurrent in
 * the cluster, for `node`: fills `id` and returns 1; 0 when none can run;
 * -ENOTCONN or -EIO. Exactly one node gets each job. */
int fc_jobq_claim(fc_jobq_t *q, const char *node, char id[40]);
/* Takes job `id` out of the queue: 1 when it was there (no node will run
 * it: the caller ends it); 2 when it was not queued yet (it never will be:
 * fc_jobq_push's caller ends it); 0 when a node claimed it; or an error. */
int fc_jobq_unqueue(fc_jobq_t *q, const char *id);
/* Reads job `id`: 1 row into `out`, or none (0). Returns 0 or an error. */
int fc_jobq_get(fc_jobq_t *q, const char *id, fc_jobq_rows_t *out);
/* At most `limit` jobs of workflow `wf`, newest first, after job `after`
 * ("" or NULL: from the newest); `*more` is set when jobs follow the page.
 * Returns 0, -EINVAL (`after` is not a job of `wf`) or an error. */
int fc_jobq_page(fc_jobq_t *q, int64_t wf, const char *after, unsigned limit, fc_jobq_rows_t *out, bool *more);

/* Renews `node`'s lease for `lease_ms` (a node whose lease ends is lost).
 * Returns 1 when the lease still held, 0 when it had ended (or is new), or an
 * error. */
int fc_jobq_beat(fc_jobq_t *q, const char *node, unsigned lease_ms);
/* Ends `node`'s lease at once (a clean stop). 0 or an error. */
int fc_jobq_leave(fc_jobq_t *q, const char *node);
/* Marks Failed every claimed job whose node's lease ended, with a reason
 * naming the node; reads those records into `out` (the caller publishes their
 * final events). Exactly one caller gets each job. 0 or an error. */
int fc_jobq_sweep(fc_jobq_t *q, int64_t now_ms, fc_jobq_rows_t *out);

/* Leaves a note (a NUL-free string) for `node`; it expires unread after a
 * minute. 0 or an error. */
int fc_jobq_note(fc_jobq_t *q, const char *node, const char *note);
/* Leaves the note for every live node but `self`. Returns how many. */
int fc_jobq_note_all(fc_jobq_t *q, const char *self, const char *note);
/* Takes up to `max` notes for `node`, oldest first; `each` gets each one
 * (borrowed for the call). Returns how many, or an error. */
int fc_jobq_notes(fc_jobq_t *q, const char *node, unsigned max, void (*each)(void *ud, const char *note), void *ud);
/* Answers under `key` (fc:ctlr:KEY, kept a minute): 0 or an error. */
int fc_jobq_answer(fc_jobq_t *q, const char *key, const char *answer);
/* Takes the answer under `key` into `out` (NUL-terminated): 1, 0 when none
 * yet, or an error. */
int fc_jobq_take_answer(fc_jobq_t *q, const char *key, char *out, size_t outlen);

/* Stores `hash` as workflow `wf`'s definition hash: always when `force`, else
 * only when none is stored. Copies the cluster's hash into `cluster`
 * (NUL-terminated). Returns 0 or an error. */
int fc_jobq_def(fc_jobq_t *q, int64_t wf, const char *hash, bool force, char *cluster, size_t len);

#endif
