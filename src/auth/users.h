/* users: accounts in the data directory's database (or, in cluster mode, in
 * Redis), with argon2id hashes. */
#ifndef FC_USERS_H
#define FC_USERS_H

#include "auth/auth.h"

typedef struct fc_users fc_users_t;

/* Opens the users of DIR/flowcast.db (creating and upgrading the database if
 * needed), or with a non-empty `redis_url` the cluster's users in that Redis.
 * Thread-safe. NULL with `err` on failure. */
fc_users_t *fc_users_open(const char *dir, const char *redis_url, char *err, size_t errlen);
void fc_users_close(fc_users_t *u);

/* How many users there are, or -EIO. */
int fc_users_count(fc_users_t *u);
/* Return 0, -EEXIST (add of a taken name), -ENOENT (passwd/del of an unknown
 * user), -ENOMEM (the password could not be hashed), or -EIO. */
int fc_users_add(fc_users_t *u, const char *name, const char *password, bool admin);
int fc_users_passwd(fc_users_t *u, const char *name, const char *password);
int fc_users_del(fc_users_t *u, const char *name);
/* Calls `each` for every user, in name order. Returns 0, or -EIO. */
int fc_users_list(fc_users_t *u, void (*each)(void *ud, const char *name, bool admin, int64_t created_ms), void *ud);

/* Checks a password. Costs one argon2id verification whether or not the user
 * exists (a dummy hash stands in), so timing tells nothing. Returns 0 and fills
 * `out` with the user's rights, or -EACCES (unknown user, wrong password, or
 * users that cannot be read). Blocking: call off the loop threads. */
int fc_users_check(fc_users_t *u, const char *name, const char *password, fc_claims_t *out);

/* True when `name` is a valid user name: [A-Za-z0-9._@-]{1,64}. */
bool fc_user_name_valid(const char *name);

#endif
