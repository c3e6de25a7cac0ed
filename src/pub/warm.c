/* Warming channels off the loop (fc_pub_warm): one read per channel name and
 * loop at a time, on libuv's thread pool, shared by whoever waits for it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pub/pub.h"

/* One caller of fc_pub_warm waiting for its reads. */
typedef struct {
  fc_pub_warm_cb cb;
  void *ud;
  size_t left;          /* reads not ended yet */
  size_t nheld;         /* channels read for it, held until cb returns */
  fc_channel_t *held[]; /* as many as it named */
} waiter_t;

/* One channel being read. */
typedef struct read {
  uv_work_t work;
  struct read *next;
  fc_hub_t *hub;
  fc_channel_t *ch; /* the worker's reference, or NULL when the read failed */
  waiter_t **waiters;
  size_t nwaiters;
  char name[];
} read_t;

/* The reads in flight started on this thread (each loop is one thread). */
static _Thread_local read_t *reads;

static void read_work(uv_work_t *w) {
  read_t *r = w->data;
  if (fc_hub_open(r->hub, r->name, strlen(r->name), 0, &r->ch) < 0) r->ch = NULL;
}

static void waiter_done(waiter_t *wt) {
  wt->cb(wt->ud);
  for (size_t i = 0; i < wt->nheld; i++) fc_channel_unref(wt->held[i]);
  free(wt);
}

static void read_done(uv_work_t *w, int status) {
  (void)status; /* cancelled only when the loop stops: its waiters still end */
  read_t *r = w->data;
  for (read_t **pp = &reads; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  for (size_t i = 0; i < r->nwaiters; i++) {
    waiter_t *wt = r->waiters[i];
    if (r->ch) wt->held[wt->nheld++] = fc_channel_ref(r->ch);
    if (--wt->left == 0) waiter_done(wt);
  }
  fc_channel_unref(r->ch);
  free(r->waiters);
  free(r);
}

/* Adds `wt` to the read of `name` in flight on this thread, or starts one.
 * Returns 0 or a negative errno (the read could not be queued). */
static int wait_for(fc_hub_t *hub, fc_loop_t *loop, const char *name, waiter_t *wt) {
  read_t *r = reads;
  while (r && !(r->hub == hub && strcmp(r->name, name) == 0)) r = r->next;
  if (!r) {
    size_t len = strlen(name);
    r = fc_xcalloc(1, sizeof *r + len + 1);
    memcpy(r->name, name, len + 1);
    r->hub = hub;
    r->work.data = r;
    int rc = uv_queue_work(fc_loop_uv(loop), &r->work, read_work, read_done);
    if (rc < 0) {
      free(r);
      return rc;
    }
    r->next = reads;
    reads = r;
  }
  r->waiters = fc_xrealloc(r->waiters, (r->nwaiters + 1) * sizeof *r->waiters);
  r->waiters[r->nwaiters++] = wt;
  wt->left++;
  return 0;
}

int fc_pub_warm(fc_hub_t *hub, fc_loop_t *loop, const char *const *names, size_t n, fc_pub_warm_cb cb, void *ud) {
  if (!fc_hub_loads(hub)) return 0;
  waiter_t *wt = fc_xcalloc(1, sizeof *wt + n * sizeof wt->held[0]);
  wt->cb = cb;
  wt->ud = ud;
  for (size_t i = 0; i < n; i++) {
    fc_channel_t *ch;
    int rc = fc_hub_open(hub, names[i], strlen(names[i]), FC_HUB_CACHED, &ch);
    if (rc == 0) fc_channel_unref_quiet(ch);
    else if (rc == -ENOENT) wait_for(hub, loop, names[i], wt); /* if it cannot be queued, the caller reads */
  }
  if (wt->left) return 1;
  free(wt);
  return 0;
}
