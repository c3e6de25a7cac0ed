/* config: the server's options from one table, read from a file
 * (flowcast.conf), then FLOWCAST_* environment variables, then flags; later
 * sources win. */
#ifndef FC_CONFIG_H
#define FC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
  char *listen; /* host:port */
  char *host;   /* parsed from listen */
  int port;
  char *data_dir;
  char *workflows_dir;
  unsigned max_jobs;        /* jobs running at once */
  unsigned max_queued_jobs; /* jobs waiting to run (Pending) */
  char *config_file;        /* NULL: ./flowcast.conf when it exists */
  unsigned threads;         /* loops; 0 means the CPU count */
  unsigned keepalive_s;
  unsigned retention;
  size_t max_body;
  size_t queue_bytes;
  unsigned coalesce_ms;            /* longest a busy loop holds stream writes (0: never) */
  bool io_uring;                   /* batch a pass's writes through io_uring where available */
  unsigned max_connections;        /* open connections at most; 0: derived from the descriptor limit */
  unsigned max_connections_per_ip; /* open connections from one address at most; 0: no cap */
  char *tls_cert;                  /* PEM certificate chain; with tls_key the port speaks HTTPS ("": plain) */
  char *tls_key;                   /* PEM private key */
  bool h2c;                        /* plain connections may speak HTTP/2 with prior knowledge */
  unsigned h2_max_streams;         /* SETTINGS_MAX_CONCURRENT_STREAMS */
  char *cors_origins;              /* comma-separated, or "*" */
  bool cors_credentials;
  unsigned header_timeout_s;
  unsigned idle_timeout_s;
  unsigned body_timeout_s; /* a request's whole body, from the end of its head */
  unsigned send_timeout_s; /* unsent answers with no write progress */
  char *log_level;
  char *public_patterns; /* channels subscribable without a token, comma-separated */
  bool open;             /* no auth at all (development and tests) */
  char *jwt_secret;      /* HS256 key; empty: DIR/jwt.secret, made on first start */
  char *jwt_public_key;  /* PEM file of an RS256/ES256 key for tokens minted elsewhere */
  unsigned token_ttl_s;
  unsigned token_ttl_long_s; /* with stayConnected */
  unsigned login_limit;
  size_t ws_max_message;
  unsigned ws_ping_s;            /* failed logins per address and per user per minute */
  unsigned ws_max_subscriptions; /* per WebSocket connection, at least 1 */
  char **public_list;            /* public_patterns split, NULL-terminated */
  char *storage;                 /* "sqlite" or "memory" */
  char *redis_url;               /* cluster mode: "" when off */
  unsigned redis_wait_replicas;
  char *node_name;               /* cluster mode: this node's name ("": host:port) */
  unsigned job_lease_s;          /* cluster mode: a silent node's jobs fail after this long */
  char *durability;              /* "crash" or "power" */
  size_t max_db_size;            /* 0: no cap */
  unsigned commit_delay_us;      /* under concurrent publishes, a commit's wait for more */
  unsigned max_channels;         /* channels in memory at most (0: no cap) */
  unsigned channel_idle_s;       /* an unused channel leaves memory after this long */
  unsigned publish_rate;         /* events/s per token subject (0: none) */
  unsigned publish_burst;        /* events over the rate at once */
  unsigned ws_rate;              /* messages/s per WebSocket connection (0: none) */
  unsigned channel_create_limit; /* new channels per minute per token subject (0: none) */
  /* Per-pattern retention from the config file: `retention:PATTERN = N` and
   * `max-age:PATTERN = SECONDS`. */
  struct fc_config_rule {
    char *pattern;
    unsigned count;
    unsigned max_age_s;
  } * rules;
  size_t nrules;
  char **cors_list; /* cors_origins split, NULL-terminated */
  bool help;        /* --help or -h was given: nothing past it was read */
  /* Presence: `presence:PATTERN = on|off` lines of the config file, then
   * each --presence pattern as on; the first match wins. */
  struct fc_config_presence {
    char *pattern;
    bool on;
  } * presence_rules;
  size_t npresence_rules;
  char *presence_patterns;       /* --presence: channels with presence on, comma-separated globs */
  unsigned presence_max_entries; /* entries a presence listing shows per channel */
  unsigned presence_ttl_s;       /* with --redis: a node's entries live this long unless it refreshes them */
} fc_config_t;

/* Fills defaults, then the file, environment and `argv` (the flags after
 * `serve`). Returns 0; or a negative errno with a message in `err` for the
 * user: -EINVAL for a bad value, option or line, the errno of a config file
 * that cannot be read (-ENOENT, -EACCES, ...). When --help or -h comes before
 * anything wrong, returns 0 at once with `help` set: the other fields are then
 * not checked nor derived (usage is the caller's to print). */
int fc_config_load(fc_config_t *cfg, int argc, char **argv, char *err, size_t errlen);
void fc_config_dispose(fc_config_t *cfg);
/* Prints the options, their variables and defaults. */
void fc_config_usage(FILE *out);

#endif
