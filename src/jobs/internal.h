/* jobs internals: workflow definitions, jobs and the runner state. */
#ifndef FC_JOBS_INTERNAL_H
#define FC_JOBS_INTERNAL_H

#include <jansson.h>
#include <pthread.h>

#include "jobs/cron.h"
#include "jobs/jobs.h"
#include "pub/pub.h"
#include "store/jobq.h"
#include "store/records.h"

/* A loaded workflow. Refcounted: a reload replaces the list while jobs still
 * run the old definition. */
typedef struct wf {
  int refs;
  int64_t id;
  char *name, *description, *file;
  json_t *def;          /* the whole file */
  json_t *tasks;        /* borrowed from def: an array of validated task objects */
  fc_sub_link_t *links; /* one per channel trigger, subscribed on loop 0 */
  size_t nlinks;
  fc_cron_t *crons;   /* cron triggers */
  int64_t *cron_next; /* [ncrons] next firing, s since the epoch; -1: never */
  size_t ncrons;
  unsigned max_running; /* maxConcurrent; 0: only the global --max-jobs */
  unsigned running;     /* its jobs running now (Running, Suspended, Waiting) */
  struct fc_jobs *owner;
  struct wf *next;
} wf_t;

typedef enum {
  ST_PENDING,
  ST_RUNNING,
  ST_SUSPENDED,
  ST_WAITING,
  ST_DONE,
  ST_FAILED,
  ST_WARNING,
  ST_STOPPED,
  ST_REJECTED
} job_status_t;
extern const char *const job_status_names[];
#define ST_FINAL(s) ((s) >= ST_DONE)

typedef struct job {
  char id[40];
  int64_t wf_id;
  wf_t *wf; /* NULL for a job loaded from storage */
  char *name, *description;
  job_status_t status;
  char *reason;  /* why it failed, or NULL */
  char *starter; /* sub of the token that started it; NULL: a trigger (admin controls it) */
  char *input;   /* FLOWCAST_INPUT, or NULL */
  size_t task;   /* index of the current task */
  bool warning;  /* a continueOnError task failed */
  bool stop_requested;
  int64_t created_ms, started_ms, ended_ms;
  uint64_t final_seq; /* id of the final event once committed */
  unsigned task_pubs; /* the current task's events not yet committed */
  bool pub_failed;    /* one of them failed: the task fails */
  bool end_held;      /* the task ended; that waits for task_pubs to reach 0 */
  bool end_ok;
  char *end_why;
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
  struct job *snext; /* the jobs whose row is to be saved (fc__db_defer_save) */
  bool save_queued;  /* on that list */
  struct job *rnext; /* jobs recovered at start-up whose final events are to publish */
} job_t;

typedef struct fc__db_rows fc__db_rows_t; /* job rows read at start-up (db.c) */
typedef struct fc__fwd fc__fwd_t;         /* a control request sent to another node (cluster.c) */

struct fc_jobs {
  fc_jobs_opts_t o;
  fc_loop_t *loop;  /* loop 0 */
  fc_records_t *db; /* NULL with --storage memory */
  wf_t *wfs;
  job_t *jobs;
  job_t *qhead, *qtail;
  unsigned running, max_running;
  unsigned queued, max_queued; /* jobs in the pending queue; --max-queued-jobs */
  bool stopping;
  uv_idle_t idle; /* while there are rows to save or recovered jobs to publish */
  bool idle_init;
  bool loaded;    /* the start-up load ended: commands may run */
  uv_work_t load; /* the start-up load (fc__db_read_rows) */
  fc__db_rows_t *rows;
  job_t *saves;          /* rows to save, in one transaction per loop pass */
  job_t *recover;        /* recovered jobs whose final events are not yet published */
  int64_t refused_log_s; /* when a refused trigger was last logged (s); the count since */
  unsigned refused_unlogged;
  uv_signal_t sighup;
  uv_timer_t cron;                     /* once a second: cron triggers and the counts below */
  atomic_uint counts[ST_REJECTED + 1]; /* jobs by status, at most a second old */
  int rx_cmd, rx_done;                 /* net receivers: commands to loop 0, answers to their loops */
  pthread_mutex_t post_lock;           /* orders fc_jobs_post against fc_jobs_stop */
  bool closed;                         /* under post_lock: fc_jobs_stop ran, commands are answered -ESHUTDOWN */
  fc_jobs_cmd_t *held, *held_tail;     /* commands waiting for the start-up load, oldest first */
  fc_jobs_cmd_t *cur;                  /* the command whose run is on: fc__jobs_defer may hold it */
  bool cur_deferred;
  /* Cluster mode (cluster.c); q is NULL on one node. */
  fc_jobq_t *q;
  char node[160];  /* this process: NAME/RANDOM, its lease's name */
  uv_timer_t tick; /* notes, answers, claims; the lease and the sweep less often */
  bool tick_init;
  uint64_t next_beat; /* fc_mono_ms of the next lease renewal and sweep */
  bool remote;        /* a control request from another node runs: answer from here */
  fc__fwd_t *fwds;    /* control requests waiting for another node's answer */
  pthread_mutex_t defs_lock;
  char defs_differ[256]; /* workflows whose definition differs from the cluster's ("" none) */
};

/* jobs.c */
/* Holds the command whose run is on: its answer waits for fc__jobs_finish.
 * NULL when no command runs (the caller then answers at once). Loop 0. */
fc_jobs_cmd_t *fc__jobs_defer(fc_jobs_t *j);
/* Sends a held command's answer to its loop (its rc set). Loop 0. */
void fc__jobs_finish(fc_jobs_t *j, fc_jobs_cmd_t *c);
/* Reloads the workflow files; `cluster_wide`: this node's definitions become
 * the cluster's and the other nodes reload too. Returns how many are valid. */
size_t fc__jobs_reload(fc_jobs_t *j, bool cluster_wide);
/* Frees a job record. */
void fc__job_free(job_t *job);
/* A job's fields as GET /job shows them. */
typedef struct {
  const char *id, *name, *status, *reason;
  int64_t wf;
  uint64_t task;
  int64_t created_ms, started_ms, ended_ms;
} fc__job_view_t;
void fc__job_view_json(fc_buf_t *b, const fc__job_view_t *v);

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
/* A new job record, in no list yet. */
job_t *fc__job_new(fc_jobs_t *j, const char *id, int64_t wf_id);
/* Publishes a recovered job's status and final events. Loop 0. */
void fc__job_publish_stale(job_t *job);
/* Ends a job with a final status (its events, its row, the queue moves on). */
void fc__job_finish(job_t *job, job_status_t st, const char *reason);
/* Runs a job now (it was Pending and is in no queue). */
void fc__job_run(job_t *job);
/* Gives a new job its timers and puts it first in the jobs list. */
void fc__job_adopt(fc_jobs_t *j, job_t *job);
/* Publishes job's current status (Pending) to its two channels; `stored`
 * runs on loop 0 once the job.{id} one is committed (or failed). */
void fc__job_publish_status_then(job_t *job, fc_pub_answer_cb stored, void *ud);
/* A random job id (a UUID). */
void fc__job_uuid(char out[40]);
/* The status named `s` (Failed for an unknown name). */
job_status_t fc__job_status_of(const char *s);
/* A trigger's start was refused with `rc`: logs it, at most once a second. */
void fc__jobs_trigger_refused(fc_jobs_t *j, int64_t wf, int rc);
/* Starts the loop-0 idle work: deferred row saves and start-up recovery. */
void fc__jobs_kick(fc_jobs_t *j);
/* jobs.c: the command queue and lifecycle */
/* cluster.c: jobs across the nodes of a cluster (--redis) */
/* Opens the cluster's jobs (o.cluster_url): this node's lease, the tick.
 * Returns 0 or -EIO with `err`. Loop 0, from fc_jobs_new. */
int fc__cl_open(fc_jobs_t *j, char *err, size_t errlen);
/* Ends this node's lease (its running jobs fail on another node soon). */
void fc__cl_stop(fc_jobs_t *j);
void fc__cl_free(fc_jobs_t *j);
/* fc_jobs_start in cluster mode: a record and a place in the cluster's queue. */
int fc__cl_start(fc_jobs_t *j, wf_t *w, const char *input, const char *starter, char id[40]);
/* Takes queued jobs from the cluster while this node has room. */
void fc__cl_pump(fc_jobs_t *j);
/* Saves a job's record in Redis. */
void fc__cl_save(fc_jobs_t *j, const job_t *job);
/* fc_jobs_control for a job this node does not hold; may hold the command
 * (-EINPROGRESS) until the node running the job answers. */
int fc__cl_control(fc_jobs_t *j, int64_t wf, const char *id, fc_job_action_t a, const fc_jobs_actor_t *who);
/* GET /job and GET /jobs from the cluster's records. */
int fc__cl_job_json(fc_jobs_t *j, int64_t wf, const char *id, fc_buf_t *out, uint64_t *final_seq);
int fc__cl_list_json(fc_jobs_t *j, int64_t wf, const char *after, unsigned limit, fc_buf_t *out, char next[40]);
/* The workflows were loaded: compares (or, `force`, sets) their definitions'
 * hashes with the cluster's, and with `force` asks the other nodes to reload. */
void fc__cl_defs(fc_jobs_t *j, bool force);
/* exec.c */
int fc__exec_start(job_t *job, json_t *task, char *why, size_t whylen);
void fc__exec_signal(job_t *job, int sig);
/* db.c */
void fc__db_save_job(fc_jobs_t *j, const job_t *job);
void fc__db_save_task(fc_jobs_t *j, const job_t *job, const char *type, const char *status, int64_t code,
                      int64_t started, int64_t ended);
/* Saves `job`'s row within this loop pass, with the other deferred rows in
 * one transaction (at once when the server is stopping). Loop 0. */
void fc__db_defer_save(fc_jobs_t *j, job_t *job);
/* Saves every deferred row in one transaction. Loop 0. */
void fc__db_flush(fc_jobs_t *j);
/* Adds columns older databases lack (started_by). Returns 0 or -EIO with `err`. */
int fc__db_upgrade(fc_jobs_t *j, char *err, size_t errlen);
/* The start-up load of job rows, off the loops: fc__db_read_rows runs on a
 * worker thread with its own connection, then fc__db_adopt_rows on loop 0. */
fc__db_rows_t *fc__db_rows_new(const char *dir, int64_t before_ms);
void fc__db_rows_free(fc__db_rows_t *r);
/* Worker thread: reads the newest 10000 rows of jobs created before
 * `before_ms`, and marks those a dead server left unfinished Failed (one
 * transaction). */
void fc__db_read_rows(fc__db_rows_t *r);
/* Loop 0: adds the rows' jobs to j->jobs, after the jobs made meanwhile, and
 * lists those just marked Failed in j->recover for their final events. */
void fc__db_adopt_rows(fc_jobs_t *j, fc__db_rows_t *r);

#endif
