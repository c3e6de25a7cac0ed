/* Shared between the Redis store's files (store module only). */
#ifndef FC_STORE_REDIS_H
#define FC_STORE_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <uv.h>

#include "store/internal.h"

typedef struct {
  char host[256];
  int port;
  unsigned db;
  char user[128], password[256];
} fc__redis_url_t;

/* Parses redis://[USER:PASSWORD@]HOST[:PORT][/DB] (rediss:// is refused:
 * the linked hiredis has no TLS). 0, or -EINVAL with `err`. */
int fc__redis_url_parse(const char *url, fc__redis_url_t *u, char *err, size_t errlen);
/* A blocking connection, authenticated and on its database; NULL with `err`. */
redisContext *fc__redis_connect(const fc__redis_url_t *u, int timeout_ms, char *err, size_t errlen);
int fc__redis_check_version(redisContext *c, char *err, size_t errlen);
int fc__redis_load_script(redisContext *c, const char *lua, char *sha, char *err, size_t errlen);

/* Parses a bus message ("E ..." or "P ...", redis_lua.h) into `m`; its
 * events point into `p` and are in `evs` (grown as needed; free() it).
 * 0, or -EINVAL for a message flowcast did not write. */
int fc__redis_parse_bus(const char *p, size_t n, fc_bus_msg_t *m, fc_store_event_t **evs, size_t *cap);

#endif
