/* core: buffers, strings, refcounted frames, UTF-8, clock and log.
 * Depends on nothing but libc; every other module may use it. */
#ifndef FC_CORE_H
#define FC_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A borrowed slice: never owns its bytes. */
typedef struct {
  const char *base;
  size_t len;
} fc_str_t;

#define FC_STR(lit) ((fc_str_t){(lit), sizeof(lit) - 1})
bool fc_str_eq(fc_str_t a, const char *lit);
bool fc_str_ieq(fc_str_t a, const char *lit);

/* Allocation that aborts on failure: only for small, locally bounded sizes. */
void *fc_xmalloc(size_t n);
void *fc_xcalloc(size_t n, size_t size);
void *fc_xrealloc(void *p, size_t n);
char *fc_xstrndup(const char *s, size_t n);
/* Zeroed, and aligned to a cache line: for arrays of per-thread state (each
 * element _Alignas(FC_CACHE_LINE)), so that two threads never write one line. */
#define FC_CACHE_LINE 64
void *fc_xcalloc_lines(size_t n, size_t size);

/* A growable byte buffer. `data` is always NUL-terminated once anything was appended. */
typedef struct {
  char *data;
  size_t len; /* bytes used, excluding the NUL */
  size_t cap; /* bytes allocated */
} fc_buf_t;

void fc_buf_init(fc_buf_t *b);
void fc_buf_dispose(fc_buf_t *b);
void fc_buf_reserve(fc_buf_t *b, size_t extra);
void fc_buf_append(fc_buf_t *b, const void *p, size_t n);
void fc_buf_puts(fc_buf_t *b, const char *s);
void fc_buf_printf(fc_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Transfers the bytes to the caller (free() them); leaves `b` empty. */
char *fc_buf_take(fc_buf_t *b, size_t *len);

/* A refcounted, immutable run of bytes that several write queues share.
 * An event's SSE frame is one, so history and every subscriber queue hold
 * references instead of copies. Thread-safe refcount. */
typedef struct fc_frame fc_frame_t;
typedef void (*fc_frame_free_cb)(fc_frame_t *frame);
struct fc_frame {
  atomic_uint refs; /* 0 for static frames, which are never freed */
  uint32_t len;     /* bytes at `bytes` */
  const char *bytes;
  fc_frame_free_cb on_free; /* called when the last reference goes */
};

/* A heap frame holding a copy of `p`; one reference, owned by the caller. */
fc_frame_t *fc_frame_copy(const void *p, size_t n);
/* A heap frame taking ownership of a malloc'd buffer. */
fc_frame_t *fc_frame_take(char *p, size_t n);
/* A frame for static bytes: refcounting is a no-op. */
#define FC_FRAME_STATIC(lit)                                                                                           \
  { 0, sizeof(lit) - 1, (lit), NULL }
fc_frame_t *fc_frame_ref(fc_frame_t *f);
void fc_frame_unref(fc_frame_t *f);
/* Drops `n` references at once. */
void fc_frame_unref_n(fc_frame_t *f, unsigned n);

/* True when [p, p+n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
 * NUL bytes are rejected too: SSE and JSON consumers mishandle them. */
bool fc_utf8_valid(const char *p, size_t n);

/* Wall clock in milliseconds since the epoch, and a monotonic clock in ms. */
int64_t fc_now_ms(void);
uint64_t fc_mono_ms(void);

/* Parses a decimal u64 with no sign, no spaces, no leading '+', at most 20 digits.
 * Returns 0, or -EINVAL. */
int fc_parse_u64(const char *p, size_t n, uint64_t *out);

/* Logging: one line of logfmt on stderr per call. */
typedef enum { FC_LOG_DEBUG, FC_LOG_INFO, FC_LOG_WARN, FC_LOG_ERROR } fc_log_level_t;
void fc_log_set_level(fc_log_level_t level);
bool fc_log_enabled(fc_log_level_t level);
/* `fmt` produces the key=value pairs after the level and message. */
void fc_log(fc_log_level_t level, const char *msg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends `s` to `b` as a logfmt value: quoted and escaped when needed. */
void fc_log_quote(fc_buf_t *b, const char *s, size_t n);

/* True when `name` matches `pattern`, where '*' matches any run of
 * characters (possibly empty) and every other character itself. */
bool fc_glob_match(const char *pattern, const char *name);
/* True when some pattern of `patterns` matches `name` (fc_glob_match). Stops
 * at `n` patterns or at a NULL one, so a NULL-terminated list may pass SIZE_MAX. */
bool fc_patterns_match(char *const *patterns, size_t n, const char *name);

/* 32-bit FNV-1a over [p, p+n): the hash of the in-memory tables (channel
 * names, peer addresses, session ids, rate-limit keys). Not for untrusted
 * input where collisions are an attack surface without a cap on chains. */
uint32_t fc_hash_fnv1a(const void *p, size_t n);

/* Appends `s` as a JSON string literal, quotes included. The bytes are taken
 * as they are: for text already known to be valid UTF-8 (events). */
void fc_json_quote(fc_buf_t *b, const char *s, size_t n);
/* Appends the NUL-terminated `s` as a JSON string literal whatever it holds:
 * quotes, backslashes and control characters escaped, and each byte that
 * does not begin a valid UTF-8 sequence written as U+FFFD, so the result is
 * always valid JSON. */
void fc_json_text(fc_buf_t *b, const char *s);
/* Appends `"code":<code>,"message":<msg>`, both through fc_json_text: the
 * members of every error the server sends (HTTP bodies, WebSocket ops). */
void fc_json_error_members(fc_buf_t *b, const char *code, const char *msg);
/* Appends the HTTP error body {"error":{"code":...,"message":...}}: the one
 * writer of JSON error bodies (http answers, net's refusals, api). */
void fc_json_error(fc_buf_t *b, const char *code, const char *msg);
/* Appends a time as an RFC 3339 UTC string with milliseconds, unquoted. */
void fc_time_rfc3339(fc_buf_t *b, int64_t ms);
#endif
