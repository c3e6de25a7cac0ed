/* User accounts: argon2id (libsodium's crypto_pwhash_str) in the store's records. */
#include "auth/users.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/records.h"

struct fc_users {
  fc_records_t *rec; /* under lock */
  pthread_mutex_t lock;
  char dummy[crypto_pwhash_STRBYTES]; /* verified for unknown users */
};

bool fc_user_name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '@' || c == '-'))
      return false;
  }
  return true;
}

static int hash_password(const char *password, char out[crypto_pwhash_STRBYTES]) {
  return crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                           crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

fc_users_t *fc_users_open(const char *dir, const char *redis_url, char *err, size_t errlen) {
  if (sodium_init() < 0) {
    snprintf(err, errlen, "libsodium failed to initialize");
    return NULL;
  }
  fc_records_t *rec =
      redis_url && *redis_url ? fc_records_open_redis(redis_url, err, errlen) : fc_records_open(dir, err, errlen);
  if (!rec) return NULL;
  fc_users_t *u = fc_xcalloc(1, sizeof *u);
  u->rec = rec;
  pthread_mutex_init(&u->lock, NULL);
  char pw[32];
  randombytes_buf(pw, sizeof pw - 1);
  for (size_t i = 0; i < sizeof pw - 1; i++) pw[i] = (char)('a' + (unsigned char)pw[i] % 26);
  pw[sizeof pw - 1] = '\0';
  if (hash_password(pw, u->dummy) != 0) {
    snprintf(err, errlen, "cannot hash a password (out of memory?)");
    fc_users_close(u);
    return NULL;
  }
  return u;
}

void fc_users_close(fc_users_t *u) {
  if (!u) return;
  fc_records_close(u->rec);
  pthread_mutex_destroy(&u->lock);
  free(u);
}

int fc_users_count(fc_users_t *u) {
  pthread_mutex_lock(&u->lock);
  int n = fc_records_users_count(u->rec);
  pthread_mutex_unlock(&u->lock);
  return n;
}

int fc_users_add(fc_users_t *u, const char *name, const char *password, bool admin) {
  char hash[crypto_pwhash_STRBYTES];
  if (hash_password(password, hash) != 0) return -ENOMEM;
  pthread_mutex_lock(&u->lock);
  int rc = fc_records_user_add(u->rec, name, hash, admin, fc_now_ms());
  pthread_mutex_unlock(&u->lock);
  return rc;
}

int fc_users_passwd(fc_users_t *u, const char *name, const char *password) {
  char hash[crypto_pwhash_STRBYTES];
  if (hash_password(password, hash) != 0) return -ENOMEM;
  pthread_mutex_lock(&u->lock);
  int rc = fc_records_user_set_hash(u->rec, name, hash);
  pthread_mutex_unlock(&u->lock);
  return rc;
}

int fc_users_del(fc_users_t *u, const char *name) {
  pthread_mutex_lock(&u->lock);
  int rc = fc_records_user_delete(u->rec, name);
  pthread_mutex_unlock(&u->lock);
  return rc;
}

int fc_users_list(fc_users_t *u, void (*each)(void *ud, const char *name, bool admin, int64_t created_ms), void *ud) {
  pthread_mutex_lock(&u->lock);
  int rc = fc_records_users_list(u->rec, each, ud);
  pthread_mutex_unlock(&u->lock);
  return rc < 0 ? -EIO : 0;
}

static char **one_pattern(const char *p, size_t *n) {
  char **v = fc_xcalloc(2, sizeof *v);
  v[0] = fc_xstrndup(p, strlen(p));
  *n = 1;
  return v;
}

int fc_users_check(fc_users_t *u, const char *name, const char *password, fc_claims_t *out) {
  memset(out, 0, sizeof *out);
  char hash[crypto_pwhash_STRBYTES];
  bool admin = false;
  pthread_mutex_lock(&u->lock);
  bool found = fc_records_user_get(u->rec, name, hash, sizeof hash, &admin) == 0;
  pthread_mutex_unlock(&u->lock);
  /* Always one verification: an unknown user costs what a wrong password does. */
  bool ok = crypto_pwhash_str_verify(found ? hash : u->dummy, password, strlen(password)) == 0 && found;
  if (!ok) return -EACCES;
  out->sub = fc_xstrndup(name, strlen(name));
  out->admin = admin;
  out->publish = one_pattern("*", &out->npublish);
  out->subscribe = one_pattern("*", &out->nsubscribe);
  out->run = one_pattern("*", &out->nrun);
  out->send = true;
  return 0;
}
