/* jobs internals: workflow definitions, jobs and the runner state. */
#ifndef FC_JOBS_INTERNAL_H
#define FC_JOBS_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>

#include "api/api.h"
#include "jobs/cron.h"
#include "jobs/jobs.h"

/* A loaded workflow. Refcounted: a reload replaces the list while jobs still
 * run the old definition. */
typedef struct wf {
  int refs;
  int64_t id;
  char *name, *description, *file;
  json_t *def;   /* the whole file */
  json_t *tasks; /* borrowed from def: an array of validated task objects */
  fc_sub_link_t *links; /* one per channel trigger, subscribed on loop 0 */
  size_t nlinks;
  fc_cron_t *crons;     /* cron triggers */
  int64_t *cron_next;   /* [ncrons] next firing, s since the epoch; -1: never */
  size_t ncrons;
  unsigned max_running; /* maxConcurrent; 0: only the global --max-jobs */
  unsigned running;     /* its jobs running now (Running, Suspended, Waiting) */
  struct fc_jobs *owner;
  struct wf *next;
} wf_t;

typedef enum {
  ST_PENDING, ST_RUNNING, ST_SUSPENDED, ST_WAITING,
  ST_DONE, ST_FAILED, ST_WARNING, ST_STOPPED, ST_REJECTED
} job_status_t;
extern const char *const job_status_names[];
#define ST_FINAL(s) ((s) >= ST_DONE)

typedef struct job {
  char id[40];
  int64_t wf_id;
  wf_t *wf;            /* NULL for a job loaded from storage */
  char *name, *description;
  job_status_t status;
  char *reason;        /* why it failed, or NULL */
  char *input;         /* FLOWCAST_INPUT, or NULL */
  size_t task;         /* index of the current task */
  bool warning;        /* a continueOnError task failed */
  bool stop_requested;
  int64_t created_ms, started_ms, ended_ms;
  uint64_t final_seq;  /* id of the final event once committed */
  /* wait task and exec timeout */
  uv_timer_t timer;
  bool timer_init;
  uint64_t remaining_ms; /* while suspended */
  uint64_t timer_started;
  /* exec task */
  uv_process_t proc;
  uv_pipe_t out, err;
  uv_timer_t grace; /* after exit: how long pipes may stay open */
  int pending;      /* exec handles not yet closed */
  int pid;
  int64_t exit_status;
  int term_signal;
  bool timed_out;
  fc_buf_t line[2]; /* partial stdout/stderr lines */
  struct fc_jobs *owner;
  struct job *next;  /* all jobs, newest first */
  struct job *qnext; /* the pending queue */
} job_t;

struct fc_jobs {
  fc_app_t *app;
  fc_loop_t *loop; /* loop 0 */
  sqlite3 *db;     /* NULL with --storage memory */
  wf_t *wfs;
  job_t *jobs;
  job_t *qhead, *qtail;
  unsigned running, max_running;
  bool stopping;
  uv_async_t async;
  uv_signal_t sighup;
  uv_timer_t cron; /* once a second: cron triggers and the counts below */
  atomic_uint counts[ST_REJECTED + 1]; /* jobs by status, at most a second old */
  pthread_mutex_t lock; /* guards inbox and done */
  fc_jobs_cmd_t *inbox;
  fc_jobs_cmd_t **done; /* [threads] */
};

/* workflow.c */
wf_t *fc__wf_load_dir(fc_jobs_t *j, const char *dir, size_t *n);
void fc__wf_unref(wf_t *w);
wf_t *fc__wf_find(fc_jobs_t *j, int64_t id);
void fc__wf_json(fc_buf_t *b, const wf_t *w);
void fc__wf_triggers(fc_jobs_t *j, wf_t *w, bool on);
/* Starts the jobs whose cron time has come. Loop 0. */
void fc__wf_cron_tick(fc_jobs_t *j, int64_t now_s);
/* runner.c */
job_t *fc__job_find(fc_jobs_t *j, const char *id);
void fc__job_publish(job_t *job, const char *channel, const char *event, const char *data, bool is_json);
void fc__job_log(job_t *job, const char *stream, const char *line, size_t n);
void fc__job_task_ended(job_t *job, bool ok, const char *why);
/* Arms the job's timer: an exec timeout while a child runs. */
void fc__job_timer(job_t *job, uint64_t ms);
job_t *fc__job_new(fc_jobs_t *j, const char *id, int64_t wf_id);
void fc__job_fail_stale(job_t *job);
/* jobs.c: the command queue and lifecycle */
/* exec.c */
int fc__exec_start(job_t *job, json_t *task, char *why, size_t whylen);
void fc__exec_signal(job_t *job, int sig);
/* db.c */
void fc__db_save_job(fc_jobs_t *j, const job_t *job);
void fc__db_save_task(fc_jobs_t *j, const job_t *job, const char *type, const char *status, int64_t code,
                      int64_t started, int64_t ended);
void fc__db_load(fc_jobs_t *j);

#endif
