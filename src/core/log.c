/* Structured logging: one logfmt line per call, written with a single write(2)
 * so lines from several threads never interleave. */
#include "core/core.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = FC_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fc_log_set_level(fc_log_level_t level) { atomic_store(&log_level, (int)level); }

bool fc_log_enabled(fc_log_level_t level) { return (int)level >= atomic_load(&log_level); }

void fc_log_quote(fc_buf_t *b, const char *s, size_t n) {
  bool plain = n > 0;
  for (size_t i = 0; i < n && plain; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) plain = false;
  }
  if (plain) {
    fc_buf_append(b, s, n);
    return;
  }
  fc_buf_append(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      fc_buf_append(b, esc, 2);
    } else if (c < ' ' || c == 0x7f) {
      fc_buf_printf(b, "\\x%02x", c);
    } else {
      fc_buf_append(b, &s[i], 1);
    }
  }
  fc_buf_append(b, "\"", 1);
}

void fc_log(fc_log_level_t level, const char *msg, const char *fmt, ...) {
  if (!fc_log_enabled(level)) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_printf(&b, "ts=%s.%03ldZ level=%s msg=", when, ts.tv_nsec / 1000000, level_names[level]);
  fc_log_quote(&b, msg, strlen(msg));
  if (fmt && *fmt) {
    fc_buf_append(&b, " ", 1);
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0) fc_buf_append(&b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
  }
  fc_buf_append(&b, "\n", 1);
  ssize_t w = write(STDERR_FILENO, b.data, b.len);
  (void)w;
  fc_buf_dispose(&b);
}
