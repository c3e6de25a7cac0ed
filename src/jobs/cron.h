/* cron: five-field schedules (minute hour day-of-month month day-of-week), with
 * standard semantics: `*`, numbers, ranges `a-b`, steps `*\/n` and `a-b/n`, and
 * lists; day-of-week 0 or 7 is Sunday; when both day fields are restricted, a
 * day matching either fires. Times are UTC. */
#ifndef FC_CRON_H
#define FC_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t minutes;     /* bit n: minute n */
  uint32_t hours, days; /* days: bit 1..31 */
  uint16_t months;      /* bit 1..12 */
  uint8_t weekdays;     /* bit 0..6, Sunday 0 */
  bool days_star, weekdays_star;
} fc_cron_t;

/* Parses `expr`. Returns 0, or -EINVAL with the reason in `why`. */
int fc_cron_parse(const char *expr, fc_cron_t *out, char *why, size_t whylen);
/* The first time, in seconds since the epoch (a whole minute), strictly after
 * `after_s` that the schedule fires; -ENOENT if none within 5 years (e.g.
 * 30 Feb).
 * The clock is a parameter, so schedules are tested without waiting. */
int64_t fc_cron_next(const fc_cron_t *c, int64_t after_s);

#endif
