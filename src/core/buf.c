/* Allocation helpers, slices and the growable buffer. */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void oom(void) {
  fputs("flowcast: out of memory\n", stderr);
  abort();
}

void *fc_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom();
  return p;
}

void *fc_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) oom();
  return p;
}

void *fc_xcalloc_lines(size_t n, size_t size) {
  size_t bytes = (n ? n : 1) * size;
  bytes = (bytes + FC_CACHE_LINE - 1) / FC_CACHE_LINE * FC_CACHE_LINE;
  void *p = aligned_alloc(FC_CACHE_LINE, bytes);
  if (!p) oom();
  memset(p, 0, bytes);
  return p;
}

void *fc_xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) oom();
  return p;
}

char *fc_xstrndup(const char *s, size_t n) {
  char *p = fc_xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

bool fc_str_eq(fc_str_t a, const char *lit) {
  size_t n = strlen(lit);
  return a.len == n && memcmp(a.base, lit, n) == 0;
}

bool fc_str_ieq(fc_str_t a, const char *lit) {
  size_t n = strlen(lit);
  return a.len == n && strncasecmp(a.base, lit, n) == 0;
}

void fc_buf_init(fc_buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void fc_buf_dispose(fc_buf_t *b) {
  free(b->data);
  fc_buf_init(b);
}

void fc_buf_reserve(fc_buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) cap *= 2;
  b->data = fc_xrealloc(b->data, cap);
  b->cap = cap;
}

void fc_buf_append(fc_buf_t *b, const void *p, size_t n) {
  fc_buf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void fc_buf_puts(fc_buf_t *b, const char *s) { fc_buf_append(b, s, strlen(s)); }

void fc_buf_printf(fc_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    fc_buf_append(b, small, (size_t)n);
    return;
  }
  fc_buf_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

char *fc_buf_take(fc_buf_t *b, size_t *len) {
  if (!b->data) fc_buf_append(b, "", 0);
  char *p = b->data;
  if (len) *len = b->len;
  fc_buf_init(b);
  return p;
}
