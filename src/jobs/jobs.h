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

/* Loop 0 only, from a command's run: */
/* Starts a job of workflow `wf` with `input` (JSON text or NULL); fills `id`.
 * Returns 0 or -ENOENT (no such workflow). */
/* Appends the flowcast_jobs{status=...} gauges. Any thread. */
void fc_jobs_metrics(fc_jobs_t *j, fc_buf_t *out);

int fc_jobs_start(fc_jobs_t *j, int64_t wf, const char *input, char id[40]);
/* Applies `a` to a job. Returns 0, -ENOENT (unknown workflow or job) or
 * -EBUSY (the job's state does not allow it). */
int fc_jobs_control(fc_jobs_t *j, int64_t wf, const char *id, fc_job_action_t a);
/* JSON of workflows / one workflow / one job / a workflow's jobs into `out`.
 * Return 0 or -ENOENT. */
void fc_jobs_workflows_json(fc_jobs_t *j, fc_buf_t *out);
int fc_jobs_workflow_json(fc_jobs_t *j, int64_t wf, fc_buf_t *out);
int fc_jobs_job_json(fc_jobs_t *j, int64_t wf, const char *id, fc_buf_t *out, uint64_t *final_seq);
int fc_jobs_list_json(fc_jobs_t *j, int64_t wf, fc_buf_t *out);
/* Reloads the workflow files; returns how many are valid. */
size_t fc_jobs_reload(fc_jobs_t *j);

#endif
