/* auth: JWT tokens (libjwt) with per-channel rights, users with argon2id
 * password hashes (libsodium), and login rate limits. */
#ifndef FC_AUTH_H
#define FC_AUTH_H

#include "core/core.h"

typedef struct fc_auth fc_auth_t;

/* What a token allows. Channel patterns are channel names or globs ("orders.*",
 * "*"); `run` patterns match workflow ids as decimal text ("41", "4*", "*"). */
typedef struct {
  char *sub;
  char **publish;
  size_t npublish;
  char **subscribe;
  size_t nsubscribe;
  char **run; /* workflows this token may start and control the jobs of */
  size_t nrun;
  char **presence; /* channels whose presence (who is subscribed) it may read */
  size_t npresence;
  bool send;   /* may send direct WebSocket messages to a connection */
  bool admin;  /* every right */
  int64_t exp; /* seconds since the epoch, at most FC_AUTH_TIME_MAX */
} fc_claims_t;

/* The longest token accepted (and minted), in characters. */
#define FC_AUTH_TOKEN_MAX 8192
/* Later times in a token are taken as this one (9999-12-31T23:59:59Z), so
 * that any exp in milliseconds fits in an int64_t. */
#define FC_AUTH_TIME_MAX INT64_C(253402300799)

void fc_claims_dispose(fc_claims_t *c);

typedef struct {
  const uint8_t *secret; /* HS256 key */
  size_t secret_len;
  const char *public_key_pem; /* optional RS256/ES256 public key for tokens minted elsewhere */
} fc_auth_opts_t;

fc_auth_t *fc_auth_new(const fc_auth_opts_t *opts, char *err, size_t errlen);
void fc_auth_free(fc_auth_t *a);

/* Checks a token: a well-formed JWT of at most FC_AUTH_TOKEN_MAX characters,
 * signed by the configured key with the configured algorithm (never "none"),
 * `exp` after `now_s`, `nbf` (if any) not after it. exp, nbf and iat are
 * NumericDates: numbers, possibly fractional, of any size (compared without
 * overflow); any other type is refused. Fills `out` (dispose it); out->exp is
 * exp rounded up, capped at FC_AUTH_TIME_MAX. Returns 0; or, with a reason
 * in `why` (it may quote the token's alg: escape it where it goes), -EINVAL
 * for a malformed token or claim, -EACCES for one refused (algorithm,
 * signature, expired, not yet valid). */
int fc_auth_verify(fc_auth_t *a, const char *token, int64_t now_s, fc_claims_t *out, char *why, size_t whylen);

/* Mints an HS256 token carrying `c` (its exp is set to now + ttl_s). Returns a
 * malloc'd string, or NULL when it cannot be made (out of memory, or text in
 * `c` that is not UTF-8). The caller checks its length against
 * FC_AUTH_TOKEN_MAX before handing it out. */
char *fc_auth_mint(fc_auth_t *a, const fc_claims_t *c, int64_t now_s, int64_t ttl_s);

/* Reads DIR/jwt.secret, creating it (32 random bytes, hex, mode 0600) on first
 * start. Returns the key length, or a negative errno with `err`: -EINVAL for a
 * damaged file, the errno of a failed read or write. */
int fc_auth_load_secret(const char *dir, uint8_t *out, size_t cap, char *err, size_t errlen);

/* Failed-login limits: at most `max` failures per key (an address, a user)
 * within `window_s` seconds. Thread-safe, bounded in memory. */
typedef struct fc_limiter fc_limiter_t;
fc_limiter_t *fc_limiter_new(unsigned max, unsigned window_s);
void fc_limiter_free(fc_limiter_t *l);
/* Cluster mode: counts go to (and are read from) the Redis at `url`, shared
 * by every node; while it cannot be reached, this node counts alone. Checks
 * and failures then block on Redis: call them off the loop threads. Returns
 * 0, or a negative errno with `err` (a bad URL, Redis unreachable). */
int fc_limiter_share(fc_limiter_t *l, const char *redis_url, char *err, size_t errlen);
/* 0 when `key` may try now, else the seconds to wait. */
unsigned fc_limiter_check(fc_limiter_t *l, const char *key, int64_t now_s);
void fc_limiter_fail(fc_limiter_t *l, const char *key, int64_t now_s);

/* Rate limits (rate.c): a token bucket per key (a token's subject), of
 * `burst` tokens refilled at `rate` per second. Thread-safe (sharded locks),
 * bounded in memory: keys beyond the table's room take over the slot of a
 * key whose bucket has refilled (so a key is never limited harder than its
 * own use made it). On this node only, also in cluster mode. */
typedef struct fc_rate fc_rate_t;
/* NULL when `rate` is 0 (no limit); `burst` 0 means `rate`. */
fc_rate_t *fc_rate_new(double rate, double burst);
void fc_rate_free(fc_rate_t *r);
/* Takes `n` tokens from `key`'s bucket at `now_ms` (a monotonic clock).
 * Returns 0 when they were there (taken), else the milliseconds until they
 * will be (nothing taken); at least 1. A take larger than the burst passes
 * when the bucket is full and leaves it in debt, so a big batch is delayed,
 * never refused forever. A NULL limiter always returns 0. */
uint64_t fc_rate_take(fc_rate_t *r, const char *key, double n, uint64_t now_ms);

#endif
