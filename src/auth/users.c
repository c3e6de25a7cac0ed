/* User accounts: argon2id (libsodium's crypto_pwhash_str) in SQLite. */
#include "auth/users.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

struct fc_users {
  sqlite3 *db;
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

fc_users_t *fc_users_open(const char *dir, char *err, size_t errlen) {
  if (sodium_init() < 0) {
    snprintf(err, errlen, "libsodium failed to initialize");
    return NULL;
  }
  sqlite3 *db = fc_store_open_db(dir, err, errlen);
  if (!db) return NULL;
  fc_users_t *u = fc_xcalloc(1, sizeof *u);
  u->db = db;
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
  sqlite3_close(u->db);
  pthread_mutex_destroy(&u->lock);
  free(u);
}

/* Runs one statement with text parameters; returns the sqlite3 result of the
 * step and the number of rows changed. */
static int run(fc_users_t *u, const char *sql, const char *const *params, size_t n, int *changed) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(u->db, sql, -1, &st, NULL);
  for (size_t i = 0; rc == SQLITE_OK && i < n; i++) sqlite3_bind_text(st, (int)i + 1, params[i], -1, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (changed) *changed = sqlite3_changes(u->db);
  return rc;
}

int fc_users_count(fc_users_t *u) {
  pthread_mutex_lock(&u->lock);
  sqlite3_stmt *st;
  int n = -1;
  if (sqlite3_prepare_v2(u->db, "SELECT count(*) FROM users", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  pthread_mutex_unlock(&u->lock);
  return n;
}

int fc_users_add(fc_users_t *u, const char *name, const char *password, bool admin) {
  char hash[crypto_pwhash_STRBYTES], created[32];
  if (hash_password(password, hash) != 0) return -ENOMEM;
  snprintf(created, sizeof created, "%lld", (long long)fc_now_ms());
  const char *p[] = {name, hash, admin ? "1" : "0", created};
  pthread_mutex_lock(&u->lock);
  int rc = run(u, "INSERT INTO users(name, hash, admin, created_ms) VALUES(?,?,?,?)", p, 4, NULL);
  pthread_mutex_unlock(&u->lock);
  return rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
}

int fc_users_passwd(fc_users_t *u, const char *name, const char *password) {
  char hash[crypto_pwhash_STRBYTES];
  if (hash_password(password, hash) != 0) return -ENOMEM;
  const char *p[] = {hash, name};
  int changed;
  pthread_mutex_lock(&u->lock);
  int rc = run(u, "UPDATE users SET hash=? WHERE name=?", p, 2, &changed);
  pthread_mutex_unlock(&u->lock);
  return rc != SQLITE_DONE ? -EIO : changed ? 0 : -ENOENT;
}

int fc_users_del(fc_users_t *u, const char *name) {
  const char *p[] = {name};
  int changed;
  pthread_mutex_lock(&u->lock);
  int rc = run(u, "DELETE FROM users WHERE name=?", p, 1, &changed);
  pthread_mutex_unlock(&u->lock);
  return rc != SQLITE_DONE ? -EIO : changed ? 0 : -ENOENT;
}

int fc_users_list(fc_users_t *u, void (*each)(void *ud, const char *name, bool admin, int64_t created_ms),
                  void *ud) {
  pthread_mutex_lock(&u->lock);
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(u->db, "SELECT name, admin, created_ms FROM users ORDER BY name", -1, &st, NULL);
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    each(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1) != 0, sqlite3_column_int64(st, 2));
  sqlite3_finalize(st);
  pthread_mutex_unlock(&u->lock);
  return rc == SQLITE_OK ? 0 : -EIO;
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
  bool found = false, admin = false;
  pthread_mutex_lock(&u->lock);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(u->db, "SELECT hash, admin FROM users WHERE name=?", -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) < (int)sizeof hash) {
      snprintf(hash, sizeof hash, "%s", (const char *)sqlite3_column_text(st, 0));
      admin = sqlite3_column_int(st, 1) != 0;
      found = true;
    }
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&u->lock);
  /* Always one verification: an unknown user costs what a wrong password does. */
  bool ok = crypto_pwhash_str_verify(found ? hash : u->dummy, password, strlen(password)) == 0 && found;
  if (!ok) return -1;
  out->sub = fc_xstrndup(name, strlen(name));
  out->admin = admin;
  out->publish = one_pattern("*", &out->npublish);
  out->subscribe = one_pattern("*", &out->nsubscribe);
  out->run = one_pattern("*", &out->nrun);
  out->send = true;
  return 0;
}
