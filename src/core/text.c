/* UTF-8 validation, number parsing, clocks, glob matching and hashing. */
#include "core/core.h"

#include <errno.h>
#include <time.h>

bool fc_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end) {
    unsigned c = *p;
    if (c >= 0x01 && c < 0x80) {
      p++;
      continue;
    }
    size_t need;
    unsigned min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1, min = 0x80, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2, min = 0x800, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return false; /* NUL, continuation byte, 0xC0/0xC1, or > 0xF4 */
    }
    if ((size_t)(end - p) <= need) return false;
    for (size_t i = 1; i <= need; i++) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += need + 1;
  }
  return true;
}

int fc_parse_u64(const char *p, size_t n, uint64_t *out) {
  if (n == 0 || n > 20) return -EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -EINVAL;
    unsigned d = (unsigned)(p[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return -EINVAL;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int64_t fc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t fc_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void fc_time_rfc3339(fc_buf_t *b, int64_t ms) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char out[40];
  strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
  fc_buf_printf(b, "%s.%03dZ", out, (int)(ms % 1000));
}

bool fc_glob_match(const char *p, const char *s) {
  const char *star = NULL, *resume = NULL;
  while (*s) {
    if (*p == '*') {
      star = p++;
      resume = s;
    } else if (*p == *s) {
      p++, s++;
    } else if (star) {
      p = star + 1;
      s = ++resume;
    } else {
      return false;
    }
  }
  while (*p == '*') p++;
  return *p == '\0';
}

uint32_t fc_hash_fnv1a(const void *p, size_t n) {
  const uint8_t *b = p;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

bool fc_patterns_match(char *const *patterns, size_t n, const char *name) {
  for (size_t i = 0; i < n && patterns && patterns[i]; i++)
    if (fc_glob_match(patterns[i], name)) return true;
  return false;
}
