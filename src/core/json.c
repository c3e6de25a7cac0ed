/* JSON text: string literals and the one writer of error bodies. */
#include "core/core.h"

#include <string.h>

void fc_json_quote(fc_buf_t *b, const char *s, size_t n) {
  fc_buf_reserve(b, n + 2);
  fc_buf_append(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') {
      run++;
      continue;
    }
    fc_buf_append(b, s + i - run, run);
    run = 0;
    switch (c) {
      case '"': fc_buf_append(b, "\\\"", 2); break;
      case '\\': fc_buf_append(b, "\\\\", 2); break;
      case '\n': fc_buf_append(b, "\\n", 2); break;
      case '\r': fc_buf_append(b, "\\r", 2); break;
      case '\t': fc_buf_append(b, "\\t", 2); break;
      default: fc_buf_printf(b, "\\u%04x", c);
    }
  }
  fc_buf_append(b, s + n - run, run);
  fc_buf_append(b, "\"", 1);
}

/* Appends one ASCII character, escaped as JSON needs. */
static void json_ascii(fc_buf_t *out, unsigned char c) {
  switch (c) {
    case '"': fc_buf_puts(out, "\\\""); break;
    case '\\': fc_buf_puts(out, "\\\\"); break;
    case '\n': fc_buf_puts(out, "\\n"); break;
    case '\r': fc_buf_puts(out, "\\r"); break;
    case '\t': fc_buf_puts(out, "\\t"); break;
    default:
      if (c < 0x20 || c == 0x7f) fc_buf_printf(out, "\\u%04x", c);
      else fc_buf_append(out, &c, 1);
  }
}

void fc_json_text(fc_buf_t *out, const char *s) {
  size_t n = strlen(s), i = 0;
  fc_buf_append(out, "\"", 1);
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xC2 && c <= 0xDF ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (len == 0 || i + len > n || (len > 1 && !fc_utf8_valid(s + i, len))) {
      fc_buf_puts(out, "\\ufffd");
      i++;
    } else if (len > 1) {
      fc_buf_append(out, s + i, len);
      i += len;
    } else {
      json_ascii(out, c);
      i++;
    }
  }
  fc_buf_append(out, "\"", 1);
}

void fc_json_error_members(fc_buf_t *b, const char *code, const char *msg) {
  fc_buf_puts(b, "\"code\":");
  fc_json_text(b, code);
  fc_buf_puts(b, ",\"message\":");
  fc_json_text(b, msg);
}

void fc_json_error(fc_buf_t *b, const char *code, const char *msg) {
  fc_buf_puts(b, "{\"error\":{");
  fc_json_error_members(b, code, msg);
  fc_buf_puts(b, "}}");
}
