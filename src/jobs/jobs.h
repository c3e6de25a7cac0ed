/* jobs: workflows (JSON files), the runner of their jobs on loop 0, triggers,
 * and the commands HTTP handlers hand to the runner from any loop. */
#ifndef FC_JOBS_H
#define FC_JOBS_H

#include <jansson.h>

#include "hub/hub.h"
#include "net/net.h"
#include "pub/pub.h"

/* Events a job.* channel keeps: a job's whole stream, so that its final event
 * is never evicted before a subscriber reads it. */
#define FC_JOBS_RETENTION 100000

typedef struct fc_jobs fc_jobs_t;
typedef struct fc_jobs_cmd fc_jobs_cmd_t;

/* What the runner needs from the rest of the server. Callbacks run on loop 0
 * unless said otherwise; `ud` is theirs. */
typedef struct {
  fc_loop_t *loop;  /* loop 0: the runner, its timers and children */
  unsigned threads; /* loops that post commands (fc_jobs_cmd_t.loop < threads) */
  const char *workflows_dir;
  unsigned max_jobs;        /* jobs running at once (--max-jobs); 0 means 1 */
  unsigned max_queued_jobs; /* jobs waiting to run (--max-queued-jobs) */
  fc_hub_t *hub;            /* channel triggers subscribe here */
  int port;                 /* exec tasks' FLOWCAST_URL: http://127.0.0.1:port */
  /* Durable storage: jobs' records are kept in this data directory (the
   * start-up load opens its own connection there). NULL: --storage memory,
   * jobs live in memory only. */
  const char *data_dir;
  bool durable_power; /* --durability power: rows are synced to the disk */
  fc_pub_t *pub;      /* job events (status, log, progress, final) are published through it */
  fc_net_t *net;      /* commands reach loop 0, and answers their loops, through its mailboxes */
  /* An exec task's FLOWCAST_TOKEN: a malloc'd token for subject `sub` with
   * the publish and subscribe rights on `channels`, valid `ttl_s` seconds;
   * NULL when it cannot be signed. NULL (the hook): authentication is off and
   * the token is empty. */
  char *(*mint)(void *ud, const char *sub, char *const *channels, size_t nchannels, int64_t ttl_s);
  /* Sends `data` as a direct message from `from` to the connection `to`.
   * Returns 0 or -ENOENT (no such connection). */
  int (*send_direct)(void *ud, const char *to, const char *from, const json_t *data);
  /* Cluster mode: claims `key` for this node for `ttl_s` seconds, so that a
   * trigger (a cron time, a channel event) starts one job in the cluster.
   * Returns 1 when this node has it, 0 when another node took it first, or a
   * negative errno (the trigger is then skipped). Blocks on one round trip.
   * NULL: one node, every claim is this node's. */
  int (*claim)(void *ud, const char *key, unsigned ttl_s);
  void *ud;
  /* Cluster mode: the Redis URL every node shares (NULL: one node). Jobs'
   * records and their queue live there; any node runs any job. */
  const char *cluster_url;
  const char *node_name; /* this node in logs and reasons (host:port) */
  unsigned lease_s;      /* a silent node's jobs fail after this long (0: 15) */
} fc_jobs_opts_t;

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

/* A caller's work for the runner: `run` executes on loop 0, then `done` on
 * the caller's loop. The caller owns the command; `done` frees it. */
struct fc_jobs_cmd {
  fc_msg_t msg;  /* first: posted to loop 0, then back to `loop` */
  void *ud;      /* the caller's (an HTTP request) */
  unsigned loop; /* the caller's loop */
  void (*run)(fc_jobs_t *j, fc_jobs_cmd_t *c);
  void (*done)(fc_jobs_t *j, fc_jobs_cmd_t *c);
  int action;
  int64_t wf;
  char id[40];
  int rc;              /* what run decided: 0 or a negative errno; -ESHUTDOWN: not run, the server is stopping */
  fc_buf_t body;       /* JSON body, or an error message */
  uint64_t final_seq;  /* the job's final event id, 0 if none yet */
  fc_jobs_actor_t who; /* its sub and run patterns are the command's own copies */
  unsigned limit;      /* GET /jobs: page size */
  char after[40];      /* GET /jobs: the cursor (a job id), or "" */
  char next_after[40]; /* GET /jobs: the cursor of the next page, or "" */
  fc_jobs_cmd_t *next; /* loop 0's: commands held for the start-up load */
};

/* Loads workflows, prepares the job tables, marks jobs a dead server left as
 * Failed (on a worker thread), and subscribes channel triggers. Copies `o`
 * (its strings and handles must outlive the runner). Call on
 * loop 0's thread before it runs. NULL with `err` (the server then runs
 * without workflows). */
fc_jobs_t *fc_jobs_new(const fc_jobs_opts_t *o, char *err, size_t errlen);
/* Shutdown began: kills running children, closes the runner's handles. Loop 0. */
void fc_jobs_stop(fc_jobs_t *j);
/* Frees everything, after the loops ended. NULL is a no-op. */
void fc_jobs_free(fc_jobs_t *j);
/* Posts `c` to loop 0, where it runs (rc -ESHUTDOWN instead when the server
 * is stopping), then `done` runs on c->loop. Any thread. */
void fc_jobs_post(fc_jobs_t *j, fc_jobs_cmd_t *c);

/* Cluster mode: appends `,"node":"...","workflowsDiffer":[ids]` (the
 * workflows whose definition on this node differs from the cluster's) for
 * /healthz; returns true when some differ. Nothing on one node. Any thread. */
bool fc_jobs_health(fc_jobs_t *j, fc_buf_t *out);

/* Appends the flowcast_jobs{status=...} gauges. Any thread. */
void fc_jobs_metrics(fc_jobs_t *j, fc_buf_t *out);
/* Status `i` (0 to FC_JOBS_NSTATUS-1, Pending first): its name, and in *n the
 * jobs in it (at most a second old; 0 when `j` is NULL). Any thread. */
#define FC_JOBS_NSTATUS 9
const char *fc_jobs_count(fc_jobs_t *j, size_t i, unsigned *n);

/* Loop 0 only, from a command's run: */
/* Starts a job of workflow `wf` with `input` (JSON text or NULL) for
 * `starter` (a token's sub; NULL for a trigger: only admin may control the
 * job); fills `id`. Returns 0, -ENOENT (no such workflow) or -EAGAIN
 * (--max-queued-jobs jobs already wait: nothing was created). */
int fc_jobs_start(fc_jobs_t *j, int64_t wf, const char *input, const char *starter, char id[40]);
/* Applies `a` to a job for `who`, who must be admin or the job's starter (the
 * run right is the caller's to check). Returns 0, -ENOENT (unknown workflow or
 * job), -EPERM (not theirs: nothing changes) or -EBUSY (the job's state does
 * not allow it). In cluster mode also -EIO (Redis unavailable), -ETIMEDOUT
 * (the node running the job did not answer), or -EINPROGRESS: the command
 * is held until that node answers, and its rc is then one of the above. */
int fc_jobs_control(fc_jobs_t *j, int64_t wf, const char *id, fc_job_action_t a, const fc_jobs_actor_t *who);
/* JSON of the workflows `who` may run / one workflow / one job into `out`.
 * Return 0 or -ENOENT (cluster mode: also -EIO, Redis unavailable). */
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
