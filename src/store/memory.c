/* The memory store: nothing is kept. A batch commits at once, on the
 * caller's thread; one lock makes commits (numbering and `done`) happen one
 * at a time, in the order of fc_store_append calls. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

typedef struct {
  fc_store_t base;
  pthread_mutex_t lock; /* one commit at a time */
  uint64_t last_seq;    /* under lock */
} mem_store_t;

static void mem_close(fc_store_t *base) {
  mem_store_t *m = (mem_store_t *)base;
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static uint64_t mem_last_seq(fc_store_t *base) {
  mem_store_t *m = (mem_store_t *)base;
  pthread_mutex_lock(&m->lock);
  uint64_t v = m->last_seq;
  pthread_mutex_unlock(&m->lock);
  return v;
}

static void mem_append(fc_store_t *base, fc_store_batch_t *b) {
  mem_store_t *m = (mem_store_t *)base;
  b->next = NULL;
  pthread_mutex_lock(&m->lock);
  if (!b->purge && b->n) {
    b->number(b);
    m->last_seq = b->events[b->n - 1].seq;
  }
  b->status = 0;
  b->done(b);
  pthread_mutex_unlock(&m->lock);
}

static int mem_load(fc_store_t *base, const char *channel, unsigned limit, fc_store_channel_t *out,
                    void (*each)(void *ud, const fc_store_event_t *ev), void *ud) {
  (void)base, (void)channel, (void)limit, (void)each, (void)ud;
  memset(out, 0, sizeof *out);
  return 0;
}

static int mem_channels(fc_store_t *base, const char *after, unsigned limit,
                        void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud) {
  (void)base, (void)after, (void)limit, (void)each, (void)ud;
  return 0;
}

static const fc__store_ops_t mem_ops = {
    .close = mem_close,
    .last_seq = mem_last_seq,
    .append = mem_append,
    .load = mem_load,
    .channels = mem_channels,
    .stats = NULL,
    .durable = false,
};

fc_store_t *fc_store_memory_new(void) {
  mem_store_t *m = fc_xcalloc(1, sizeof *m);
  m->base.ops = &mem_ops;
  pthread_mutex_init(&m->lock, NULL);
  return &m->base;
}
