/* jobs: workflows (JSON files), the runner of their jobs on loop 0, triggers,
 * and the commands HTTP handlers hand to the runner from any loop. */
#ifndef FC_JOBS_H
#define FC_JOBS_H

#include "http/http.h"
#include "net/net.h"

/* Events a job.* channel keeps: a job's whole stream, so that its final event
 * is never evicted before a subscriber reads it. */
#define FC_JOBS_RETENTION 100000

typedef struct fc_jobs fc_jobs_t;
typedef struct fc_jobs_cmd fc_jobs_cmd_t;
struct fc_app;

/* Job control actions (fc_jobs_control). */
typedef enum { FC_JOB_STOP, FC_JOB_SUSPEND, FC_JOB_RESUME, FC_JOB_APPROVE, FC_JOB_REJECT } fc_job_action_t;

/* Who asks for a job operation, with the rights of their token. */
typedef struct {
  bool all;         /* admin, or authentication off: every right */
  const char *sub;  /* the token's subject; NULL for a trigger or without a token */
  char *const *run; /* workflow id patterns the token may run ("41", "4*", "*") */
  size_t nrun;
} fc_jobs_actor_t;

/* True when `a` may start workflow `wf` and see or control its jobs (a job's
 * control also needs its starter to be `a`, see fc_jobs_control). Any thread. */
bool fc_jobs_may_run(const fc_jobs_actor_t *a, int64_t wf);

/* Default and largest page of GET /jobs (fc_jobs_list_json). */
#define FC_JOBS_PAGE_DEFAULT 100
#define FC_JOBS_PAGE_MAX 1000

/* A request's work for the runner: `run` executes on loop 0, then `done` on
 * the request's loop. The handler owns the command; `done` frees it. */
struct fc_jobs_cmd {
  fc_req_t *req;
  unsigned loop; /* the request's loop */
  void (*run)(fc_jobs_t *j, fc_jobs_cmd_t *c);
  void (*done)(fc_jobs_t *j, fc_jobs_cmd_t *c);
  int action;
  int64_t wf;
  char id[40];
  int status; /* HTTP status the run decided */
  fc_buf_t body; /* JSON body, or an error message */
  uint64_t final_seq; /* the job's final event id, 0 if none yet */
  fc_jobs_actor_t who; /* its sub and run patterns are the command's own copies */
  unsigned limit;      /* GET /jobs: page size */
  char after[40];      /* GET /jobs: the cursor (a job id), or "" */
  char next_after[40]; /* GET /jobs: the cursor of the next page, or "" */
  fc_jobs_cmd_t *next;
};

/* Loads workflows, opens the job tables, marks jobs a dead server left as
 * Failed, and subscribes channel triggers. Call on loop 0's thread before it
 * runs. NULL with `err` (the server then runs without workflows). */
fc_jobs_t *fc_jobs_new(struct fc_app *app, char *err, size_t errlen);
/* Shutdown began: kills running children, closes the runner's handles. Loop 0. */
void fc_jobs_stop(fc_jobs_t *j);
/* Frees everything, after the loops ended. NULL is a no-op. */
void fc_jobs_free(fc_jobs_t *j);
/* Queues `c` for loop 0. Any thread. */
void fc_jobs_post(fc_jobs_t *j, fc_jobs_cmd_t *c);
/* Answers commands whose run ended, on their loop (the loop's wake). */
void fc_jobs_wake(fc_jobs_t *j, fc_loop_t *l);

/* Appends the flowcast_jobs{status=...} gauges. Any thread. */
void fc_jobs_metrics(fc_jobs_t *j, fc_buf_t *out);

/* Loop 0 only, from a command's run: */
/* Starts a job of workflow `wf` with `input` (JSON text or NULL) for
 * `starter` (a token's sub; NULL for a trigger: only admin may control the
 * job); fills `id`. Returns 0, -ENOENT (no such workflow) or -EAGAIN
 * (--max-queued-jobs jobs already wait: nothing was created). */
int fc_jobs_start(fc_jobs_t *j, int64_t wf, const char *input, const char *starter, char id[40]);
/* Applies `a` to a job for `who`, who must be admin or the job's starter (the
 * run right is the caller's to check). Returns 0, -ENOENT (unknown workflow or
 * job), -EPERM (not theirs: nothing changes) or -EBUSY (the job's state does
 * not allow it). */
int fc_jobs_control(fc_jobs_t *j, int64_t wf, const char *id, fc_job_action_t a, const fc_jobs_actor_t *who);
/* JSON of the workflows `who` may run / one workflow / one job into `out`.
 * Return 0 or -ENOENT. */
void fc_jobs_workflows_json(fc_jobs_t *j, const fc_jobs_actor_t *who, fc_buf_t *out);
int fc_jobs_workflow_json(fc_jobs_t *j, int64_t wf, fc_buf_t *out);
int fc_jobs_job_json(fc_jobs_t *j, int64_t wf, const char *id, fc_buf_t *out, uint64_t *final_seq);
/* A page of a workflow's jobs, newest first: at most `limit` jobs after the
 * job `after` ("" or NULL: from the newest). Fills `next` with the cursor of
 * the next page, or "" at the end. Returns 0, -ENOENT (no such workflow and
 * no jobs of it) or -EINVAL (`after` is not a job of this workflow). */
int fc_jobs_list_json(fc_jobs_t *j, int64_t wf, const char *after, unsigned limit, fc_buf_t *out, char next[40]);
/* Reloads the workflow files; returns how many are valid. */
size_t fc_jobs_reload(fc_jobs_t *j);

#endif
