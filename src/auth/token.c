/* JWT verification and minting. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"

struct fc_auth {
  uint8_t *secret;
  size_t secret_len;
  char *public_key;     /* PEM, or NULL */
  jwt_alg_t public_alg; /* RS256 or ES256, from the key type */
};

void fc_claims_dispose(fc_claims_t *c) {
  free(c->sub);
  for (size_t i = 0; i < c->npublish; i++) free(c->publish[i]);
  for (size_t i = 0; i < c->nsubscribe; i++) free(c->subscribe[i]);
  for (size_t i = 0; i < c->nrun; i++) free(c->run[i]);
  for (size_t i = 0; i < c->npresence; i++) free(c->presence[i]);
  free(c->presence);
  free(c->publish);
  free(c->subscribe);
  free(c->run);
  memset(c, 0, sizeof *c);
}

fc_auth_t *fc_auth_new(const fc_auth_opts_t *o, char *err, size_t errlen) {
  if (sodium_init() < 0) {
    snprintf(err, errlen, "libsodium failed to initialize");
    return NULL;
  }
  if (o->secret_len < 32) {
    snprintf(err, errlen, "the JWT secret must be at least 32 bytes");
    return NULL;
  }
  fc_auth_t *a = fc_xcalloc(1, sizeof *a);
  a->secret = fc_xmalloc(o->secret_len);
  memcpy(a->secret, o->secret, o->secret_len);
  a->secret_len = o->secret_len;
  if (o->public_key_pem) {
    a->public_key = fc_xstrndup(o->public_key_pem, strlen(o->public_key_pem));
    /* The key's type names the algorithm: EC is ES256, RSA is RS256. */
    BIO *bio = BIO_new_mem_buf(o->public_key_pem, -1);
    EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    int type = pk ? EVP_PKEY_base_id(pk) : EVP_PKEY_NONE;
    EVP_PKEY_free(pk);
    BIO_free(bio);
    if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC) {
      snprintf(err, errlen, "the JWT public key is not an RSA or EC public key in PEM form");
      fc_auth_free(a);
      return NULL;
    }
    a->public_alg = type == EVP_PKEY_EC ? JWT_ALG_ES256 : JWT_ALG_RS256;
  }
  return a;
}

void fc_auth_free(fc_auth_t *a) {
  if (!a) return;
  sodium_memzero(a->secret, a->secret_len);
  free(a->secret);
  free(a->public_key);
  free(a);
}

/* True when `token` is three base64url segments, the first two not empty.
 * libjwt 1.10 (Debian 12) writes past a zero-sized buffer when it decodes an
 * empty segment ("h..s"), so nothing else may reach jwt_decode(); an empty
 * signature passes here only so that "alg none" is refused by name, and is
 * refused before jwt_decode(). */
static bool well_formed(const char *token) {
  size_t seg = 0, len = 0;
  for (const char *p = token;; p++) {
    if (*p == '.' || *p == '\0') {
      if ((len == 0 && (seg < 2 || *p)) || len % 4 == 1) return false; /* empty, or not base64 */
      seg++, len = 0;
      if (*p == '\0') return seg == 3;
      continue;
    }
    bool b64 =
        (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
    if (!b64) return false;
    len++;
  }
}

/* The "alg" of a token's header, read before any verification, so that the
 * key is chosen by the server, never by the token. */
static int header_alg(const char *token, char *alg, size_t cap) {
  const char *dot = strchr(token, '.');
  if (!dot || dot == token || (size_t)(dot - token) > 2048) return -EINVAL;
  unsigned char raw[1600];
  size_t len;
  if (sodium_base642bin(raw, sizeof raw - 1, token, (size_t)(dot - token), NULL, &len, NULL,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return -EINVAL;
  json_t *h = json_loadb((const char *)raw, len, 0, NULL);
  const char *a = json_string_value(json_object_get(h, "alg"));
  int rc = a && strlen(a) < cap ? 0 : -EINVAL;
  if (rc == 0) strcpy(alg, a);
  json_decref(h);
  return rc;
}

static char **string_list(json_t *arr, size_t *n) {
  *n = 0;
  if (!json_is_array(arr)) return NULL;
  char **out = fc_xcalloc(json_array_size(arr) + 1, sizeof *out);
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (json_is_string(v)) out[(*n)++] = fc_xstrndup(json_string_value(v), json_string_length(v));
  }
  return out;
}

/* A NumericDate claim (RFC 7519 2: seconds, possibly fractional) as a double,
 * which holds any JSON number without overflow. Returns 0 with `*present`
 * telling whether the claim is there, or -EINVAL when it is there but not a
 * number (a string, ...). */
static int numeric_date(json_t *claims, const char *name, double *out, bool *present) {
  json_t *v = json_object_get(claims, name);
  *present = v != NULL;
  if (!v) return 0;
  if (!json_is_number(v)) return -EINVAL;
  *out = json_number_value(v);
  return 0;
}

/* Checks exp, nbf and iat against `now` (whole seconds) with doubles, so no
 * value, however large or negative, overflows. Fills out->exp with exp
 * rounded up and capped at FC_AUTH_TIME_MAX (so exp * 1000 fits in int64). */
static int check_times(json_t *claims, int64_t now, fc_claims_t *out, char *why, size_t whylen) {
  double exp = 0, nbf = 0, iat = 0;
  bool has_exp, has_nbf, has_iat;
  int bad_exp = numeric_date(claims, "exp", &exp, &has_exp);
  int bad_nbf = numeric_date(claims, "nbf", &nbf, &has_nbf);
  int bad_iat = numeric_date(claims, "iat", &iat, &has_iat);
  if (bad_exp < 0 || bad_nbf < 0 || bad_iat < 0) {
    snprintf(why, whylen, "the token's %s claim is not a number", bad_exp < 0 ? "exp" : bad_nbf < 0 ? "nbf" : "iat");
    return -EINVAL;
  }
  if (!has_exp || exp <= 0) {
    snprintf(why, whylen, "the token has no exp claim");
    return -EINVAL;
  }
  if (exp <= (double)now) {
    snprintf(why, whylen, "the token expired");
    return -EACCES;
  }
  if (has_nbf && nbf > (double)now) {
    snprintf(why, whylen, "the token is not valid yet (nbf)");
    return -EACCES;
  }
  out->exp = exp >= (double)FC_AUTH_TIME_MAX ? FC_AUTH_TIME_MAX : (int64_t)ceil(exp);
  return 0;
}

/* Reads sub, the times and the flowcast claim from the token's claims.
 * Returns 0, -EINVAL (malformed) or -EACCES (expired, not yet valid). */
static int read_claims(jwt_t *jwt, fc_claims_t *out, int64_t now, char *why, size_t whylen) {
  char *all = jwt_get_grants_json(jwt, NULL);
  json_t *claims = all ? json_loads(all, 0, NULL) : NULL;
  free(all);
  int rc = json_is_object(claims) ? check_times(claims, now, out, why, whylen) : -EINVAL;
  if (rc < 0) {
    if (!json_is_object(claims)) snprintf(why, whylen, "malformed token claims");
    json_decref(claims);
    return rc;
  }
  json_t *sub = json_object_get(claims, "sub");
  out->sub = json_is_string(sub) ? fc_xstrndup(json_string_value(sub), json_string_length(sub)) : fc_xstrndup("", 0);
  json_t *j = json_object_get(claims, "flowcast");
  out->publish = string_list(json_object_get(j, "publish"), &out->npublish);
  out->subscribe = string_list(json_object_get(j, "subscribe"), &out->nsubscribe);
  out->run = string_list(json_object_get(j, "run"), &out->nrun);
  out->presence = string_list(json_object_get(j, "presence"), &out->npresence);
  out->send = json_is_true(json_object_get(j, "send"));
  out->admin = json_is_true(json_object_get(j, "admin"));
  json_decref(claims);
  return 0;
}

int fc_auth_verify(fc_auth_t *a, const char *token, int64_t now, fc_claims_t *out, char *why, size_t whylen) {
  memset(out, 0, sizeof *out);
  char alg[16];
  if (strlen(token) > FC_AUTH_TOKEN_MAX || !well_formed(token) || header_alg(token, alg, sizeof alg) < 0) {
    snprintf(why, whylen, "malformed token");
    return -EINVAL;
  }
  const unsigned char *key;
  int keylen;
  jwt_alg_t want;
  if (!strcmp(alg, "HS256")) {
    want = JWT_ALG_HS256, key = a->secret, keylen = (int)a->secret_len;
  } else if (a->public_key && !strcmp(alg, jwt_alg_str(a->public_alg))) {
    want = a->public_alg, key = (const unsigned char *)a->public_key, keylen = (int)strlen(a->public_key);
  } else {
    snprintf(why, whylen, "token algorithm %s is not accepted", alg);
    return -EACCES;
  }
  jwt_t *jwt = NULL;
  if (token[strlen(token) - 1] == '.' || jwt_decode(&jwt, token, key, keylen) != 0 || !jwt ||
      jwt_get_alg(jwt) != want) {
    jwt_free(jwt);
    snprintf(why, whylen, "bad token signature");
    return -EACCES;
  }
  int rc = read_claims(jwt, out, now, why, whylen);
  jwt_free(jwt);
  if (rc < 0) fc_claims_dispose(out);
  return rc;
}

static json_t *json_list(char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    if (json_array_append_new(a, json_string(v[i])) != 0) {
      json_decref(a);
      return NULL;
    }
  return a;
}

char *fc_auth_mint(fc_auth_t *a, const fc_claims_t *c, int64_t now, int64_t ttl) {
  json_t *pub = json_list(c->publish, c->npublish), *sub = json_list(c->subscribe, c->nsubscribe);
  json_t *run = json_list(c->run, c->nrun), *pres = json_list(c->presence, c->npresence);
  /* A list that could not be encoded (text not UTF-8): mint nothing. */
  json_t *fc = pub && sub && run && pres
                   ? json_pack("{s:{s:O,s:O,s:O,s:O,s:b,s:b}}", "flowcast", "publish", pub, "subscribe", sub, "run",
                               run, "presence", pres, "send", c->send, "admin", c->admin)
                   : NULL;
  json_decref(pub), json_decref(sub), json_decref(run), json_decref(pres);
  char *s = fc ? json_dumps(fc, JSON_COMPACT) : NULL, *tok = NULL;
  json_decref(fc);
  jwt_t *jwt = NULL;
  if (s && jwt_new(&jwt) == 0 && jwt_add_grant(jwt, "sub", c->sub ? c->sub : "") == 0 &&
      jwt_add_grant_int(jwt, "iat", (long)now) == 0 && jwt_add_grant_int(jwt, "exp", (long)(now + ttl)) == 0 &&
      jwt_add_grants_json(jwt, s) == 0 && jwt_set_alg(jwt, JWT_ALG_HS256, a->secret, (int)a->secret_len) == 0)
    tok = jwt_encode_str(jwt);
  jwt_free(jwt);
  free(s);
  return tok;
}

int fc_auth_load_secret(const char *dir, uint8_t *out, size_t cap, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/jwt.secret", dir);
  char hex[129] = "";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, hex, sizeof hex - 1);
    close(fd);
    size_t len;
    if (n < 64 || sodium_hex2bin(out, cap, hex, (size_t)n, "\n", &len, NULL) != 0 || len < 32) {
      snprintf(err, errlen, "%s is damaged (expected 64+ hex digits); remove it to make a new one", path);
      return -EINVAL;
    }
    return (int)len;
  }
  if (errno != ENOENT) {
    int e = errno;
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
    return -e;
  }
  randombytes_buf(out, 32);
  sodium_bin2hex(hex, sizeof hex, out, 32);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, hex, 64) != 64 || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
    int e = errno ? errno : EIO;
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
    if (fd >= 0) close(fd);
    return -e;
  }
  close(fd);
  return 32;
}
