/* The Redis store's reads (a channel's tail and counters, a range after an
 * id, the channel list) on its blocking connection, and the bus message
 * parser. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/redis.h"
#include "store/redis_lua.h"
#include "store/redis_store.h"

/* The blocking connection, opened again after an error, but not while the
 * store's thread has no connection to Redis (a read then fails at once
 * instead of holding a loop thread for a connect timeout). Under sync_lock. */
static redisContext *sync_conn(fc__redis_t *r) {
  if (r->sync && r->sync->err) {
    redisFree(r->sync);
    r->sync = NULL;
  }
  if (!r->sync && atomic_load(&r->reachable)) {
    char err[256];
    r->sync = fc__redis_connect(&r->url, 1000, err, sizeof err);
    if (!r->sync) fc_log(FC_LOG_DEBUG, "redis read connection failed", "error=\"%s\"", err);
  }
  return r->sync;
}

/* Sends `n` appended commands' replies into `out`; -ENOTCONN when the
 * connection failed (it is dropped), -EIO for an error reply. */
static int replies(redisContext *c, redisReply **out, size_t n) {
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    void *rep = NULL;
    if (redisGetReply(c, &rep) != REDIS_OK) {
      for (size_t k = i; k < n; k++) out[k] = NULL;
      rc = -ENOTCONN;
      break;
    }
    out[i] = rep;
    if (out[i]->type == REDIS_REPLY_ERROR) {
      fc_log(FC_LOG_WARN, "redis read failed", "error=\"%s\"", out[i]->str);
      rc = rc ? rc : -EIO;
    }
  }
  if (rc < 0)
    for (size_t i = 0; i < n; i++)
      if (out[i]) freeReplyObject(out[i]), out[i] = NULL;
  return rc;
}

static uint64_t reply_u64(const redisReply *r) {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0 ? (uint64_t)r->integer : 0;
  if (r->type == REDIS_REPLY_STRING) return strtoull(r->str, NULL, 10);
  return 0;
}

/* A stream entry [id, [field, value, ...]] as an event; false if malformed. */
static bool entry_event(const redisReply *e, fc_store_event_t *ev) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
      e->element[1]->type != REDIS_REPLY_ARRAY)
    return false;
  memset(ev, 0, sizeof *ev);
  ev->seq = strtoull(e->element[0]->str, NULL, 10);
  const redisReply *f = e->element[1];
  for (size_t i = 0; i + 1 < f->elements; i += 2) {
    const redisReply *k = f->element[i], *v = f->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1) continue;
    fc_str_t s = {v->str, v->len};
    switch (k->str[0]) {
      case 'n': ev->n = strtoull(v->str, NULL, 10); break;
      case 't': ev->time_ms = strtoll(v->str, NULL, 10); break;
      case 'e': ev->name = s; break;
      case 'd': ev->data = s; break;
      case 'f': ev->from = s; break;
      case 'j': ev->is_json = v->str[0] == '1'; break;
    }
  }
  return ev->seq && ev->n;
}

/* Fills a channel's counters from HMGET n first last and XLEN. */
static void counters(const redisReply *meta, const redisReply *len, fc_store_channel_t *out) {
  memset(out, 0, sizeof *out);
  out->next_n = reply_u64(meta->element[0]) + 1;
  out->first_seq = reply_u64(meta->element[1]);
  out->last_seq = reply_u64(meta->element[2]);
  out->stored = reply_u64(len);
}

int fc__redis_load(fc_store_t *base, const char *channel, unsigned limit, fc_store_channel_t *out,
                   void (*each)(void *ud, const fc_store_event_t *ev), void *ud) {
  fc__redis_t *r = (fc__redis_t *)base;
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&r->sync_lock);
  redisContext *c = sync_conn(r);
  redisReply *rep[3] = {0};
  int rc = c ? 0 : -ENOTCONN;
  if (c) {
    redisAppendCommand(c, "HMGET fc:m:%s n first last", channel);
    redisAppendCommand(c, "XLEN fc:s:%s", channel);
    redisAppendCommand(c, "XREVRANGE fc:s:%s + - COUNT %u", channel, limit ? limit : 1);
    rc = replies(c, rep, 3);
  }
  pthread_mutex_unlock(&r->sync_lock);
  if (rc == 0 && (rep[0]->type != REDIS_REPLY_ARRAY || rep[0]->elements != 3 || rep[2]->type != REDIS_REPLY_ARRAY))
    rc = -EIO;
  if (rc == 0 && rep[0]->element[0]->type == REDIS_REPLY_NIL) rc = 0; /* never published */
  else if (rc == 0) {
    counters(rep[0], rep[1], out);
    for (size_t i = limit ? rep[2]->elements : 0; i-- > 0;) {
      fc_store_event_t ev;
      if (entry_event(rep[2]->element[i], &ev)) each(ud, &ev);
    }
    rc = 1;
  }
  for (int i = 0; i < 3; i++)
    if (rep[i]) freeReplyObject(rep[i]);
  return rc;
}

int fc__redis_range(fc_store_t *base, const char *channel, uint64_t after, unsigned limit,
                    void (*each)(void *ud, const fc_store_event_t *ev), void *ud) {
  fc__redis_t *r = (fc__redis_t *)base;
  pthread_mutex_lock(&r->sync_lock);
  redisContext *c = sync_conn(r);
  redisReply *rep = NULL;
  int rc = c ? 0 : -ENOTCONN;
  if (c) {
    /* Entry ids are "<id>-0": "<after>-1" starts just past `after`. */
    redisAppendCommand(c, "XRANGE fc:s:%s %llu-1 + COUNT %u", channel, (unsigned long long)after, limit);
    rc = replies(c, &rep, 1);
  }
  pthread_mutex_unlock(&r->sync_lock);
  if (rc == 0 && rep->type != REDIS_REPLY_ARRAY) rc = -EIO;
  if (rc == 0) {
    for (size_t i = 0; i < rep->elements; i++) {
      fc_store_event_t ev;
      if (entry_event(rep->element[i], &ev)) each(ud, &ev), rc++;
    }
  }
  if (rep) freeReplyObject(rep);
  return rc;
}

int fc__redis_channels(fc_store_t *base, const char *after, unsigned limit,
                       void (*each)(void *ud, const char *name, const fc_store_channel_t *c), void *ud) {
  fc__redis_t *r = (fc__redis_t *)base;
  pthread_mutex_lock(&r->sync_lock);
  redisContext *c = sync_conn(r);
  redisReply *names = NULL, **rep = NULL;
  int rc = c ? 0 : -ENOTCONN;
  if (c) {
    if (*after) redisAppendCommand(c, "ZRANGEBYLEX fc:channels (%s + LIMIT 0 %u", after, limit);
    else redisAppendCommand(c, "ZRANGEBYLEX fc:channels - + LIMIT 0 %u", limit);
    rc = replies(c, &names, 1);
  }
  if (rc == 0 && names->type != REDIS_REPLY_ARRAY) rc = -EIO;
  size_t n = rc == 0 ? names->elements : 0;
  if (n) {
    rep = fc_xcalloc(2 * n, sizeof *rep);
    for (size_t i = 0; i < n; i++) {
      redisAppendCommand(c, "HMGET fc:m:%s n first last", names->element[i]->str);
      redisAppendCommand(c, "XLEN fc:s:%s", names->element[i]->str);
    }
    rc = replies(c, rep, 2 * n);
  }
  pthread_mutex_unlock(&r->sync_lock);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (rep[2 * i]->type != REDIS_REPLY_ARRAY || rep[2 * i]->elements != 3) continue;
    fc_store_channel_t ch;
    counters(rep[2 * i], rep[2 * i + 1], &ch);
    each(ud, names->element[i]->str, &ch);
  }
  for (size_t i = 0; rep && i < 2 * n; i++)
    if (rep[i]) freeReplyObject(rep[i]);
  free(rep);
  if (names) freeReplyObject(names);
  return rc < 0 ? rc : (int)n;
}

int fc__redis_shared_secret(fc_store_t *base, const char *name, const uint8_t *candidate, uint8_t *out, size_t len) {
  fc__redis_t *r = (fc__redis_t *)base;
  pthread_mutex_lock(&r->sync_lock);
  redisContext *c = sync_conn(r);
  redisReply *rep[2] = {0};
  int rc = c ? 0 : -ENOTCONN;
  if (c) {
    redisAppendCommand(c, "SET fc:secret:%s %b NX", name, candidate, len);
    redisAppendCommand(c, "GET fc:secret:%s", name);
    rc = replies(c, rep, 2);
  }
  pthread_mutex_unlock(&r->sync_lock);
  if (rc == 0 && (rep[1]->type != REDIS_REPLY_STRING || rep[1]->len != len)) rc = -EIO;
  if (rc == 0) memcpy(out, rep[1]->str, len);
  for (int i = 0; i < 2; i++)
    if (rep[i]) freeReplyObject(rep[i]);
  return rc;
}

int fc__redis_epoch(fc__redis_t *r) {
  uint8_t raw[12];
  char fresh[25];
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f || fread(raw, 1, sizeof raw, f) != sizeof raw) memcpy(raw, &(int64_t){fc_now_ms()}, sizeof(int64_t));
  if (f) fclose(f);
  for (size_t i = 0; i < sizeof raw; i++) snprintf(fresh + 2 * i, 3, "%02x", raw[i]);
  pthread_mutex_lock(&r->sync_lock);
  redisContext *c = sync_conn(r);
  redisReply *rep[2] = {0};
  int rc = c ? 0 : -ENOTCONN;
  if (c) {
    redisAppendCommand(c, "SET fc:epoch %s NX", fresh);
    redisAppendCommand(c, "GET fc:epoch");
    rc = replies(c, rep, 2);
  }
  pthread_mutex_unlock(&r->sync_lock);
  if (rc == 0 && (rep[1]->type != REDIS_REPLY_STRING || rep[1]->len >= sizeof r->epoch)) rc = -EIO;
  if (rc == 0) memcpy(r->epoch, rep[1]->str, rep[1]->len + 1);
  for (int i = 0; i < 2; i++)
    if (rep[i]) freeReplyObject(rep[i]);
  return rc;
}

int fc__redis_reseed(fc_store_t *base, uint64_t last_seq, const char *const *names, const uint64_t *last_n, size_t n) {
  fc__redis_t *r = (fc__redis_t *)base;
  enum { SLICE = 256 };
  int rc = 0;
  for (size_t at = 0; rc == 0 && (at < n || at == 0); at += SLICE) {
    size_t k = n - at < SLICE ? n - at : SLICE;
    const char *argv[4 + 2 * SLICE];
    size_t lens[4 + 2 * SLICE];
    char nums[1 + SLICE][24];
    size_t argc = 0;
    argv[argc] = "EVAL", lens[argc++] = 4;
    argv[argc] = FC_REDIS_RESEED_LUA, lens[argc++] = strlen(FC_REDIS_RESEED_LUA);
    argv[argc] = "0", lens[argc++] = 1;
    snprintf(nums[0], sizeof nums[0], "%llu", (unsigned long long)last_seq);
    argv[argc] = nums[0], lens[argc++] = strlen(nums[0]);
    for (size_t i = 0; i < k; i++) {
      snprintf(nums[1 + i], sizeof nums[1 + i], "%llu", (unsigned long long)last_n[at + i]);
      argv[argc] = names[at + i], lens[argc++] = strlen(names[at + i]);
      argv[argc] = nums[1 + i], lens[argc++] = strlen(nums[1 + i]);
    }
    pthread_mutex_lock(&r->sync_lock);
    redisContext *c = sync_conn(r);
    redisReply *rep = NULL;
    rc = c ? 0 : -ENOTCONN;
    if (c) {
      redisAppendCommandArgv(c, (int)argc, argv, lens);
      rc = replies(c, &rep, 1);
    }
    pthread_mutex_unlock(&r->sync_lock);
    if (rep) freeReplyObject(rep);
    if (n == 0) break;
  }
  return rc;
}

int fc__redis_claim(fc_store_t *base, const char *key, unsigned ttl_s) {
  fc__redis_t *r = (fc__redis_t *)base;
  pthread_mutex_lock(&r->sync_lock);
  redisContext *c = sync_conn(r);
  redisReply *rep = NULL;
  int rc = c ? 0 : -ENOTCONN;
  if (c) {
    redisAppendCommand(c, "SET fc:claim:%s 1 NX EX %u", key, ttl_s);
    rc = replies(c, &rep, 1);
  }
  pthread_mutex_unlock(&r->sync_lock);
  if (rc == 0) rc = rep->type == REDIS_REPLY_STATUS ? 1 : 0; /* OK, or nil: taken */
  if (rep) freeReplyObject(rep);
  return rc;
}

/* ---- the bus -------------------------------------------------------------- */

/* Reads a decimal number and the space after it. */
static bool number_sp(const char **p, const char *end, uint64_t *out) {
  const char *s = *p;
  while (*p < end && **p != ' ') (*p)++;
  if (*p == end || fc_parse_u64(s, (size_t)(*p - s), out) < 0) return false;
  (*p)++;
  return true;
}

/* Takes `len` bytes as a slice. */
static bool bytes(const char **p, const char *end, uint64_t len, fc_str_t *out) {
  if ((uint64_t)(end - *p) < len) return false;
  *out = (fc_str_t){*p, (size_t)len};
  *p += len;
  return true;
}

int fc__redis_parse_bus(const char *p, size_t n, fc_bus_msg_t *m, fc_store_event_t **evs, size_t *cap) {
  const char *end = p + n;
  memset(m, 0, sizeof *m);
  if (n < 2 || p[1] != ' ' || (p[0] != 'E' && p[0] != 'P')) return -EINVAL;
  bool purge = p[0] == 'P';
  p += 2;
  uint64_t s0 = 0, n0 = 0, ms = 0, k = 0, len;
  if (purge && !number_sp(&p, end, &m->upto)) return -EINVAL;
  if (!purge && (!number_sp(&p, end, &s0) || !number_sp(&p, end, &n0) || !number_sp(&p, end, &ms) ||
                 !number_sp(&p, end, &k) || k == 0 || k > 1000000))
    return -EINVAL;
  if (!number_sp(&p, end, &len) || !bytes(&p, end, len, &m->channel)) return -EINVAL;
  m->kind = purge ? FC_BUS_PURGE : FC_BUS_EVENTS;
  if (purge) return 0;
  if (k > *cap) {
    *cap = k;
    *evs = fc_xrealloc(*evs, k * sizeof **evs);
  }
  for (uint64_t i = 0; i < k; i++) {
    fc_store_event_t *e = &(*evs)[i];
    uint64_t nl, dl, fl, j;
    if (p == end || *p++ != ' ' || !number_sp(&p, end, &nl) || !number_sp(&p, end, &dl) || !number_sp(&p, end, &fl) ||
        !number_sp(&p, end, &j) || !bytes(&p, end, nl, &e->name) || !bytes(&p, end, dl, &e->data) ||
        !bytes(&p, end, fl, &e->from))
      return -EINVAL;
    e->is_json = j == 1;
    e->seq = s0 + i;
    e->n = n0 + i;
    e->time_ms = (int64_t)ms;
  }
  m->events = *evs;
  m->n = (size_t)k;
  return p == end ? 0 : -EINVAL;
}
