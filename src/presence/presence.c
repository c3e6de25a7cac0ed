/* The presence registry: channels with anyone present, their entries in
 * join order, and a count per distinct subject. Tables are chained hashes
 * keyed by SipHash with a key drawn at start (names and subjects come from
 * clients, who must not choose collisions). */
#include "presence/presence.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A string-keyed chained hash table; values are the caller's. */
typedef struct node {
  struct node *next;
  uint64_t hash;
  void *value;
  char key[];
} node_t;

typedef struct {
  node_t **buckets;
  size_t cap, count; /* cap: 0 or a power of two */
} table_t;

struct fc_presence_entry {
  fc_presence_entry_t *prev, *next; /* in its channel, join order */
  char conn[FC_PRESENCE_CONN_LEN + 1];
  struct pchan *pc;
  fc_channel_t *channel; /* held by the subscription's link while the entry lives */
  node_t *user;          /* its subject's count in pc->users */
  size_t json_len;
  char json[]; /* {"conn","sub","transport","node","since","info"?} */
};

/* A channel with at least one entry. */
typedef struct pchan {
  fc_presence_entry_t *head, *tail;
  size_t entries;
  table_t users; /* subject -> count (uintptr_t) */
  node_t *self;  /* its node in fc_presence.channels */
} pchan_t;

struct fc_presence {
  fc_presence_opts_t opts;
  fc_prstore_t *cluster; /* NULL: one node */
  char *node;
  pthread_mutex_t lock;
  table_t channels; /* name -> pchan_t* */
  uint8_t key[crypto_shorthash_KEYBYTES];
};

static uint64_t hash_of(const fc_presence_t *p, const char *s) {
  uint8_t out[crypto_shorthash_BYTES];
  crypto_shorthash(out, (const unsigned char *)s, strlen(s), p->key);
  uint64_t h;
  memcpy(&h, out, sizeof h);
  return h;
}

static node_t *table_find(const table_t *t, const char *key, uint64_t h) {
  if (!t->count) return NULL;
  for (node_t *n = t->buckets[h & (t->cap - 1)]; n; n = n->next)
    if (n->hash == h && !strcmp(n->key, key)) return n;
  return NULL;
}

static node_t *table_add(table_t *t, const char *key, uint64_t h, void *value) {
  if (t->count >= t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 8;
    node_t **b = fc_xcalloc(cap, sizeof *b);
    for (size_t i = 0; i < t->cap; i++)
      for (node_t *n = t->buckets[i], *next; n; n = next) {
        next = n->next;
        n->next = b[n->hash & (cap - 1)];
        b[n->hash & (cap - 1)] = n;
      }
    free(t->buckets);
    t->buckets = b;
    t->cap = cap;
  }
  size_t len = strlen(key);
  node_t *n = fc_xmalloc(sizeof *n + len + 1);
  memcpy(n->key, key, len + 1);
  n->hash = h;
  n->value = value;
  n->next = t->buckets[h & (t->cap - 1)];
  t->buckets[h & (t->cap - 1)] = n;
  t->count++;
  return n;
}

/* Unlinks and frees `n`; the table's array goes when it empties. */
static void table_del(table_t *t, node_t *n) {
  node_t **pp = &t->buckets[n->hash & (t->cap - 1)];
  while (*pp != n) pp = &(*pp)->next;
  *pp = n->next;
  free(n);
  if (--t->count == 0) {
    free(t->buckets);
    t->buckets = NULL;
    t->cap = 0;
  }
}

fc_presence_t *fc_presence_new(const fc_presence_opts_t *opts) {
  fc_presence_t *p = fc_xcalloc(1, sizeof *p);
  p->opts = *opts;
  p->node = fc_xstrndup("", 0);
  pthread_mutex_init(&p->lock, NULL);
  if (sodium_init() < 0) abort();
  crypto_shorthash_keygen(p->key);
  return p;
}

void fc_presence_free(fc_presence_t *p) {
  if (!p) return;
  pthread_mutex_destroy(&p->lock);
  free(p->channels.buckets);
  free(p->node);
  free(p);
}

void fc_presence_set_cluster(fc_presence_t *p, fc_prstore_t *cluster) { p->cluster = cluster; }

bool fc_presence_blocks(const fc_presence_t *p) { return p && p->cluster; }

void fc_presence_remote(void *ud, bool join, const char *channel, const char *json, size_t len) {
  fc_presence_t *p = ud;
  fc_channel_t *ch;
  if (!fc_presence_on(p, channel) || fc_hub_open(p->opts.hub, channel, strlen(channel), FC_HUB_CACHED, &ch) < 0) return;
  static const fc_str_t names[2] = {{"flowcast.leave", 14}, {"flowcast.join", 13}};
  fc_hub_notice(p->opts.hub, ch, names[join], (fc_str_t){json, len});
  fc_channel_unref_quiet(ch);
}

void fc_presence_set_node(fc_presence_t *p, const char *node) {
  free(p->node);
  p->node = fc_xstrndup(node, strlen(node));
}

bool fc_presence_on(const fc_presence_t *p, const char *channel) {
  if (!p) return false;
  for (size_t i = 0; i < p->opts.nrules; i++)
    if (fc_glob_match(p->opts.rules[i].pattern, channel)) return p->opts.rules[i].on;
  return false;
}

int fc_presence_check_info(const char *info, size_t len) {
  if (len > FC_PRESENCE_INFO_MAX) return -EINVAL;
  json_t *j = json_loadb(info, len, JSON_DECODE_ANY, NULL);
  if (!j) return -EINVAL;
  json_decref(j);
  return 0;
}

void fc_presence_conn_id(char out[FC_PRESENCE_CONN_LEN + 1]) {
  uint8_t raw[FC_PRESENCE_CONN_LEN / 2];
  randombytes_buf(raw, sizeof raw);
  sodium_bin2hex(out, FC_PRESENCE_CONN_LEN + 1, raw, sizeof raw);
}

/* The entry's JSON, made once: every listing and notice copies it. */
static fc_presence_entry_t *entry_new(const fc_presence_t *p, const fc_presence_who_t *who, const char *sub) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_puts(&b, "{\"conn\":");
  fc_json_quote(&b, who->conn, strlen(who->conn));
  fc_buf_puts(&b, ",\"sub\":");
  fc_json_quote(&b, sub, strlen(sub));
  fc_buf_printf(&b, ",\"transport\":\"%s\",\"node\":", who->transport);
  fc_json_quote(&b, p->node, strlen(p->node));
  fc_buf_puts(&b, ",\"since\":\"");
  fc_time_rfc3339(&b, fc_now_ms());
  fc_buf_puts(&b, "\"");
  if (who->info && who->info_len) {
    fc_buf_puts(&b, ",\"info\":");
    fc_buf_append(&b, who->info, who->info_len);
  }
  fc_buf_puts(&b, "}");
  fc_presence_entry_t *e = fc_xcalloc(1, sizeof *e + b.len + 1);
  memcpy(e->json, b.data, b.len);
  e->json[b.len] = '\0';
  e->json_len = b.len;
  fc_buf_dispose(&b);
  return e;
}

static void notice(fc_presence_t *p, fc_presence_entry_t *e, bool join) {
  static const fc_str_t names[2] = {{"flowcast.leave", 14}, {"flowcast.join", 13}};
  fc_hub_notice(p->opts.hub, e->channel, names[join], (fc_str_t){e->json, e->json_len});
}

fc_presence_entry_t *fc_presence_join(fc_presence_t *p, fc_channel_t *ch, const fc_presence_who_t *who) {
  const char *sub = who->sub && *who->sub ? who->sub : "anonymous";
  fc_presence_entry_t *e = entry_new(p, who, sub);
  snprintf(e->conn, sizeof e->conn, "%s", who->conn);
  e->channel = ch;
  const char *name = fc_channel_name(ch);
  uint64_t hc = hash_of(p, name), hu = hash_of(p, sub);
  pthread_mutex_lock(&p->lock);
  node_t *cn = table_find(&p->channels, name, hc);
  if (!cn) {
    pchan_t *pc = fc_xcalloc(1, sizeof *pc);
    cn = pc->self = table_add(&p->channels, name, hc, pc);
  }
  pchan_t *pc = cn->value;
  e->pc = pc;
  e->prev = pc->tail;
  if (pc->tail) pc->tail->next = e;
  else pc->head = e;
  pc->tail = e;
  pc->entries++;
  e->user = table_find(&pc->users, sub, hu);
  if (!e->user) e->user = table_add(&pc->users, sub, hu, NULL);
  e->user->value = (void *)((uintptr_t)e->user->value + 1);
  notice(p, e, true);
  pthread_mutex_unlock(&p->lock);
  if (p->cluster) fc_prstore_join(p->cluster, name, e->conn, e->json);
  return e;
}

void fc_presence_leave(fc_presence_t *p, fc_presence_entry_t *e) {
  if (!e) return;
  if (p->cluster) fc_prstore_leave(p->cluster, fc_channel_name(e->channel), e->conn, e->json);
  pthread_mutex_lock(&p->lock);
  notice(p, e, false);
  pchan_t *pc = e->pc;
  if (e->prev) e->prev->next = e->next;
  else pc->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else pc->tail = e->prev;
  pc->entries--;
  uintptr_t left = (uintptr_t)e->user->value - 1;
  if (left) e->user->value = (void *)left;
  else table_del(&pc->users, e->user);
  if (!pc->entries) {
    table_del(&p->channels, pc->self);
    free(pc);
  }
  pthread_mutex_unlock(&p->lock);
  free(e);
}

/* The channel's registry entry, lock held; NULL when nobody is present. */
static pchan_t *find_locked(fc_presence_t *p, const char *channel) {
  node_t *n = table_find(&p->channels, channel, hash_of(p, channel));
  return n ? n->value : NULL;
}

/* Orders a cluster's entries by "since", then connection id: the entry
 * JSON starts with {"conn":"<32 hex>", so those are at fixed places. */
static int cmp_entry(const void *a, const void *b) {
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  const char *sx = strstr(x, "\"since\":"), *sy = strstr(y, "\"since\":");
  int c = sx && sy ? strncmp(sx, sy, 34) : 0;
  return c ? c : strcmp(x, y);
}

/* A cluster's answer, from Redis. */
static int cluster_answer(fc_presence_t *p, const char *channel, fc_buf_t *out, bool stats) {
  char **v;
  long n = fc_prstore_read(p->cluster, channel, &v);
  if (n < 0) return -EIO;
  qsort(v, (size_t)n, sizeof *v, cmp_entry);
  if (stats) {
    table_t users = {0};
    for (long i = 0; i < n; i++) {
      json_t *j = json_loads(v[i], 0, NULL);
      const char *sub = json_string_value(json_object_get(j, "sub"));
      if (sub && !table_find(&users, sub, hash_of(p, sub))) table_add(&users, sub, hash_of(p, sub), NULL);
      json_decref(j);
    }
    fc_buf_printf(out, "{\"connections\":%ld,\"users\":%zu}", n, users.count);
    for (size_t i = 0; i < users.cap; i++)
      for (node_t *x = users.buckets[i], *next; x; x = next) next = x->next, free(x);
    free(users.buckets);
  } else {
    fc_buf_puts(out, "{\"entries\":[");
    for (long i = 0; i < n && (size_t)i < p->opts.max_entries; i++) {
      if (i) fc_buf_puts(out, ",");
      fc_buf_puts(out, v[i]);
    }
    fc_buf_printf(out, "],\"truncated\":%s}", (size_t)n > p->opts.max_entries ? "true" : "false");
  }
  for (long i = 0; i < n; i++) free(v[i]);
  free(v);
  return 0;
}

int fc_presence_list(fc_presence_t *p, const char *channel, fc_buf_t *out) {
  if (!fc_presence_on(p, channel)) return -ENOENT;
  if (p->cluster) return cluster_answer(p, channel, out, false);
  fc_buf_puts(out, "{\"entries\":[");
  size_t shown = 0;
  bool truncated = false;
  pthread_mutex_lock(&p->lock);
  pchan_t *pc = find_locked(p, channel);
  for (fc_presence_entry_t *e = pc ? pc->head : NULL; e; e = e->next) {
    if (shown == p->opts.max_entries) {
      truncated = true;
      break;
    }
    if (shown++) fc_buf_puts(out, ",");
    fc_buf_append(out, e->json, e->json_len);
  }
  pthread_mutex_unlock(&p->lock);
  fc_buf_printf(out, "],\"truncated\":%s}", truncated ? "true" : "false");
  return 0;
}

int fc_presence_stats(fc_presence_t *p, const char *channel, fc_buf_t *out) {
  if (!fc_presence_on(p, channel)) return -ENOENT;
  if (p->cluster) return cluster_answer(p, channel, out, true);
  pthread_mutex_lock(&p->lock);
  pchan_t *pc = find_locked(p, channel);
  size_t conns = pc ? pc->entries : 0, users = pc ? pc->users.count : 0;
  pthread_mutex_unlock(&p->lock);
  fc_buf_printf(out, "{\"connections\":%zu,\"users\":%zu}", conns, users);
  return 0;
}
