/* Cron expressions and their next firing time. */
#include "jobs/cron.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parses one field into a bitmask of the values in [lo, hi]. Returns 0 or
 * -EINVAL. */
static int field(const char *s, size_t len, int lo, int hi, uint64_t *mask, bool *star) {
  *mask = 0;
  *star = len == 1 && s[0] == '*';
  char buf[64];
  if (len == 0 || len >= sizeof buf) return -EINVAL;
  memcpy(buf, s, len);
  buf[len] = '\0';
  for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    int a = lo, b = hi, step = 1;
    char *slash = strchr(item, '/'), *end;
    if (slash) {
      *slash = '\0';
      step = (int)strtol(slash + 1, &end, 10);
      if (*end || step < 1) return -EINVAL;
    }
    if (strcmp(item, "*") != 0) {
      a = (int)strtol(item, &end, 10);
      if (end == item) return -EINVAL;
      b = slash ? hi : a;
      if (*end == '-') {
        char *e2;
        b = (int)strtol(end + 1, &e2, 10);
        if (e2 == end + 1 || *e2) return -EINVAL;
      } else if (*end) {
        return -EINVAL;
      }
    }
    if (a < lo || b > hi || a > b) return -EINVAL;
    for (int v = a; v <= b; v += step) *mask |= 1ull << v;
  }
  return 0;
}

int fc_cron_parse(const char *expr, fc_cron_t *out, char *why, size_t whylen) {
  static const struct {
    const char *name;
    int lo, hi;
  } f[] = {{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 7}};
  uint64_t masks[5];
  bool stars[5];
  const char *p = expr;
  for (int i = 0; i < 5; i++) {
    while (*p == ' ' || *p == '\t') p++;
    size_t len = strcspn(p, " \t");
    if (field(p, len, f[i].lo, f[i].hi, &masks[i], &stars[i]) < 0) {
      snprintf(why, whylen, "bad %s field in '%s' (want *, N, A-B, */S, A-B/S or lists, %d..%d)", f[i].name, expr,
               f[i].lo, f[i].hi);
      return -EINVAL;
    }
    p += len;
  }
  while (*p == ' ' || *p == '\t') p++;
  if (*p) {
    snprintf(why, whylen, "'%s' has more than five fields", expr);
    return -EINVAL;
  }
  out->minutes = masks[0];
  out->hours = (uint32_t)masks[1];
  out->days = (uint32_t)masks[2];
  out->months = (uint16_t)masks[3];
  out->weekdays = (uint8_t)((masks[4] | (masks[4] >> 7)) & 0x7f); /* 7 is Sunday too */
  out->days_star = stars[2];
  out->weekdays_star = stars[4];
  return 0;
}

static bool day_matches(const fc_cron_t *c, const struct tm *tm) {
  bool dom = c->days >> tm->tm_mday & 1, dow = c->weekdays >> tm->tm_wday & 1;
  if (c->days_star || c->weekdays_star) return dom && dow; /* a star matches every day */
  return dom || dow;
}

int64_t fc_cron_next(const fc_cron_t *c, int64_t after_s) {
  time_t t = (time_t)(after_s - (after_s % 60 + 60) % 60 + 60);
  time_t limit = t + (time_t)5 * 366 * 24 * 3600;
  struct tm tm;
  while (t < limit) {
    gmtime_r(&t, &tm);
    if (!(c->months >> (tm.tm_mon + 1) & 1)) { /* to the first of next month */
      tm.tm_mon++, tm.tm_mday = 1, tm.tm_hour = 0, tm.tm_min = 0;
    } else if (!day_matches(c, &tm)) {
      tm.tm_mday++, tm.tm_hour = 0, tm.tm_min = 0;
    } else if (!(c->hours >> tm.tm_hour & 1)) {
      tm.tm_hour++, tm.tm_min = 0;
    } else if (!(c->minutes >> tm.tm_min & 1)) {
      tm.tm_min++;
    } else {
      return (int64_t)t;
    }
    tm.tm_sec = 0;
    t = timegm(&tm); /* normalizes overflowing fields */
  }
  return -ENOENT;
}
