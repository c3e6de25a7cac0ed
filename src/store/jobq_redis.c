/* jobq.h in Redis: one blocking hiredis connection per handle; the steps
 * that must be atomic are scripts (jobq_lua.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/jobq.h"
#include "store/jobq_lua.h"
#include "store/redis.h"

/* How long a handle fails fast after a failed connect (ms), and how long a
 * connect may take. */
_Static_assert(FC_JOBQ_KEEP == 10000, "JOBQ_LUA_INDEX's KEEP is FC_JOBQ_KEEP");

#define DOWN_MS 1000
#define CONNECT_MS 500

struct fc_jobq {
  fc__redis_url_t url;
  redisContext *c;
  uint64_t down_until; /* fc_mono_ms before which no connect is tried */
  char error[256];
};

fc_jobq_t *fc_jobq_open(const char *url, char *err, size_t errlen) {
  fc_jobq_t *q = fc_xcalloc(1, sizeof *q);
  if (fc__redis_url_parse(url, &q->url, err, errlen) < 0 || !(q->c = fc__redis_connect(&q->url, 3000, err, errlen))) {
    free(q);
    return NULL;
  }
  return q;
}

void fc_jobq_close(fc_jobq_t *q) {
  if (!q) return;
  if (q->c) redisFree(q->c);
  free(q);
}

const char *fc_jobq_error(const fc_jobq_t *q) { return q->error; }

static bool connected(fc_jobq_t *q) {
  if (q->c) return true;
  if (fc_mono_ms() < q->down_until) return false;
  q->c = fc__redis_connect(&q->url, CONNECT_MS, q->error, sizeof q->error);
  if (!q->c) q->down_until = fc_mono_ms() + DOWN_MS;
  return q->c != NULL;
}

/* Sends argv; the reply, or NULL (the error kept) when Redis cannot be
 * reached or answers an error. A broken connection is dropped. */
static redisReply *call(fc_jobq_t *q, int argc, const char **argv, const size_t *lens, int *rc) {
  if (!connected(q)) {
    *rc = -ENOTCONN;
    return NULL;
  }
  redisReply *r = redisCommandArgv(q->c, argc, argv, lens);
  if (r && r->type != REDIS_REPLY_ERROR) return r;
  snprintf(q->error, sizeof q->error, "redis: %s", r ? r->str : q->c->errstr);
  *rc = r ? -EIO : -ENOTCONN;
  if (r) freeReplyObject(r);
  if (q->c->err) {
    redisFree(q->c);
    q->c = NULL;
  }
  return NULL;
}

/* An argument list under construction: owned copies of formatted numbers. */
typedef struct {
  const char *v[48];
  size_t len[48];
  char num[48][24];
  int n;
} args_t;

static void arg(args_t *a, const char *s) {
  a->v[a->n] = s ? s : "";
  a->len[a->n] = strlen(a->v[a->n]);
  a->n++;
}

static void arg_i(args_t *a, long long v) {
  snprintf(a->num[a->n], sizeof a->num[a->n], "%lld", v);
  arg(a, a->num[a->n]);
}

/* A script call with its ARGV (no KEYS: every key is named by flowcast). */
static redisReply *script(fc_jobq_t *q, const char *lua, args_t *a, int *rc) {
  args_t full = {.n = 0};
  arg(&full, "EVAL");
  arg(&full, lua);
  arg(&full, "0");
  for (int i = 0; i < a->n; i++) full.v[full.n] = a->v[i], full.len[full.n++] = a->len[i];
  return call(q, full.n, full.v, full.len, rc);
}

static redisReply *cmd(fc_jobq_t *q, int *rc, int argc, ...) {
  args_t a = {.n = 0};
  va_list ap;
  va_start(ap, argc);
  for (int i = 0; i < argc; i++) arg(&a, va_arg(ap, const char *));
  va_end(ap);
  return call(q, a.n, a.v, a.len, rc);
}

/* The record's fields as HSET pairs. */
static void fields(args_t *a, const fc_jobq_row_t *w) {
  arg(a, "wf"), arg_i(a, w->wf);
  arg(a, "status"), arg(a, w->status);
  arg(a, "reason"), arg(a, w->reason);
  arg(a, "input"), arg(a, w->input);
  arg(a, "starter"), arg(a, w->starter);
  arg(a, "name"), arg(a, w->name);
  arg(a, "desc"), arg(a, w->description);
  if (w->node) arg(a, "node"), arg(a, w->node); /* else the claim's stays */
  arg(a, "created"), arg_i(a, w->created_ms);
  arg(a, "started"), arg_i(a, w->started_ms);
  arg(a, "ended"), arg_i(a, w->ended_ms);
  arg(a, "final"), arg_i(a, (long long)w->final_seq);
  arg(a, "task"), arg_i(a, (long long)w->task);
  if (w->max) arg(a, "max"), arg_i(a, w->max);
}

static int save(fc_jobq_t *q, const char *lua, const fc_jobq_row_t *row, long long third) {
  args_t a = {.n = 0};
  arg(&a, row->id), arg_i(&a, row->wf), arg_i(&a, third);
  fields(&a, row);
  int rc = 0;
  redisReply *r = script(q, lua, &a, &rc);
  if (!r) return rc;
  rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : -EAGAIN;
  freeReplyObject(r);
  return rc;
}

int fc_jobq_save(fc_jobq_t *q, const fc_jobq_row_t *row, bool final) { return save(q, JOBQ_LUA_SAVE, row, final); }

int fc_jobq_create(fc_jobq_t *q, const fc_jobq_row_t *row, unsigned max_queued) {
  return save(q, JOBQ_LUA_CREATE, row, max_queued);
}

/* An integer reply's value, or the error. */
static long long integer(redisReply *r, int rc) {
  if (!r) return rc;
  long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -EIO;
  freeReplyObject(r);
  return v;
}

/* A script with one argument, for its integer answer. */
static int script1(fc_jobq_t *q, const char *lua, const char *v) {
  args_t a = {.n = 0};
  arg(&a, v);
  int rc = 0;
  return (int)integer(script(q, lua, &a, &rc), rc);
}

int fc_jobq_push(fc_jobq_t *q, const char *id, bool swept) {
  args_t a = {.n = 0};
  arg(&a, id), arg(&a, swept ? "1" : "0");
  int rc = 0;
  return (int)integer(script(q, JOBQ_LUA_PUSH, &a, &rc), rc);
}

int fc_jobq_claim(fc_jobq_t *q, const char *node, char id[40]) {
  args_t a = {.n = 0};
  arg(&a, node);
  int rc = 0;
  redisReply *r = script(q, JOBQ_LUA_CLAIM, &a, &rc);
  if (!r) return rc;
  rc = r->type == REDIS_REPLY_STRING && r->len < 40;
  if (rc) memcpy(id, r->str, r->len + 1);
  freeReplyObject(r);
  return rc;
}

int fc_jobq_unqueue(fc_jobq_t *q, const char *id) { return script1(q, JOBQ_LUA_UNQUEUE, id); }

void fc_jobq_rows_dispose(fc_jobq_rows_t *r) {
  for (size_t i = 0; i < r->n; i++) {
    fc_jobq_row_t *w = &r->rows[i];
    free((char *)w->id), free((char *)w->status), free((char *)w->reason), free((char *)w->input);
    free((char *)w->starter), free((char *)w->name), free((char *)w->description), free((char *)w->node);
  }
  free(r->rows);
  r->rows = NULL;
  r->n = 0;
}

/* A field's copy: NULL for an empty one. */
static const char *own(const redisReply *v) { return v->type == REDIS_REPLY_STRING && v->len ? strdup(v->str) : NULL; }
static long long num(const redisReply *v) { return v->type == REDIS_REPLY_STRING ? strtoll(v->str, NULL, 10) : 0; }

/* Appends the record in an HGETALL reply (false when it is empty). */
static bool add_row(fc_jobq_rows_t *out, const char *id, const redisReply *r) {
  if (r->type != REDIS_REPLY_ARRAY || !r->elements) return false;
  out->rows = fc_xrealloc(out->rows, (out->n + 1) * sizeof *out->rows);
  fc_jobq_row_t *w = &out->rows[out->n++];
  *w = (fc_jobq_row_t){.id = strdup(id)};
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const char *k = r->element[i]->str;
    const redisReply *v = r->element[i + 1];
    if (!strcmp(k, "wf")) w->wf = num(v);
    else if (!strcmp(k, "status")) w->status = own(v);
    else if (!strcmp(k, "reason")) w->reason = own(v);
    else if (!strcmp(k, "input")) w->input = own(v);
    else if (!strcmp(k, "starter")) w->starter = own(v);
    else if (!strcmp(k, "name")) w->name = own(v);
    else if (!strcmp(k, "desc")) w->description = own(v);
    else if (!strcmp(k, "node")) w->node = own(v);
    else if (!strcmp(k, "created")) w->created_ms = num(v);
    else if (!strcmp(k, "started")) w->started_ms = num(v);
    else if (!strcmp(k, "ended")) w->ended_ms = num(v);
    else if (!strcmp(k, "final")) w->final_seq = (uint64_t)num(v);
    else if (!strcmp(k, "task")) w->task = (uint64_t)num(v);
    else if (!strcmp(k, "max")) w->max = (unsigned)num(v);
  }
  if (!w->status) w->status = strdup("Pending");
  return true;
}

/* Reads the records of `n` ids (pipelined) into `out`. */
static int read_rows(fc_jobq_t *q, const char *const *ids, size_t n, fc_jobq_rows_t *out) {
  if (!n) return 0;
  if (!connected(q)) return -ENOTCONN;
  for (size_t i = 0; i < n; i++) redisAppendCommand(q->c, "HGETALL fc:job:%s", ids[i]);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    redisReply *r = NULL;
    if (redisGetReply(q->c, (void **)&r) != REDIS_OK || !r) {
      snprintf(q->error, sizeof q->error, "redis: %s", q->c->errstr);
      redisFree(q->c);
      q->c = NULL;
      return -ENOTCONN;
    }
    if (r->type == REDIS_REPLY_ERROR) rc = -EIO;
    else add_row(out, ids[i], r);
    freeReplyObject(r);
  }
  return rc;
}

int fc_jobq_get(fc_jobq_t *q, const char *id, fc_jobq_rows_t *out) { return read_rows(q, &id, 1, out); }

/* The string elements of an array reply from `from` on, borrowed. */
static size_t strings(const redisReply *r, size_t from, const char **out, size_t max) {
  size_t n = 0;
  for (size_t i = from; i < r->elements && n < max; i++)
    if (r->element[i]->type == REDIS_REPLY_STRING) out[n++] = r->element[i]->str;
  return n;
}

int fc_jobq_page(fc_jobq_t *q, int64_t wf, const char *after, unsigned limit, fc_jobq_rows_t *out, bool *more) {
  args_t a = {.n = 0};
  arg_i(&a, wf), arg(&a, after), arg_i(&a, limit);
  int rc = 0;
  redisReply *r = script(q, JOBQ_LUA_PAGE, &a, &rc);
  if (!r) return rc;
  if (r->type != REDIS_REPLY_ARRAY || !r->elements) {
    freeReplyObject(r);
    return -EINVAL;
  }
  *more = r->element[0]->integer == 1;
  const char **ids = fc_xcalloc(r->elements, sizeof *ids);
  size_t n = strings(r, 1, ids, r->elements);
  rc = read_rows(q, ids, n, out);
  free(ids);
  freeReplyObject(r);
  return rc;
}

int fc_jobq_beat(fc_jobq_t *q, const char *node, unsigned lease_ms) {
  args_t a = {.n = 0};
  arg(&a, node), arg_i(&a, lease_ms), arg_i(&a, fc_now_ms());
  int rc = 0;
  return (int)integer(script(q, JOBQ_LUA_BEAT, &a, &rc), rc);
}

int fc_jobq_leave(fc_jobq_t *q, const char *node) {
  int rc = script1(q, JOBQ_LUA_LEAVE, node);
  return rc < 0 ? rc : 0;
}

/* Runs a script taking a time and answering job ids; reads those records. */
static int rows_of_script(fc_jobq_t *q, const char *lua, int64_t ms, fc_jobq_rows_t *out) {
  args_t a = {.n = 0};
  arg_i(&a, ms);
  int rc = 0;
  redisReply *r = script(q, lua, &a, &rc);
  if (!r) return rc;
  const char **ids = fc_xcalloc(r->elements + 1, sizeof *ids);
  size_t n = r->type == REDIS_REPLY_ARRAY ? strings(r, 0, ids, r->elements) : 0;
  rc = read_rows(q, ids, n, out);
  free(ids);
  freeReplyObject(r);
  return rc;
}

int fc_jobq_sweep(fc_jobq_t *q, int64_t now_ms, fc_jobq_rows_t *out) {
  return rows_of_script(q, JOBQ_LUA_SWEEP, now_ms, out);
}

int fc_jobq_stranded(fc_jobq_t *q, int64_t before_ms, fc_jobq_rows_t *out) {
  return rows_of_script(q, JOBQ_LUA_STRANDED, before_ms, out);
}

/* Leaves `note` for `node`, or ("") every live node but `self`. */
static int note(fc_jobq_t *q, const char *self, const char *node, const char *note) {
  args_t a = {.n = 0};
  arg(&a, self), arg_i(&a, fc_now_ms()), arg(&a, note), arg(&a, node);
  int rc = 0;
  return (int)integer(script(q, JOBQ_LUA_NOTE, &a, &rc), rc);
}

int fc_jobq_note(fc_jobq_t *q, const char *node, const char *text) {
  int rc = note(q, "", node, text);
  return rc < 0 ? rc : 0;
}

int fc_jobq_note_all(fc_jobq_t *q, const char *self, const char *text) { return note(q, self, "", text); }

int fc_jobq_notes(fc_jobq_t *q, const char *node, unsigned max, void (*each)(void *ud, const char *note), void *ud) {
  char key[320], count[16];
  snprintf(key, sizeof key, "fc:ctl:%s", node);
  snprintf(count, sizeof count, "%u", max);
  int rc = 0;
  redisReply *r = cmd(q, &rc, 3, "LPOP", key, count);
  if (!r) return rc;
  int n = 0;
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
    if (r->element[i]->type == REDIS_REPLY_STRING) each(ud, r->element[i]->str), n++;
  freeReplyObject(r);
  return n;
}

int fc_jobq_answer(fc_jobq_t *q, const char *key, const char *answer) {
  char k[160];
  snprintf(k, sizeof k, "fc:ctlr:%s", key);
  int rc = 0;
  redisReply *r = cmd(q, &rc, 5, "SET", k, answer, "EX", "60");
  if (!r) return rc;
  freeReplyObject(r);
  return 0;
}

int fc_jobq_take_answer(fc_jobq_t *q, const char *key, char *out, size_t outlen) {
  char k[160];
  snprintf(k, sizeof k, "fc:ctlr:%s", key);
  int rc = 0;
  redisReply *r = cmd(q, &rc, 2, "GETDEL", k);
  if (!r) return rc;
  rc = r->type == REDIS_REPLY_STRING;
  if (rc) snprintf(out, outlen, "%s", r->str);
  freeReplyObject(r);
  return rc;
}

int fc_jobq_def(fc_jobq_t *q, int64_t wf, const char *hash, bool force, char *cluster, size_t len) {
  args_t a = {.n = 0};
  arg_i(&a, wf), arg(&a, hash), arg(&a, force ? "1" : "0");
  int rc = 0;
  redisReply *r = script(q, JOBQ_LUA_DEF, &a, &rc);
  if (!r) return rc;
  snprintf(cluster, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
  freeReplyObject(r);
  return 0;
}
