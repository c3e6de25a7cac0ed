/* Batched writes: the sockets a loop pass writes go to the kernel in one
 * io_uring submission instead of one writev each.
 *
 * Why: on a paravirtualized VM a system call's entry and exit cost about as
 * much as a small loopback send itself. Measured here (bench notes in
 * docs/performance.md): 500 sockets written 2.4 KB each, 7.0 µs of the
 * writer's CPU per writev against 4.0 µs per send in one submission.
 *
 * Each send is a sendmsg with MSG_DONTWAIT, so the kernel does it inline while
 * the submission is made and never parks it: a full socket completes at once
 * with -EAGAIN, exactly as a writev would. Every send has completed when the
 * flush returns, so the iovecs need to live only that long and a connection
 * never has a write outstanding here; its results go through the same
 * bookkeeping as a direct write (fc__conn_tried). Where io_uring is missing
 * or refused (old kernel, seccomp), or ever fails, the loop writes each socket
 * itself as before. */
#include "net/internal.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 128 /* sends per submission; a bigger pass takes several */
/* Frames per batched send. Batched passes are unheld ones, whose streams
 * rarely have more queued; more goes on in a direct writev. Small entries
 * keep the batch's memory (touched as it is used) at about 40 KB a loop. */
#define BATCH_IOV 16

struct fc__wbatch {
  struct io_uring ring;
  unsigned n; /* entries queued */
  struct {
    fc_conn_t *conn;
    size_t total; /* bytes tried */
    int res;      /* what the send returned: bytes, or -errno */
    struct msghdr mh;
    uv_buf_t bufs[BATCH_IOV]; /* the same layout as struct iovec on Unix */
  } e[BATCH];
};

fc__wbatch_t *fc__wbatch_new(int *err) {
  fc__wbatch_t *b = fc_xcalloc(1, sizeof *b);
  int rc = io_uring_queue_init(BATCH, &b->ring, 0);
  if (rc < 0) {
    *err = -rc;
    free(b);
    return NULL;
  }
  return b;
}

void fc__wbatch_free(fc__wbatch_t *b) {
  if (!b) return;
  io_uring_queue_exit(&b->ring);
  free(b);
}

/* Submits the queued sends and waits until every one has completed; records
 * each result. Returns how many were submitted (fewer than b->n only after an
 * error: the rest were never made). */
static unsigned submit_all(fc__wbatch_t *b) {
  int sub = io_uring_submit(&b->ring);
  unsigned submitted = sub > 0 ? (unsigned)sub : 0, done = 0;
  while (done < submitted) {
    struct io_uring_cqe *cqe;
    int rc = io_uring_wait_cqe(&b->ring, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) abort(); /* submitted sends still use the buffers: cannot go on */
    b->e[cqe->user_data].res = cqe->res;
    io_uring_cqe_seen(&b->ring, cqe);
    done++;
  }
  return submitted;
}

void fc__wbatch_flush(fc_loop_t *l) {
  fc__wbatch_t *b = l->wbatch;
  if (!b || b->n == 0) return;
  unsigned n = b->n, submitted = submit_all(b);
  b->n = 0;
  atomic_fetch_add_explicit(&l->batched, submitted, memory_order_relaxed);
  if (submitted < n) {
    /* Unsent entries stay in the submission ring; using it again would send
     * them twice. Write the rest directly from now on. */
    fc_log(FC_LOG_WARN, "io_uring submission failed: writing sockets one by one", "loop=%u", l->index);
    l->wbatch = NULL;
  }
  for (unsigned i = 0; i < n; i++) /* an unsubmitted send went nowhere: the direct path takes over */
    fc__conn_tried(b->e[i].conn, i < submitted ? b->e[i].res : -EAGAIN, b->e[i].total);
  if (!l->wbatch) fc__wbatch_free(b);
}

bool fc__wbatch_add(fc_loop_t *l, fc_conn_t *c) {
  fc__wbatch_t *b = l->wbatch;
  uv_os_fd_t fd;
  if (!b || uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) return false;
  struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
  if (!sqe) return false; /* cannot happen: the ring holds BATCH and is flushed when full */
  unsigned i = b->n;
  uint32_t nbufs = fc__conn_gather(c, b->e[i].bufs, BATCH_IOV, &b->e[i].total);
  b->e[i].conn = c;
  memset(&b->e[i].mh, 0, sizeof b->e[i].mh);
  b->e[i].mh.msg_iov = (struct iovec *)b->e[i].bufs;
  b->e[i].mh.msg_iovlen = nbufs;
  io_uring_prep_sendmsg(sqe, fd, &b->e[i].mh, MSG_DONTWAIT | MSG_NOSIGNAL);
  sqe->user_data = i;
  if (++b->n == BATCH) fc__wbatch_flush(l);
  return true;
}
