/* The records of cluster mode: user accounts in Redis, in the hash fc:users
 * (name -> "<admin 0|1> <created ms> <hash>"), so that every node and the
 * command line see the same users. Workflow jobs stay in each node's
 * database for now (records.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/records_redis.h"

/* Keeps hiredis' message for fc_records_error; drops a broken connection
 * (opened again on the next call). Returns -EIO. */
static int failed(fc__rrec_t *r, redisReply *rep) {
  snprintf(r->error, sizeof r->error, "redis: %s",
           rep && rep->type == REDIS_REPLY_ERROR ? rep->str
           : r->c                                ? r->c->errstr
                                                 : "not connected");
  if (rep) freeReplyObject(rep);
  if (r->c && r->c->err) {
    redisFree(r->c);
    r->c = NULL;
  }
  return -EIO;
}

/* A command's reply, connecting first if needed; NULL (kept as the error)
 * when Redis cannot be reached or answers an error. */
static redisReply *command(fc__rrec_t *r, const char *fmt, ...) {
  if (!r->c) {
    char err[256];
    r->c = fc__redis_connect(&r->url, 2000, err, sizeof err);
    if (!r->c) {
      snprintf(r->error, sizeof r->error, "%s", err);
      return NULL;
    }
  }
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(r->c, fmt, ap);
  va_end(ap);
  if (!rep || rep->type == REDIS_REPLY_ERROR) {
    failed(r, rep);
    return NULL;
  }
  return rep;
}

int fc__rrec_open(fc__rrec_t *r, const char *url, char *err, size_t errlen) {
  if (fc__redis_url_parse(url, &r->url, err, errlen) < 0) return -EINVAL;
  r->c = fc__redis_connect(&r->url, 3000, err, errlen);
  return r->c ? 0 : -ENOTCONN;
}

void fc__rrec_close(fc__rrec_t *r) {
  if (r->c) redisFree(r->c);
  r->c = NULL;
}

int fc__rrec_users_count(fc__rrec_t *r) {
  redisReply *rep = command(r, "HLEN fc:users");
  if (!rep) return -EIO;
  int n = (int)rep->integer;
  freeReplyObject(rep);
  return n;
}

int fc__rrec_user_add(fc__rrec_t *r, const char *name, const char *hash, bool admin, int64_t created_ms) {
  char *value;
  if (asprintf(&value, "%d %lld %s", admin ? 1 : 0, (long long)created_ms, hash) < 0) return -ENOMEM;
  redisReply *rep = command(r, "HSETNX fc:users %s %s", name, value); /* one argument each */
  free(value);
  if (!rep) return -EIO;
  int rc = rep->integer == 1 ? 0 : -EEXIST;
  freeReplyObject(rep);
  return rc;
}

/* Replaces the hash, keeping the flag and the time, in one step. */
#define SET_HASH_LUA                                                                                                   \
  "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"                                                                   \
  "if not v then return 0 end\n"                                                                                       \
  "local head = string.match(v, '^%d %d+ ')\n"                                                                         \
  "redis.call('HSET', KEYS[1], ARGV[1], head .. ARGV[2])\n"                                                            \
  "return 1\n"

int fc__rrec_user_set_hash(fc__rrec_t *r, const char *name, const char *hash) {
  redisReply *rep = command(r, "EVAL %s 1 fc:users %s %s", SET_HASH_LUA, name, hash);
  if (!rep) return -EIO;
  int rc = rep->integer == 1 ? 0 : -ENOENT;
  freeReplyObject(rep);
  return rc;
}

int fc__rrec_user_delete(fc__rrec_t *r, const char *name) {
  redisReply *rep = command(r, "HDEL fc:users %s", name);
  if (!rep) return -EIO;
  int rc = rep->integer == 1 ? 0 : -ENOENT;
  freeReplyObject(rep);
  return rc;
}

/* Splits "<admin> <created> <hash>"; false for a value flowcast did not write. */
static bool parse_user(const char *v, bool *admin, int64_t *created, const char **hash) {
  char *end;
  if ((v[0] != '0' && v[0] != '1') || v[1] != ' ') return false;
  *admin = v[0] == '1';
  *created = strtoll(v + 2, &end, 10);
  if (*end != ' ') return false;
  *hash = end + 1;
  return true;
}

typedef struct {
  const char *name, *value;
} pair_t;

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const pair_t *)a)->name, ((const pair_t *)b)->name);
}

int fc__rrec_users_list(fc__rrec_t *r, fc_records_user_cb *each, void *ud) {
  redisReply *rep = command(r, "HGETALL fc:users");
  if (!rep) return -EIO;
  size_t n = rep->elements / 2;
  pair_t *users = fc_xmalloc((n ? n : 1) * sizeof *users);
  for (size_t i = 0; i < n; i++) users[i] = (pair_t){rep->element[2 * i]->str, rep->element[2 * i + 1]->str};
  qsort(users, n, sizeof *users, cmp_name);
  for (size_t i = 0; i < n; i++) {
    bool admin;
    int64_t created;
    const char *hash;
    if (parse_user(users[i].value, &admin, &created, &hash)) each(ud, users[i].name, admin, created);
  }
  free(users);
  freeReplyObject(rep);
  return 0;
}

int fc__rrec_user_get(fc__rrec_t *r, const char *name, char *hash, size_t hashlen, bool *admin) {
  redisReply *rep = command(r, "HGET fc:users %s", name);
  if (!rep) return -EIO;
  int rc = -ENOENT;
  int64_t created;
  const char *h;
  if (rep->type == REDIS_REPLY_STRING && parse_user(rep->str, admin, &created, &h)) {
    rc = strlen(h) >= hashlen ? -ENAMETOOLONG : 0;
    if (rc == 0) memcpy(hash, h, strlen(h) + 1);
  }
  freeReplyObject(rep);
  return rc;
}

/* ---- shared counters: fc:win:KEY, expiring with its window ---------------- */

#define WINDOW_HIT_LUA                                                                                                 \
  "local n = redis.call('INCR', KEYS[1])\n"                                                                            \
  "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"                                                        \
  "return n\n"

#define WINDOW_GET_LUA                                                                                                 \
  "local n = redis.call('GET', KEYS[1])\n"                                                                             \
  "if not n then return {0, 0} end\n"                                                                                  \
  "return {tonumber(n), redis.call('TTL', KEYS[1])}\n"

int fc__rrec_window_hit(fc__rrec_t *r, const char *key, unsigned window_s) {
  redisReply *rep = command(r, "EVAL %s 1 fc:win:%s %u", WINDOW_HIT_LUA, key, window_s);
  if (!rep) return -EIO;
  int n = rep->type == REDIS_REPLY_INTEGER ? (int)rep->integer : -EIO;
  freeReplyObject(rep);
  return n;
}

int fc__rrec_window_get(fc__rrec_t *r, const char *key, unsigned *ttl_s) {
  redisReply *rep = command(r, "EVAL %s 1 fc:win:%s", WINDOW_GET_LUA, key);
  if (!rep) return -EIO;
  int n = -EIO;
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
    n = (int)rep->element[0]->integer;
    *ttl_s = rep->element[1]->integer > 0 ? (unsigned)rep->element[1]->integer : 0;
  }
  freeReplyObject(rep);
  return n;
}
