/* The records' Redis backend (records_redis.c), behind records.h's calls
 * (records_sql.c hands a Redis handle's user calls here). */
#ifndef FC_STORE_RECORDS_REDIS_H
#define FC_STORE_RECORDS_REDIS_H

#include "store/records.h"
#include "store/redis.h"

typedef struct {
  fc__redis_url_t url;
  redisContext *c; /* NULL until (re)connected */
  char error[256];
} fc__rrec_t;

int fc__rrec_open(fc__rrec_t *r, const char *url, char *err, size_t errlen);
void fc__rrec_close(fc__rrec_t *r);
int fc__rrec_users_count(fc__rrec_t *r);
int fc__rrec_user_add(fc__rrec_t *r, const char *name, const char *hash, bool admin, int64_t created_ms);
int fc__rrec_user_set_hash(fc__rrec_t *r, const char *name, const char *hash);
int fc__rrec_user_delete(fc__rrec_t *r, const char *name);
int fc__rrec_users_list(fc__rrec_t *r, fc_records_user_cb *each, void *ud);
int fc__rrec_user_get(fc__rrec_t *r, const char *name, char *hash, size_t hashlen, bool *admin);

int fc__rrec_window_hit(fc__rrec_t *r, const char *key, unsigned window_s);
int fc__rrec_window_get(fc__rrec_t *r, const char *key, unsigned *ttl_s);

#endif
