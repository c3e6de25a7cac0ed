/* Cron expressions: any text parses or is refused with a reason, and a parsed
 * schedule's next time is a whole minute after the start, or -ENOENT. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/cron.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size > 256) return 0;
  char expr[257];
  memcpy(expr, data, size);
  expr[size] = '\0';
  fc_cron_t c;
  char why[256] = "";
  if (fc_cron_parse(expr, &c, why, sizeof why) < 0) {
    if (!why[0]) abort();
    return 0;
  }
  const int64_t start = 1700000000; /* 2023-11-14 */
  int64_t next = fc_cron_next(&c, start);
  if (next != -ENOENT && (next <= start || next % 60 != 0)) abort();
  return 0;
}
