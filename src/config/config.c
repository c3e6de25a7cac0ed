/* The options table and its three sources. */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

typedef enum { OPT_STR, OPT_UINT, OPT_SIZE, OPT_BOOL } opt_type_t;

typedef struct {
  const char *name; /* flag without "--"; the file key; env FLOWCAST_<NAME> */
  opt_type_t type;
  size_t offset;
  const char *def;
  const char *help;
} opt_t;

#define OFF(f) offsetof(fc_config_t, f)
static const opt_t options[] = {
    {"listen", OPT_STR, OFF(listen), "0.0.0.0:8000", "address and port to listen on"},
    {"data", OPT_STR, OFF(data_dir), "./data", "data directory"},
    {"workflows", OPT_STR, OFF(workflows_dir), "./workflows", "workflow definitions directory"},
    {"max-jobs", OPT_UINT, OFF(max_jobs), "16", "workflow jobs running at once; more wait in a queue"},
    {"max-queued-jobs", OPT_UINT, OFF(max_queued_jobs), "1000",
     "workflow jobs waiting to run; past it a start answers 429 and a trigger is skipped"},
    {"threads", OPT_UINT, OFF(threads), "0", "event loops (0: one per CPU)"},
    {"keepalive", OPT_UINT, OFF(keepalive_s), "15", "seconds between SSE keepalive comments"},
    {"retention", OPT_UINT, OFF(retention), "100", "events retained per channel"},
    {"max-body", OPT_SIZE, OFF(max_body), "1M", "largest request body (bytes; k/M suffixes)"},
    {"queue-bytes", OPT_SIZE, OFF(queue_bytes), "1M", "a subscriber's unsent bytes before it is dropped"},
    {"coalesce-ms", OPT_UINT, OFF(coalesce_ms), "20",
     "under load, at most this long a subscriber's writes wait to carry more events (0: never)"},
    {"io-uring", OPT_BOOL, OFF(io_uring), "true",
     "send each loop pass's socket writes in one io_uring submission (false: one writev each)"},
    {"max-connections", OPT_UINT, OFF(max_connections), "0",
     "open connections at most; past it new ones get 503 (0: the open-files limit, raised to its hard limit, "
     "less what storage, jobs and the loops need)"},
    {"max-connections-per-ip", OPT_UINT, OFF(max_connections_per_ip), "256",
     "open connections from one client address at most (loopback too); past it new ones get 503 (0: no cap)"},
    {"tls-cert", OPT_STR, OFF(tls_cert), "",
     "PEM certificate (then its chain): with --tls-key, the --listen port speaks HTTPS (reloaded on SIGHUP)"},
    {"tls-key", OPT_STR, OFF(tls_key), "", "PEM private key of --tls-cert (not encrypted)"},
    {"h2c", OPT_BOOL, OFF(h2c), "false",
     "plain connections that open with the HTTP/2 preface speak HTTP/2 (h2c, prior knowledge); HTTP/1.1 stays"},
    {"h2-max-streams", OPT_UINT, OFF(h2_max_streams), "1000",
     "concurrent streams one HTTP/2 connection may open (SETTINGS_MAX_CONCURRENT_STREAMS)"},
    {"cors-origins", OPT_STR, OFF(cors_origins), "", "allowed CORS origins, comma-separated, or *"},
    {"cors-credentials", OPT_BOOL, OFF(cors_credentials), "false", "allow credentials (needs an origin list)"},
    {"header-timeout", OPT_UINT, OFF(header_timeout_s), "10", "seconds to receive a request's head"},
    {"idle-timeout", OPT_UINT, OFF(idle_timeout_s), "60", "seconds an idle keep-alive connection stays"},
    {"body-timeout", OPT_UINT, OFF(body_timeout_s), "60",
     "seconds to receive a request's whole body, counted from the end of its head; past it: 408"},
    {"send-timeout", OPT_UINT, OFF(send_timeout_s), "60",
     "seconds a connection may leave its unsent answers unread (no write progress) before it is closed"},
    {"log-level", OPT_STR, OFF(log_level), "info", "debug, info, warn or error"},
    {"public", OPT_STR, OFF(public_patterns), "", "channels anyone may subscribe to, comma-separated globs"},
    {"open", OPT_BOOL, OFF(open), "false", "no authentication at all: every request is allowed (development only)"},
    {"jwt-secret", OPT_STR, OFF(jwt_secret), "", "HS256 secret, 32+ bytes (default: made once in DATA/jwt.secret)"},
    {"jwt-public-key", OPT_STR, OFF(jwt_public_key), "", "PEM file: also accept RS256/ES256 tokens signed by its key"},
    {"token-ttl", OPT_UINT, OFF(token_ttl_s), "3600", "seconds a login token lives"},
    {"token-ttl-long", OPT_UINT, OFF(token_ttl_long_s), "2592000", "seconds it lives with stayConnected"},
    {"login-limit", OPT_UINT, OFF(login_limit), "5", "failed logins per minute per address and per user"},
    {"ws-max-message", OPT_SIZE, OFF(ws_max_message), "1M", "largest WebSocket message (bytes); past it: close 1009"},
    {"ws-ping", OPT_UINT, OFF(ws_ping_s), "30", "seconds between WebSocket pings; no pong by the next: dropped"},
    {"ws-max-subscriptions", OPT_UINT, OFF(ws_max_subscriptions), "1000",
     "channels one WebSocket connection may subscribe to; past it: error too_many_subscriptions"},
    {"storage", OPT_STR, OFF(storage), "sqlite", "sqlite (durable, in --data) or memory (lost on exit)"},
    {"redis", OPT_STR, OFF(redis_url), "",
     "cluster mode: events, ids and history in this Redis, shared by every node pointed at it "
     "(redis://[USER:PASSWORD@]HOST[:PORT][/DB]; replaces --storage for events)"},
    {"node-name", OPT_STR, OFF(node_name), "",
     "with --redis: this node's name in logs and in the reason of a lost node's failed jobs (default HOST:PORT)"},
    {"job-lease", OPT_UINT, OFF(job_lease_s), "15",
     "with --redis: seconds after which the jobs of a node that stopped renewing its lease are failed"},
    {"redis-wait-replicas", OPT_UINT, OFF(redis_wait_replicas), "0",
     "with --redis: a publish is answered once this many replicas have it too (Redis WAIT)"},
    {"durability", OPT_STR, OFF(durability), "crash",
     "crash: survives a killed process; power: also power loss (fsync per commit)"},
    {"max-db-size", OPT_SIZE, OFF(max_db_size), "0", "database size cap; publishes get 503 past it (0: none)"},
    {"commit-delay-us", OPT_UINT, OFF(commit_delay_us), "100",
     "with concurrent publishers, microseconds a commit waits to group more of them (0: never)"},
    {"max-channels", OPT_UINT, OFF(max_channels), "100000",
     "channels in memory at most; past it a publish or subscribe that would add one gets 503 (0: no cap)"},
    {"channel-idle", OPT_UINT, OFF(channel_idle_s), "10",
     "seconds an unused channel (no subscriber, nothing in flight) stays in memory; with sqlite its events "
     "stay stored and load again on use"},
    {"publish-rate", OPT_UINT, OFF(publish_rate), "1000",
     "events per second one token subject may publish (HTTP and WebSocket; admin exempt); past it: 429 (0: none)"},
    {"publish-burst", OPT_UINT, OFF(publish_burst), "2000", "events a token subject may publish at once over its rate"},
    {"ws-rate", OPT_UINT, OFF(ws_rate), "1000",
     "messages per second one WebSocket connection may send (bursts of twice that); past it: error rate_limited (0: "
     "none)"},
    {"presence", OPT_STR, OFF(presence_patterns), "",
     "channels whose subscribers are listed (presence, join/leave notices), comma-separated globs; the config file "
     "may also hold `presence:PATTERN = on|off` lines, which come first"},
    {"presence-max-entries", OPT_UINT, OFF(presence_max_entries), "1000",
     "entries a presence listing shows per channel; past it the counts stay exact and the answer says truncated"},
    {"presence-ttl", OPT_UINT, OFF(presence_ttl_s), "30",
     "with --redis: seconds a node's presence entries live in Redis unless renewed (every third of it); "
     "a killed node's entries go, with leave notices, within this long (3-3600)"},
    {"channel-create-limit", OPT_UINT, OFF(channel_create_limit), "1000",
     "new channels one token subject may create per minute (admin exempt); past it: 429 (0: none)"},
};

void fc_config_usage(FILE *out) {
  fprintf(out, "Usage: flowcast serve [options]\n\n"
               "Runs the event server. Options come from the config file, then FLOWCAST_*\n"
               "environment variables, then flags (flags win). Flags take --name VALUE or --name=VALUE.\n\n"
               "  --config FILE            config file of `name = value` lines (default ./flowcast.conf if present)\n"
               "                           it may also hold `retention:PATTERN = N` and `max-age:PATTERN = SECONDS`\n"
               "                           (PATTERN a channel name or glob such as orders.*; the first match wins)\n"
               "                           and `presence:PATTERN = on|off` (who is subscribed; see --presence)\n");
  for (size_t i = 0; i < FC_ARRAY_LEN(options); i++) {
    const opt_t *o = &options[i];
    char flag[64];
    snprintf(flag, sizeof flag, "--%s%s", o->name, o->type == OPT_BOOL ? "" : " VALUE");
    fprintf(out, "  %-24s %s (default: %s)\n", flag, o->help, *o->def ? o->def : "none");
  }
  fprintf(out, "\nEach option NAME is also FLOWCAST_NAME in the environment (dashes as underscores),\n"
               "e.g. FLOWCAST_LISTEN=127.0.0.1:9000.\n");
}

static int parse_size(const char *v, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (end == v || errno || *v == '-') return -EINVAL;
  unsigned long long mult = 1;
  if (*end == 'k' || *end == 'K') mult = 1024, end++;
  else if (*end == 'm' || *end == 'M') mult = 1024 * 1024, end++;
  else if (*end == 'g' || *end == 'G') mult = 1024ull * 1024 * 1024, end++;
  if (*end == 'i' && mult > 1) end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return -EINVAL;
  *out = (size_t)(n * mult);
  return 0;
}

/* Sets one option from text. `src` names where the text came from, for errors. */
static int set_opt(fc_config_t *cfg, const opt_t *o, const char *v, const char *src, char *err, size_t errlen) {
  void *field = (char *)cfg + o->offset;
  switch (o->type) {
    case OPT_STR:
      free(*(char **)field);
      *(char **)field = fc_xstrndup(v, strlen(v));
      return 0;
    case OPT_UINT: {
      uint64_t n;
      if (fc_parse_u64(v, strlen(v), &n) < 0 || n > 1000000000) {
        snprintf(err, errlen, "%s: %s wants a whole number, got '%s'", src, o->name, v);
        return -EINVAL;
      }
      *(unsigned *)field = (unsigned)n;
      return 0;
    }
    case OPT_SIZE:
      if (parse_size(v, (size_t *)field) < 0) {
        snprintf(err, errlen, "%s: %s wants a size like 1048576, 64k or 1M, got '%s'", src, o->name, v);
        return -EINVAL;
      }
      return 0;
    case OPT_BOOL:
      if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on")) {
        *(bool *)field = true;
      } else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off")) {
        *(bool *)field = false;
      } else {
        snprintf(err, errlen, "%s: %s wants true or false, got '%s'", src, o->name, v);
        return -EINVAL;
      }
      return 0;
  }
  return 0;
}

static const opt_t *find_opt(const char *name, size_t len) {
  for (size_t i = 0; i < FC_ARRAY_LEN(options); i++)
    if (strlen(options[i].name) == len && !strncmp(options[i].name, name, len)) return &options[i];
  return NULL;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

static void add_presence_rule(fc_config_t *cfg, const char *pattern, bool on) {
  cfg->presence_rules = fc_xrealloc(cfg->presence_rules, (cfg->npresence_rules + 1) * sizeof *cfg->presence_rules);
  cfg->presence_rules[cfg->npresence_rules++] = (struct fc_config_presence){fc_xstrndup(pattern, strlen(pattern)), on};
}

/* `presence:PATTERN = on|off`. */
static int set_presence(fc_config_t *cfg, const char *key, const char *val, const char *path, int lineno, char *err,
                        size_t errlen) {
  const char *pattern = key + 9;
  bool on = !strcmp(val, "on") || !strcmp(val, "true");
  if (!*pattern || (!on && strcmp(val, "off") && strcmp(val, "false"))) {
    snprintf(err, errlen, "%s:%d: expected presence:PATTERN = on|off", path, lineno);
    return -EINVAL;
  }
  add_presence_rule(cfg, pattern, on);
  return 0;
}

/* `retention:PATTERN = N` or `max-age:PATTERN = SECONDS`. */
static int set_rule(fc_config_t *cfg, const char *key, const char *val, const char *path, int lineno, char *err,
                    size_t errlen) {
  bool age = key[0] == 'm';
  const char *pattern = strchr(key, ':') + 1;
  uint64_t n;
  if (!*pattern || fc_parse_u64(val, strlen(val), &n) < 0 || n > 100000000) {
    snprintf(err, errlen, "%s:%d: expected %s:PATTERN = %s", path, lineno, age ? "max-age" : "retention",
             age ? "SECONDS" : "COUNT");
    return -EINVAL;
  }
  struct fc_config_rule *r = NULL;
  for (size_t i = 0; i < cfg->nrules; i++)
    if (!strcmp(cfg->rules[i].pattern, pattern)) r = &cfg->rules[i];
  if (!r) {
    cfg->rules = fc_xrealloc(cfg->rules, (cfg->nrules + 1) * sizeof *cfg->rules);
    r = &cfg->rules[cfg->nrules++];
    *r = (struct fc_config_rule){fc_xstrndup(pattern, strlen(pattern)), 0, 0};
  }
  if (age) r->max_age_s = (unsigned)n;
  else r->count = (unsigned)n;
  return 0;
}

static int load_file(fc_config_t *cfg, const char *path, bool must_exist, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    int e = errno;
    if (!must_exist && e == ENOENT) return 0;
    snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(e));
    return -e;
  }
  char line[4096];
  int lineno = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    lineno++;
    char *s = trim(line);
    if (!*s || *s == '#') continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "%s:%d: expected `name = value`", path, lineno);
      rc = -EINVAL;
      break;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    size_t vl = strlen(val);
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') val[vl - 1] = '\0', val++;
    if (!strncmp(key, "retention:", 10) || !strncmp(key, "max-age:", 8)) {
      rc = set_rule(cfg, key, val, path, lineno, err, errlen);
      continue;
    }
    if (!strncmp(key, "presence:", 9)) {
      rc = set_presence(cfg, key, val, path, lineno, err, errlen);
      continue;
    }
    const opt_t *o = find_opt(key, strlen(key));
    if (!o) {
      snprintf(err, errlen, "%s:%d: unknown option '%s'", path, lineno, key);
      rc = -EINVAL;
      break;
    }
    char src[600];
    snprintf(src, sizeof src, "%s:%d", path, lineno);
    rc = set_opt(cfg, o, val, src, err, errlen);
  }
  fclose(f);
  return rc;
}

static int load_env(fc_config_t *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < FC_ARRAY_LEN(options); i++) {
    char var[64] = "FLOWCAST_";
    size_t k = strlen(var);
    for (const char *p = options[i].name; *p && k < sizeof var - 1; p++)
      var[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    var[k] = '\0';
    const char *v = getenv(var);
    if (v && set_opt(cfg, &options[i], v, var, err, errlen) < 0) return -EINVAL;
  }
  return 0;
}

/* Finds --config in argv (or FLOWCAST_CONFIG) before anything else is read. */
static const char *config_path(int argc, char **argv, bool *explicit) {
  *explicit = true;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc) return argv[i + 1];
    if (!strncmp(argv[i], "--config=", 9)) return argv[i] + 9;
  }
  const char *env = getenv("FLOWCAST_CONFIG");
  if (env && *env) return env;
  *explicit = false;
  return "flowcast.conf";
}

static int load_flags(fc_config_t *cfg, int argc, char **argv, char *err, size_t errlen) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      cfg->help = true;
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, errlen, "unexpected argument '%s' (see flowcast serve --help)", a);
      return -EINVAL;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    if (nlen == 6 && !strncmp(name, "config", 6)) {
      if (!eq) i++;
      continue;
    }
    const opt_t *o = find_opt(name, nlen);
    if (!o) {
      snprintf(err, errlen, "unknown option '%s' (see flowcast serve --help)", a);
      return -EINVAL;
    }
    const char *v;
    if (eq) {
      v = eq + 1;
    } else if (o->type == OPT_BOOL) {
      v = "true";
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      snprintf(err, errlen, "option --%s needs a value", o->name);
      return -EINVAL;
    }
    char src[80];
    snprintf(src, sizeof src, "--%s", o->name);
    if (set_opt(cfg, o, v, src, err, errlen) < 0) return -EINVAL;
  }
  return 0;
}

/* Splits a comma-separated list into trimmed, non-empty items (NULL-terminated). */
static char **split_list(const char *s) {
  size_t n = 0;
  char **list = fc_xcalloc(1, sizeof *list);
  for (const char *p = s; *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char *item = fc_xstrndup(p, len);
    char *t = trim(item);
    if (*t) {
      list = fc_xrealloc(list, (n + 2) * sizeof *list);
      list[n++] = fc_xstrndup(t, strlen(t));
      list[n] = NULL;
    }
    free(item);
    p += len + (comma ? 1 : 0);
  }
  return list;
}

static void free_list(char **list) {
  if (!list) return;
  for (char **p = list; *p; p++) free(*p);
  free(list);
}

/* Checks values and derives host, port and the CORS list. */
static int finish(fc_config_t *cfg, char *err, size_t errlen) {
  const char *colon = strrchr(cfg->listen, ':');
  uint64_t port;
  if (!colon || colon == cfg->listen || fc_parse_u64(colon + 1, strlen(colon + 1), &port) < 0 || port > 65535) {
    snprintf(err, errlen, "listen: expected HOST:PORT such as 127.0.0.1:8000, got '%s'", cfg->listen);
    return -EINVAL;
  }
  cfg->host = fc_xstrndup(cfg->listen, (size_t)(colon - cfg->listen));
  cfg->port = (int)port;
  if (cfg->threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n > 0 ? (unsigned)n : 1;
  }
  if (cfg->threads > 256) {
    snprintf(err, errlen, "threads: at most 256");
    return -EINVAL;
  }
  if (cfg->keepalive_s == 0 || cfg->header_timeout_s == 0 || cfg->idle_timeout_s == 0 || cfg->body_timeout_s == 0 ||
      cfg->send_timeout_s == 0) {
    snprintf(err, errlen,
             "keepalive, header-timeout, idle-timeout, body-timeout and send-timeout must be at least 1 second");
    return -EINVAL;
  }
  if (cfg->body_timeout_s > 86400 || cfg->send_timeout_s > 86400) {
    snprintf(err, errlen, "body-timeout and send-timeout must be at most 86400 seconds");
    return -EINVAL;
  }
  if (cfg->ws_ping_s == 0 || cfg->ws_max_message < 128) {
    snprintf(err, errlen, "ws-ping must be at least 1 second and ws-max-message at least 128 bytes");
    return -EINVAL;
  }
  if (cfg->job_lease_s < 2 || cfg->job_lease_s > 3600) {
    snprintf(err, errlen, "job-lease must be from 2 to 3600 seconds");
    return -EINVAL;
  }
  if (cfg->h2_max_streams == 0) {
    snprintf(err, errlen, "h2-max-streams must be at least 1");
    return -EINVAL;
  }
  if (cfg->ws_max_subscriptions == 0) {
    snprintf(err, errlen, "ws-max-subscriptions must be at least 1");
    return -EINVAL;
  }
  if (cfg->token_ttl_s == 0 || cfg->token_ttl_long_s == 0) {
    snprintf(err, errlen, "token-ttl and token-ttl-long must be at least 1 second");
    return -EINVAL;
  }
  if (*cfg->jwt_secret && strlen(cfg->jwt_secret) < 32) {
    snprintf(err, errlen, "jwt-secret must be at least 32 characters");
    return -EINVAL;
  }
  if (cfg->queue_bytes < 4096) {
    snprintf(err, errlen, "queue-bytes: at least 4096");
    return -EINVAL;
  }
  if (cfg->coalesce_ms > 1000) {
    snprintf(err, errlen, "coalesce-ms: at most 1000");
    return -EINVAL;
  }
  if (cfg->commit_delay_us > 10000) {
    snprintf(err, errlen, "commit-delay-us: at most 10000");
    return -EINVAL;
  }
  if (!*cfg->tls_cert != !*cfg->tls_key) {
    snprintf(err, errlen, "tls-cert and tls-key go together: give both or neither");
    return -EINVAL;
  }
  cfg->cors_list = split_list(cfg->cors_origins);
  cfg->public_list = split_list(cfg->public_patterns);
  char **pres = split_list(cfg->presence_patterns);
  for (char **p = pres; *p; p++) add_presence_rule(cfg, *p, true);
  free_list(pres);
  bool star = false;
  for (char **p = cfg->cors_list; *p; p++) star |= !strcmp(*p, "*");
  if (star && cfg->cors_credentials) {
    snprintf(err, errlen, "cors-credentials needs an explicit origin list; it is never allowed with '*'");
    return -EINVAL;
  }
  for (size_t i = 0; i < cfg->nrules; i++)
    if (!cfg->rules[i].count) cfg->rules[i].count = cfg->retention;
  if (cfg->presence_ttl_s < 3 || cfg->presence_ttl_s > 3600) {
    snprintf(err, errlen, "presence-ttl: expected 3 to 3600 seconds");
    return -EINVAL;
  }
  if (strcmp(cfg->storage, "sqlite") && strcmp(cfg->storage, "memory")) {
    snprintf(err, errlen, "storage: expected sqlite or memory, got '%s'", cfg->storage);
    return -EINVAL;
  }
  if (strcmp(cfg->durability, "crash") && strcmp(cfg->durability, "power")) {
    snprintf(err, errlen, "durability: expected crash or power, got '%s'", cfg->durability);
    return -EINVAL;
  }
  static const char *const levels[] = {"debug", "info", "warn", "error"};
  for (size_t i = 0; i < FC_ARRAY_LEN(levels); i++)
    if (!strcmp(cfg->log_level, levels[i])) return 0;
  snprintf(err, errlen, "log-level: expected debug, info, warn or error, got '%s'", cfg->log_level);
  return -EINVAL;
}

int fc_config_load(fc_config_t *cfg, int argc, char **argv, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < FC_ARRAY_LEN(options); i++) set_opt(cfg, &options[i], options[i].def, "default", err, errlen);
  bool explicit;
  const char *path = config_path(argc, argv, &explicit);
  cfg->config_file = fc_xstrndup(path, strlen(path));
  int rc = load_file(cfg, path, explicit, err, errlen);
  if (rc == 0) rc = load_env(cfg, err, errlen);
  if (rc == 0) rc = load_flags(cfg, argc, argv, err, errlen);
  if (rc == 0 && !cfg->help) rc = finish(cfg, err, errlen);
  return rc;
}

void fc_config_dispose(fc_config_t *cfg) {
  for (size_t i = 0; i < FC_ARRAY_LEN(options); i++)
    if (options[i].type == OPT_STR) free(*(char **)((char *)cfg + options[i].offset));
  free_list(cfg->cors_list);
  free_list(cfg->public_list);
  for (size_t i = 0; i < cfg->nrules; i++) free(cfg->rules[i].pattern);
  free(cfg->rules);
  for (size_t i = 0; i < cfg->npresence_rules; i++) free(cfg->presence_rules[i].pattern);
  free(cfg->presence_rules);
  free(cfg->host);
  free(cfg->config_file);
  memset(cfg, 0, sizeof *cfg);
}
