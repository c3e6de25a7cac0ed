/* Refcounted frames shared by history and write queues. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  fc_frame_t frame;
  char bytes[];
} heap_frame_t;

static void free_heap_frame(fc_frame_t *f) { free(f); }

static void free_taken_frame(fc_frame_t *f) {
  free((char *)f->bytes);
  free(f);
}

fc_frame_t *fc_frame_copy(const void *p, size_t n) {
  heap_frame_t *h = fc_xmalloc(sizeof *h + n);
  memcpy(h->bytes, p, n);
  atomic_init(&h->frame.refs, 1);
  h->frame.len = (uint32_t)n;
  h->frame.bytes = h->bytes;
  h->frame.on_free = free_heap_frame;
  return &h->frame;
}

fc_frame_t *fc_frame_take(char *p, size_t n) {
  fc_frame_t *f = fc_xmalloc(sizeof *f);
  atomic_init(&f->refs, 1);
  f->len = (uint32_t)n;
  f->bytes = p;
  f->on_free = free_taken_frame;
  return f;
}

fc_frame_t *fc_frame_ref(fc_frame_t *f) {
  if (f->on_free) atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

void fc_frame_unref(fc_frame_t *f) { fc_frame_unref_n(f, 1); }

void fc_frame_unref_n(fc_frame_t *f, unsigned n) {
  if (!f || !f->on_free || !n) return;
  if (atomic_fetch_sub_explicit(&f->refs, n, memory_order_acq_rel) == n) f->on_free(f);
}
