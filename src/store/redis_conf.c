/* The Redis store's URL and its blocking connection (start-up checks and
 * reads): redis://[USER:PASSWORD@]HOST[:PORT][/DB]. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/redis.h"

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Copies [p, p+n) into `out` (size `cap`), percent-decoded. */
static int url_part(const char *p, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '%') {
      int hi = i + 2 < n ? hexval(p[i + 1]) : -1, lo = i + 2 < n ? hexval(p[i + 2]) : -1;
      if (hi < 0 || lo < 0) return -EINVAL;
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (o + 1 >= cap) return -EINVAL;
    out[o++] = c;
  }
  out[o] = 0;
  return 0;
}

int fc__redis_url_parse(const char *url, fc__redis_url_t *u, char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  u->port = 6379;
  if (!strncmp(url, "rediss://", 9)) {
    snprintf(err, errlen,
             "--redis: rediss:// (TLS) is not supported: the hiredis linked (%d.%d) has no TLS; "
             "use redis:// on a trusted network or a TLS tunnel (see docs/cluster.md)",
             HIREDIS_MAJOR, HIREDIS_MINOR);
    return -EINVAL;
  }
  if (strncmp(url, "redis://", 8)) {
    snprintf(err, errlen, "--redis: '%s' is not a redis:// URL (expected redis://[USER:PASSWORD@]HOST[:PORT][/DB])",
             url);
    return -EINVAL;
  }
  const char *p = url + 8, *end = p + strlen(p);
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon) colon = p - 1; /* a password alone, without a colon */
    if ((colon >= p && url_part(p, (size_t)(colon - p), u->user, sizeof u->user) < 0) ||
        url_part(colon + 1, (size_t)(at - colon - 1), u->password, sizeof u->password) < 0) {
      snprintf(err, errlen, "--redis: the user or password in the URL is malformed or too long");
      return -EINVAL;
    }
    p = at + 1;
  }
  const char *slash = memchr(p, '/', (size_t)(end - p));
  const char *host_end = slash ? slash : end;
  const char *colon = memchr(p, ':', (size_t)(host_end - p));
  const char *hend = colon ? colon : host_end;
  if (hend == p || (size_t)(hend - p) >= sizeof u->host) {
    snprintf(err, errlen, "--redis: no host in '%s' (expected redis://HOST[:PORT][/DB])", url);
    return -EINVAL;
  }
  memcpy(u->host, p, (size_t)(hend - p));
  if (colon) {
    uint64_t port;
    if (fc_parse_u64(colon + 1, (size_t)(host_end - colon - 1), &port) < 0 || port == 0 || port > 65535) {
      snprintf(err, errlen, "--redis: bad port in '%s' (expected 1 to 65535)", url);
      return -EINVAL;
    }
    u->port = (int)port;
  }
  if (slash && slash + 1 < end) {
    uint64_t db;
    if (fc_parse_u64(slash + 1, (size_t)(end - slash - 1), &db) < 0 || db > 1000000) {
      snprintf(err, errlen, "--redis: bad database number in '%s' (expected /0, /1, ...)", url);
      return -EINVAL;
    }
    u->db = (unsigned)db;
  }
  return 0;
}

/* AUTH (when the URL has a password) and SELECT on a new connection. */
static int handshake(redisContext *c, const fc__redis_url_t *u, char *err, size_t errlen) {
  redisReply *r;
  if (u->password[0]) {
    r = u->user[0] ? redisCommand(c, "AUTH %s %s", u->user, u->password) : redisCommand(c, "AUTH %s", u->password);
    if (!r || r->type == REDIS_REPLY_ERROR) {
      snprintf(err, errlen, "Redis at %s:%d refused the password: %s", u->host, u->port, r ? r->str : c->errstr);
      if (r) freeReplyObject(r);
      return -EACCES;
    }
    freeReplyObject(r);
  }
  r = redisCommand(c, "SELECT %u", u->db);
  if (!r || r->type == REDIS_REPLY_ERROR) {
    bool auth = r && (strstr(r->str, "NOAUTH") || strstr(r->str, "WRONGPASS"));
    snprintf(err, errlen, "Redis at %s:%d: %s%s", u->host, u->port, r ? r->str : c->errstr,
             auth ? " (the server needs a password: redis://:PASSWORD@HOST:PORT)" : "");
    if (r) freeReplyObject(r);
    return auth ? -EACCES : -EIO;
  }
  freeReplyObject(r);
  return 0;
}

redisContext *fc__redis_connect(const fc__redis_url_t *u, int timeout_ms, char *err, size_t errlen) {
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  redisContext *c = redisConnectWithTimeout(u->host, u->port, tv);
  if (!c || c->err) {
    snprintf(err, errlen, "cannot connect to Redis at %s:%d: %s", u->host, u->port, c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    return NULL;
  }
  struct timeval io = {2, 0}; /* a read that hangs longer fails */
  redisSetTimeout(c, io);
  if (handshake(c, u, err, errlen) < 0) {
    redisFree(c);
    return NULL;
  }
  return c;
}

/* Checks the server (streams need Redis 5) and loads a script, its SHA1 into
 * `sha` (41 bytes). */
int fc__redis_load_script(redisContext *c, const char *lua, char *sha, char *err, size_t errlen) {
  redisReply *r = redisCommand(c, "SCRIPT LOAD %s", lua);
  if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
    snprintf(err, errlen, "Redis refused flowcast's script: %s",
             r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
    if (r) freeReplyObject(r);
    return -EIO;
  }
  memcpy(sha, r->str, 41);
  freeReplyObject(r);
  return 0;
}

int fc__redis_check_version(redisContext *c, char *err, size_t errlen) {
  redisReply *r = redisCommand(c, "INFO server");
  if (!r || r->type != REDIS_REPLY_STRING) {
    snprintf(err, errlen, "Redis did not answer INFO: %s", r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
    if (r) freeReplyObject(r);
    return -EIO;
  }
  const char *v = strstr(r->str, "redis_version:");
  int major = v ? atoi(v + 14) : 0;
  freeReplyObject(r);
  if (major < 5) {
    snprintf(err, errlen, "Redis %d is too old: cluster mode needs Redis 5 or later (streams)", major);
    return -ENOTSUP;
  }
  return 0;
}
