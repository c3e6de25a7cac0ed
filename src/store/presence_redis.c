/* Presence entries in Redis: a writer thread (joins, leaves, refreshes,
 * sweeps), a subscriber thread (other nodes' notices), and reads under a
 * lock on their own connection. See presence_redis.h for the keys. */
#include "store/presence_redis.h"

#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/redis.h"

/* Every script reads Redis' clock, so nodes' clocks do not matter. */
#define NOW_LUA "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

/* KEYS: zset, hash, fc:prch. ARGV: node, conn, json, ttl ms, bus, message, channel. */
static const char join_lua[] = NOW_LUA "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) "
                                       "redis.call('PEXPIRE', KEYS[2], 2 * ARGV[4]) "
                                       "redis.call('ZADD', KEYS[1], now + ARGV[4], ARGV[1]) "
                                       "redis.call('PEXPIRE', KEYS[1], 2 * ARGV[4]) "
                                       "redis.call('SADD', KEYS[3], ARGV[7]) "
                                       "redis.call('PUBLISH', ARGV[5], ARGV[6]) return 1";
/* KEYS: zset, hash. ARGV: node, conn, bus, message. */
static const char leave_lua[] = "redis.call('HDEL', KEYS[2], ARGV[2]) "
                                "if redis.call('HLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end "
                                "redis.call('PUBLISH', ARGV[3], ARGV[4]) return 1";
/* KEYS: zset, hash. ARGV: node, ttl ms. */
static const char refresh_lua[] = NOW_LUA "if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end "
                                          "redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1]) "
                                          "redis.call('PEXPIRE', KEYS[1], 2 * ARGV[2]) "
                                          "redis.call('PEXPIRE', KEYS[2], 2 * ARGV[2]) return 1";
/* KEYS: fc:prch. ARGV: bus. Takes every dead node's entries and publishes
 * a leave for each; forgets channels nobody is on. */
static const char sweep_lua[] =
    NOW_LUA "local n = 0 "
            "for _, ch in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
            "  local z = 'fc:pr:' .. ch "
            "  for _, node in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now)) do "
            "    local h = z .. '|' .. node "
            "    for _, j in ipairs(redis.call('HVALS', h)) do "
            "      redis.call('PUBLISH', ARGV[1], 'L\\n' .. node .. '\\n' .. ch .. '\\n' .. j) n = n + 1 "
            "    end "
            "    redis.call('DEL', h) redis.call('ZREM', z, node) "
            "  end "
            "  if redis.call('EXISTS', z) == 0 then redis.call('SREM', KEYS[1], ch) end "
            "end return n";
/* KEYS: zset. The entries of the live nodes. */
static const char read_lua[] =
    NOW_LUA "local out = {} "
            "for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do "
            "  for _, j in ipairs(redis.call('HVALS', KEYS[1] .. '|' .. node)) do "
            "    out[#out + 1] = j "
            "  end "
            "end return out";

typedef struct op {
  struct op *next;
  bool join;
  char *channel, *conn, *json;
} op_t;

/* A channel with local entries: refreshed while count > 0. */
typedef struct {
  char *name;
  size_t count;
} local_t;

struct fc_prstore {
  fc__redis_url_t url;
  char node[400]; /* NAME/TAG */
  char bus[64];   /* fc:pres:<db> */
  unsigned ttl_ms;
  fc_prstore_notice_cb cb;
  void *ud;
  pthread_t writer, subscriber;
  pthread_mutex_t lock; /* ops, stop */
  pthread_cond_t cond;
  op_t *head, *tail;
  bool stop;
  local_t *locals; /* the writer's own */
  size_t nlocals;
  pthread_mutex_t read_lock; /* the read connection */
  redisContext *reader;
};

static void op_free(op_t *o) {
  free(o->channel);
  free(o->conn);
  free(o->json);
  free(o);
}

static void keys_of(const char *channel, const char *node, char *z, size_t zlen, char *h, size_t hlen) {
  snprintf(z, zlen, "fc:pr:%s", channel);
  snprintf(h, hlen, "fc:pr:%s|%s", channel, node);
}

/* Counts a local entry in or out of its channel's refresh list. */
static void count_local(fc_prstore_t *s, const char *channel, bool join) {
  for (size_t i = 0; i < s->nlocals; i++)
    if (!strcmp(s->locals[i].name, channel)) {
      if (join) s->locals[i].count++;
      else if (--s->locals[i].count == 0) {
        free(s->locals[i].name);
        s->locals[i] = s->locals[--s->nlocals];
      }
      return;
    }
  if (!join) return;
  s->locals = fc_xrealloc(s->locals, (s->nlocals + 1) * sizeof *s->locals);
  s->locals[s->nlocals++] = (local_t){fc_xstrndup(channel, strlen(channel)), 1};
}

/* Runs one op; false when the connection failed. */
static bool write_op(fc_prstore_t *s, redisContext *c, const op_t *o) {
  char z[200], h[620], ttl[16];
  keys_of(o->channel, s->node, z, sizeof z, h, sizeof h);
  snprintf(ttl, sizeof ttl, "%u", s->ttl_ms);
  fc_buf_t msg;
  fc_buf_init(&msg);
  fc_buf_printf(&msg, "%c\n%s\n%s\n%s", o->join ? 'J' : 'L', s->node, o->channel, o->json);
  fc_buf_append(&msg, "", 1);
  redisReply *r =
      o->join ? redisCommand(c, "EVAL %s 3 %s %s fc:prch %s %s %s %s %s %s %s", join_lua, z, h, s->node, o->conn,
                             o->json, ttl, s->bus, msg.data, o->channel)
              : redisCommand(c, "EVAL %s 2 %s %s %s %s %s %s", leave_lua, z, h, s->node, o->conn, s->bus, msg.data);
  fc_buf_dispose(&msg);
  bool ok = r != NULL;
  if (r && r->type == REDIS_REPLY_ERROR) fc_log(FC_LOG_WARN, "presence write refused", "error=\"%s\"", r->str);
  if (r) freeReplyObject(r);
  return ok;
}

/* Renews this node's score and keys on every channel it has entries on. */
static bool refresh(fc_prstore_t *s, redisContext *c) {
  char ttl[16];
  snprintf(ttl, sizeof ttl, "%u", s->ttl_ms);
  for (size_t i = 0; i < s->nlocals; i++) {
    char z[200], h[620];
    keys_of(s->locals[i].name, s->node, z, sizeof z, h, sizeof h);
    redisReply *r = redisCommand(c, "EVAL %s 2 %s %s %s %s", refresh_lua, z, h, s->node, ttl);
    if (!r) return false;
    freeReplyObject(r);
  }
  return true;
}

/* Takes the dead nodes' entries (one script: one node gets each). */
static bool sweep(fc_prstore_t *s, redisContext *c) {
  redisReply *r = redisCommand(c, "EVAL %s 1 fc:prch %s", sweep_lua, s->bus);
  if (!r) return false;
  if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
    fc_log(FC_LOG_INFO, "presence: a lost node's entries removed", "entries=%lld", (long long)r->integer);
  freeReplyObject(r);
  return true;
}

/* Writes queued ops; sweeps every second and refreshes every third of the
 * TTL (at least 3 s, so at least a second), until stopped. */
static void *writer_main(void *arg) {
  fc_prstore_t *s = arg;
  redisContext *c = NULL;
  uint64_t next_sweep = 0, next_refresh = 0;
  char err[256];
  pthread_mutex_lock(&s->lock);
  for (;;) {
    op_t *ops = s->head;
    s->head = s->tail = NULL;
    bool stop = s->stop;
    pthread_mutex_unlock(&s->lock);
    if (!c && !(c = fc__redis_connect(&s->url, 1000, err, sizeof err)))
      fc_log(FC_LOG_WARN, "presence: Redis unreachable", "error=\"%s\"", err);
    for (op_t *o = ops, *next; o; o = next) {
      next = o->next;
      count_local(s, o->channel, o->join);
      if (c && !write_op(s, c, o)) redisFree(c), c = NULL;
      op_free(o);
    }
    if (stop) break;
    if (c && fc_mono_ms() >= next_refresh) {
      next_refresh = fc_mono_ms() + s->ttl_ms / 3;
      if (!refresh(s, c)) redisFree(c), c = NULL;
    }
    if (c && fc_mono_ms() >= next_sweep) {
      next_sweep = fc_mono_ms() + 1000;
      if (!sweep(s, c)) redisFree(c), c = NULL;
    }
    pthread_mutex_lock(&s->lock);
    if (!s->head && !s->stop) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 200 * 1000000L;
      if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
      pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
  }
  if (c) redisFree(c);
  return NULL;
}

/* One Pub/Sub message: "J|L\nNODE\nCHANNEL\nJSON"; our own are skipped. */
static void on_message(fc_prstore_t *s, const char *p, size_t n) {
  const char *end = p + n, *nl1 = memchr(p, '\n', n);
  if (!nl1 || nl1 - p != 1) return;
  const char *node = nl1 + 1, *nl2 = memchr(node, '\n', (size_t)(end - node));
  if (!nl2) return;
  const char *ch = nl2 + 1, *nl3 = memchr(ch, '\n', (size_t)(end - ch));
  if (!nl3) return;
  /* Our own notices went to our hub when they happened. */
  if ((size_t)(nl2 - node) == strlen(s->node) && !memcmp(node, s->node, (size_t)(nl2 - node))) return;
  char channel[200];
  size_t clen = (size_t)(nl3 - ch);
  if (clen >= sizeof channel) return;
  memcpy(channel, ch, clen);
  channel[clen] = '\0';
  s->cb(s->ud, p[0] == 'J', channel, nl3 + 1, (size_t)(end - nl3 - 1));
}

static bool stopping(fc_prstore_t *s) {
  pthread_mutex_lock(&s->lock);
  bool stop = s->stop;
  pthread_mutex_unlock(&s->lock);
  return stop;
}

static void *subscriber_main(void *arg) {
  fc_prstore_t *s = arg;
  char err[256];
  while (!stopping(s)) {
    redisContext *c = fc__redis_connect(&s->url, 1000, err, sizeof err);
    redisReply *r = c ? redisCommand(c, "SUBSCRIBE %s", s->bus) : NULL;
    if (r) freeReplyObject(r);
    while (r && !stopping(s)) {
      void *reply = NULL;
      if (redisGetReplyFromReader(c, &reply) != REDIS_OK) break;
      if (!reply) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) > 0 && redisBufferRead(c) != REDIS_OK) break;
        continue;
      }
      redisReply *m = reply;
      if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 && m->element[2]->type == REDIS_REPLY_STRING)
        on_message(s, m->element[2]->str, m->element[2]->len);
      freeReplyObject(m);
    }
    if (c) redisFree(c);
    for (int i = 0; i < 5 && !stopping(s); i++) usleep(200 * 1000); /* then reconnect */
  }
  return NULL;
}

fc_prstore_t *fc_prstore_open(const char *url, const char *node, unsigned ttl_ms, fc_prstore_notice_cb cb, void *ud,
                              char *err, size_t errlen) {
  fc_prstore_t *s = fc_xcalloc(1, sizeof *s);
  if (fc__redis_url_parse(url, &s->url, err, errlen) < 0 ||
      !(s->reader = fc__redis_connect(&s->url, 1000, err, errlen))) {
    free(s);
    return NULL;
  }
  uint8_t tag[4];
  randombytes_buf(tag, sizeof tag);
  snprintf(s->node, sizeof s->node, "%s/%02x%02x%02x%02x", node, tag[0], tag[1], tag[2], tag[3]);
  snprintf(s->bus, sizeof s->bus, "fc:pres:%u", s->url.db);
  s->ttl_ms = ttl_ms;
  s->cb = cb;
  s->ud = ud;
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->read_lock, NULL);
  pthread_cond_init(&s->cond, NULL);
  pthread_create(&s->writer, NULL, writer_main, s);
  pthread_create(&s->subscriber, NULL, subscriber_main, s);
  return s;
}

void fc_prstore_close(fc_prstore_t *s) {
  if (!s) return;
  pthread_mutex_lock(&s->lock);
  s->stop = true;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->writer, NULL);
  pthread_join(s->subscriber, NULL);
  for (size_t i = 0; i < s->nlocals; i++) free(s->locals[i].name);
  free(s->locals);
  if (s->reader) redisFree(s->reader);
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->read_lock);
  pthread_cond_destroy(&s->cond);
  free(s);
}

static void enqueue(fc_prstore_t *s, bool join, const char *channel, const char *conn, const char *json) {
  op_t *o = fc_xcalloc(1, sizeof *o);
  o->join = join;
  o->channel = fc_xstrndup(channel, strlen(channel));
  o->conn = fc_xstrndup(conn, strlen(conn));
  o->json = fc_xstrndup(json, strlen(json));
  pthread_mutex_lock(&s->lock);
  if (s->tail) s->tail->next = o;
  else s->head = o;
  s->tail = o;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

void fc_prstore_join(fc_prstore_t *s, const char *channel, const char *conn, const char *json) {
  enqueue(s, true, channel, conn, json);
}

void fc_prstore_leave(fc_prstore_t *s, const char *channel, const char *conn, const char *json) {
  enqueue(s, false, channel, conn, json);
}

long fc_prstore_read(fc_prstore_t *s, const char *channel, char ***out) {
  char z[200], err[256];
  snprintf(z, sizeof z, "fc:pr:%s", channel);
  *out = NULL;
  pthread_mutex_lock(&s->read_lock);
  if (!s->reader) s->reader = fc__redis_connect(&s->url, 1000, err, sizeof err);
  redisReply *r = s->reader ? redisCommand(s->reader, "EVAL %s 1 %s", read_lua, z) : NULL;
  if (!r && s->reader) {
    redisFree(s->reader);
    s->reader = NULL;
  }
  pthread_mutex_unlock(&s->read_lock);
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    if (r) freeReplyObject(r);
    return -EIO;
  }
  char **v = fc_xcalloc(r->elements + 1, sizeof *v);
  for (size_t i = 0; i < r->elements; i++) v[i] = fc_xstrndup(r->element[i]->str, r->element[i]->len);
  long n = (long)r->elements;
  freeReplyObject(r);
  *out = v;
  return n;
}
