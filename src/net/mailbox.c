/* A loop's mailbox: messages from any thread, run on the loop in the order
 * they were posted, behind the loop's one wakeup (uv_async_t). */
#include <assert.h>
#include <errno.h>

#include "net/internal.h"

int fc_net_receiver(fc_net_t *net, fc_msg_cb cb, void *ud) {
  if (net->nreceivers == FC_NET_MAX_RECEIVERS) return -ENOSPC;
  net->receivers[net->nreceivers].cb = cb;
  net->receivers[net->nreceivers].ud = ud;
  return (int)net->nreceivers++;
}

void fc_net_post(fc_net_t *net, unsigned index, fc_msg_t *m) {
  fc_loop_t *l = net->loops[index];
  assert(!m->queued);
  m->next = NULL;
  m->queued = true;
  pthread_mutex_lock(&l->mbox_lock);
  bool was_empty = l->mbox_head == NULL;
  if (was_empty) l->mbox_head = m;
  else l->mbox_tail->next = m;
  l->mbox_tail = m;
  pthread_mutex_unlock(&l->mbox_lock);
  /* A non-empty mailbox already has a wakeup on its way. */
  if (was_empty) uv_async_send(&l->wake);
}

size_t fc__mailbox_run(fc_loop_t *l) {
  pthread_mutex_lock(&l->mbox_lock);
  fc_msg_t *m = l->mbox_head;
  l->mbox_head = l->mbox_tail = NULL;
  pthread_mutex_unlock(&l->mbox_lock);
  fc_net_t *net = l->net;
  size_t n = 0;
  for (; m; n++) {
    /* The receiver owns the message from here and may post it again. */
    fc_msg_t *next = m->next;
    m->queued = false;
    net->receivers[m->receiver].cb(l, m, net->receivers[m->receiver].ud);
    m = next;
  }
  return n;
}

void fc_net_deliver_rest(fc_net_t *net) {
  size_t ran;
  do { /* a receiver may post on (a command's answer to another loop) */
    ran = 0;
    for (unsigned i = 0; i < net->nloops; i++)
      if (net->loops[i]) ran += fc__mailbox_run(net->loops[i]);
  } while (ran);
}
