/* Access control for every route, login, and token minting. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"

#define MAX_TOKEN_TTL_S (366 * 24 * 3600)
#define COOKIE_NAME "flowcast_token"

static int64_t now_s(void) { return fc_now_ms() / 1000; }

/* Cluster mode: the secret every node signs with, made by the first node. */
static int cluster_secret(fc_store_t *store, uint8_t *secret, size_t len, char *err, size_t errlen) {
  uint8_t candidate[64];
  randombytes_buf(candidate, sizeof candidate);
  int rc = fc_store_shared_secret(store, "jwt", candidate, secret, len);
  sodium_memzero(candidate, sizeof candidate);
  if (rc < 0) snprintf(err, errlen, "cannot read or store the cluster's JWT secret in Redis (error %d)", rc);
  return rc < 0 ? rc : (int)len;
}

/* Reads the configured secret, or the cluster's, or DIR/jwt.secret, and an
 * optional public key. */
static fc_auth_t *make_auth(const fc_config_t *cfg, fc_store_t *store, char *err, size_t errlen) {
  uint8_t secret[64];
  int len;
  if (*cfg->jwt_secret) {
    len = (int)strlen(cfg->jwt_secret) < (int)sizeof secret ? (int)strlen(cfg->jwt_secret) : (int)sizeof secret;
    memcpy(secret, cfg->jwt_secret, (size_t)len);
  } else if (*cfg->redis_url) {
    if ((len = cluster_secret(store, secret, sizeof secret, err, errlen)) < 0) return NULL;
  } else if ((len = fc_auth_load_secret(cfg->data_dir, secret, sizeof secret, err, errlen)) < 0) {
    return NULL;
  }
  char *pem = NULL;
  if (*cfg->jwt_public_key) {
    FILE *f = fopen(cfg->jwt_public_key, "r");
    if (!f) {
      snprintf(err, errlen, "cannot read the JWT public key %s", cfg->jwt_public_key);
      return NULL;
    }
    fc_buf_t b;
    fc_buf_init(&b);
    char chunk[4096];
    for (size_t n; (n = fread(chunk, 1, sizeof chunk, f)) > 0;) fc_buf_append(&b, chunk, n);
    fclose(f);
    pem = fc_buf_take(&b, NULL);
  }
  fc_auth_t *a = fc_auth_new(&(fc_auth_opts_t){secret, (size_t)len, pem}, err, errlen);
  sodium_memzero(secret, sizeof secret);
  free(pem);
  return a;
}

/* First start with no users: `admin` gets FLOWCAST_ADMIN_PASSWORD, or a random
 * password printed once. */
static int first_admin(fc_app_t *app, char *err, size_t errlen) {
  if (fc_users_count(app->users) != 0) return 0;
  const char *env = getenv("FLOWCAST_ADMIN_PASSWORD");
  char pw[33];
  if (env && *env) {
    snprintf(pw, sizeof pw, "%s", env);
  } else {
    uint8_t raw[12];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(pw, sizeof pw, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  }
  int rc = fc_users_add(app->users, "admin", env && *env ? env : pw, true);
  if (rc == -EEXIST) return 0; /* cluster mode: another node made it first */
  if (rc < 0) {
    snprintf(err, errlen, "cannot create the first user (admin)");
    return rc;
  }
  if (env && *env) fc_log(FC_LOG_INFO, "created user admin", "password=from-FLOWCAST_ADMIN_PASSWORD");
  else
    fprintf(stderr,
            "\n  flowcast: created user 'admin' with password: %s\n"
            "  It is shown only this once. Change it with: flowcast users passwd admin\n\n",
            pw);
  sodium_memzero(pw, sizeof pw);
  return 0;
}

int fc_api_auth_init(fc_app_t *app, char *err, size_t errlen) {
  const fc_config_t *cfg = app->cfg;
  if (cfg->open) {
    fc_log(FC_LOG_WARN, "authentication is off: every request is allowed", "flag=--open");
    return 0;
  }
  app->auth = make_auth(cfg, app->store, err, errlen);
  if (!app->auth) return -EINVAL;
  app->users = fc_users_open(cfg->data_dir, cfg->redis_url, err, errlen);
  if (!app->users) return -EIO;
  app->limiter = fc_limiter_new(cfg->login_limit, 60);
  fc_api_limits_init(app);
  if (*cfg->redis_url && fc_limiter_share(app->limiter, cfg->redis_url, err, errlen) < 0) return -EIO;
  return first_admin(app, err, errlen);
}

void fc_api_auth_free(fc_app_t *app) {
  fc_auth_free(app->auth);
  fc_users_close(app->users);
  fc_limiter_free(app->limiter);
  fc_api_limits_free(app);
}

/* The token of a request: Authorization: Bearer, the cookie, or ?access_token=. */
static const char *request_token(fc_req_t *req) {
  fc_str_t h = fc_req_header(req, "authorization");
  if (h.base && h.len > 7 && !strncasecmp(h.base, "Bearer ", 7)) return fc_req_strndup(req, h.base + 7, h.len - 7);
  fc_str_t c = fc_req_header(req, "cookie");
  for (const char *p = c.base, *end = c.base + c.len; p && p < end;) {
    while (p < end && (*p == ' ' || *p == ';')) p++;
    const char *semi = memchr(p, ';', (size_t)(end - p));
    if (!semi) semi = end;
    size_t klen = strlen(COOKIE_NAME);
    if ((size_t)(semi - p) > klen && !strncmp(p, COOKIE_NAME "=", klen + 1))
      return fc_req_strndup(req, p + klen + 1, (size_t)(semi - p) - klen - 1);
    p = semi + 1;
  }
  return fc_req_query(req, "access_token", 0, NULL);
}

static void claims_free(void *c) {
  fc_claims_dispose(c);
  free(c);
}

const fc_claims_t *fc_api_claims(fc_req_t *req) { return req->user; }

const fc_claims_t *fc_api_try_claims(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  if (req->user || !app->auth) return req->user;
  const char *tok = request_token(req);
  if (!tok || !*tok) return NULL;
  fc_claims_t *c = fc_xcalloc(1, sizeof *c);
  char why[128];
  if (fc_auth_verify(app->auth, tok, now_s(), c, why, sizeof why) < 0) {
    free(c);
    return NULL;
  }
  req->user = c;
  req->user_free = claims_free;
  return c;
}

int64_t fc_api_expiry_ms(fc_req_t *req) {
  const fc_claims_t *c = req->user;
  if (!c) return 0;
  /* fc_auth_verify caps exp at FC_AUTH_TIME_MAX; stay safe whatever made c. */
  int64_t exp = c->exp < 1 ? 1 : c->exp > FC_AUTH_TIME_MAX ? FC_AUTH_TIME_MAX : c->exp;
  return exp * 1000;
}

/* Answers a refusal (401 with WWW-Authenticate, or 403) and returns -EACCES. */
static int deny(fc_req_t *req, int status, const char *code, const char *msg) {
  const char *extra = status == 401 ? "WWW-Authenticate: Bearer realm=\"flowcast\"\r\n" : NULL;
  fc_http_error_with(req, status, extra, code, "%s", msg);
  return -EACCES;
}

/* May the token (or no token) subscribe to `channel`? Returns 0, or answers
 * and returns -EACCES. */
static int check_subscribe(fc_req_t *req, const fc_claims_t *c, const char *channel) {
  fc_app_t *app = fc_app_of(req);
  if (fc_patterns_match(app->cfg->public_list, SIZE_MAX, channel)) return 0;
  if (!c) return deny(req, 401, "unauthorized", "a token is needed to subscribe to this channel");
  if (!c->admin && !fc_patterns_match(c->subscribe, c->nsubscribe, channel))
    return deny(req, 403, "forbidden", "the token may not subscribe to this channel");
  return 0;
}

int fc_api_authorize(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  int access = req->route->access;
  if (!app->auth || access == FC_ACCESS_OPEN) return 0;
  fc_claims_t *c = NULL;
  const char *tok = request_token(req);
  if (tok && *tok) {
    c = fc_xcalloc(1, sizeof *c);
    char why[128];
    if (fc_auth_verify(app->auth, tok, now_s(), c, why, sizeof why) < 0) {
      free(c);
      fc_http_error_with(req, 401, "WWW-Authenticate: Bearer realm=\"flowcast\", error=\"invalid_token\"\r\n",
                         "invalid_token", "invalid token: %s", why);
      return -EACCES;
    }
    req->user = c;
    req->user_free = claims_free;
  }
  switch (access) {
    case FC_ACCESS_SUBSCRIBE: return check_subscribe(req, c, req->params[0]);
    case FC_ACCESS_SUBSCRIBE_QUERY:
      for (size_t i = 0;; i++) {
        const char *ch = fc_req_query(req, "channel", i, NULL);
        if (!ch) return 0; /* the handler checks the names themselves */
        if (check_subscribe(req, c, ch) < 0) return -EACCES;
      }
    case FC_ACCESS_SUBSCRIBE_JOB: { /* a job's stream answers as its channel's history */
      char ch[64];
      snprintf(ch, sizeof ch, "job.%.40s", req->params[1]);
      return check_subscribe(req, c, ch);
    }
    case FC_ACCESS_PUBLISH:
      if (!c) return deny(req, 401, "unauthorized", "a token is needed to publish");
      if (!c->admin && !fc_patterns_match(c->publish, c->npublish, req->params[0]))
        return deny(req, 403, "forbidden", "the token may not publish to this channel");
      return 0;
    case FC_ACCESS_TOKEN:
      if (!c) return deny(req, 401, "unauthorized", "a token is needed");
      return 0;
    case FC_ACCESS_PRESENCE:
      if (!c) return deny(req, 401, "unauthorized", "a token is needed to read presence");
      if (!c->admin && !fc_patterns_match(c->presence, c->npresence, req->params[0]))
        return deny(req, 403, "forbidden", "the token may not read this channel's presence");
      return 0;
    case FC_ACCESS_ADMIN:
      if (!c) return deny(req, 401, "unauthorized", "a token is needed");
      if (!c->admin) return deny(req, 403, "forbidden", "this needs an admin token");
      return 0;
  }
  return 0;
}

/* ---- login ----------------------------------------------------------------- */

typedef struct {
  uv_work_t work;
  fc_app_t *app;
  fc_req_t *req;
  char *user, *password;
  char ip_key[80], user_key[80];
  bool stay;
  bool ok;
  unsigned wait; /* > 0: limited, retry after this many seconds */
  fc_claims_t claims;
} login_t;

/* On a libuv worker thread: argon2id is too slow for a loop thread, and in
 * cluster mode the limits are counted in Redis. */
static void login_work(uv_work_t *w) {
  login_t *l = w->data;
  fc_limiter_t *lim = l->app->limiter;
  unsigned wait = fc_limiter_check(lim, l->ip_key, now_s()), wait_user = fc_limiter_check(lim, l->user_key, now_s());
  l->wait = wait > wait_user ? wait : wait_user;
  if (l->wait) return;
  l->ok = fc_users_check(l->app->users, l->user, l->password, &l->claims) == 0;
  if (l->ok) return;
  fc_limiter_fail(lim, l->ip_key, now_s());
  fc_limiter_fail(lim, l->user_key, now_s());
}

/* The answer that hands out a minted token: {"access_token","token_type",
 * "expires_in"}, with `extra` header lines (or NULL). Frees `tok`. A token
 * that could not be made is a 500, one too long to be accepted back a 400. */
static void answer_token(fc_req_t *req, int status, char *tok, int64_t ttl, const char *extra) {
  if (!tok) {
    fc_http_error(req, 500, "token_error", "the token could not be made");
  } else if (strlen(tok) > FC_AUTH_TOKEN_MAX) {
    fc_http_error(req, 400, "token_too_large",
                  "the token would be %zu characters; at most %d are accepted: use fewer or shorter patterns",
                  strlen(tok), FC_AUTH_TOKEN_MAX);
  } else {
    json_t *j = json_pack("{s:s,s:s,s:I}", "access_token", tok, "token_type", "Bearer", "expires_in", (json_int_t)ttl);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    fc_http_respond(req, status, "application/json", extra, body, strlen(body));
    free(body);
  }
  free(tok);
}

static void login_done(uv_work_t *w, int status) {
  login_t *l = w->data;
  fc_app_t *app = l->app;
  if (status == 0 && l->ok) {
    int64_t ttl = l->stay ? app->cfg->token_ttl_long_s : app->cfg->token_ttl_s;
    char *tok = fc_auth_mint(app->auth, &l->claims, now_s(), ttl);
    char *extra = NULL;
    if (tok && strlen(tok) <= FC_AUTH_TOKEN_MAX &&
        asprintf(&extra,
                 "Set-Cookie: " COOKIE_NAME "=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax\r\n"
                 "Cache-Control: no-store\r\n",
                 tok, (long long)ttl) < 0)
      extra = NULL;
    answer_token(l->req, 200, tok, ttl, extra);
    free(extra);
  } else if (status == 0 && l->wait) {
    char extra[64];
    snprintf(extra, sizeof extra, "Retry-After: %u\r\n", l->wait);
    fc_http_error_with(l->req, 429, extra, "too_many_attempts", "too many failed logins; retry in %u s", l->wait);
  } else {
    deny(l->req, 401, "invalid_credentials", "wrong user name or password");
  }
  sodium_memzero(l->password, strlen(l->password));
  free(l->password);
  free(l->user);
  fc_claims_dispose(&l->claims);
  free(l);
}

void fc_api_login(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  if (!app->auth) {
    fc_http_error(req, 404, "auth_off", "authentication is off (--open): no login needed");
    return;
  }
  json_t *j = json_loadb(req->body.data, req->body.len, 0, NULL);
  const char *user = json_string_value(json_object_get(j, "username"));
  const char *pass = json_string_value(json_object_get(j, "password"));
  if (!user || !pass || strlen(user) > 128 || strlen(pass) > 1024) {
    json_decref(j);
    fc_http_error(req, 400, "bad_login",
                  "expected {\"username\": \"...\", \"password\": \"...\", \"stayConnected\": false}");
    return;
  }
  login_t *l = fc_xcalloc(1, sizeof *l);
  l->app = app;
  l->req = req;
  l->user = fc_xstrndup(user, strlen(user));
  l->password = fc_xstrndup(pass, strlen(pass));
  l->stay = json_is_true(json_object_get(j, "stayConnected"));
  json_decref(j);
  char ip[64];
  fc_req_peer_ip(req, ip, sizeof ip);
  snprintf(l->ip_key, sizeof l->ip_key, "ip:%s", ip);
  snprintf(l->user_key, sizeof l->user_key, "user:%.70s", l->user);
  l->work.data = l;
  uv_queue_work(fc_loop_uv(req->loop), &l->work, login_work, login_done);
}

/* ---- tokens ---------------------------------------------------------------- */

#define RUN_PATTERN_MAX 32

/* Is `s` a pattern for `kind`: a channel name with '*' allowed, or for run a
 * workflow id pattern (digits and '*')? */
static bool pattern_ok(const char *s, bool run) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > (run ? RUN_PATTERN_MAX : FC_CHANNEL_NAME_MAX)) return false;
  for (const char *p = s; *p; p++)
    if (*p != '*' && !(run ? (*p >= '0' && *p <= '9') : fc_channel_name_valid(p, 1))) return false;
  return true;
}

/* A list of patterns (see pattern_ok); absent is empty, anything else sets *bad. */
static char **pattern_list(json_t *arr, bool run, size_t *n, bool *bad) {
  *n = 0;
  if (!arr) return NULL;
  if (!json_is_array(arr)) {
    *bad = true;
    return NULL;
  }
  char **out = fc_xcalloc(json_array_size(arr) + 1, sizeof *out);
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    const char *s = json_string_value(v);
    if (!pattern_ok(s, run)) *bad = true;
    else out[(*n)++] = fc_xstrndup(s, strlen(s));
  }
  return out;
}

/* An optional boolean member: false when absent, *bad when not a boolean. */
static bool flag(json_t *j, const char *name, bool *bad) {
  json_t *v = json_object_get(j, name);
  if (v && !json_is_boolean(v)) *bad = true;
  return json_is_true(v);
}

/* POST /tokens (admin): mints a scoped token. 400 for a bad request or a
 * token too long to be accepted back, 500 when it cannot be made. */
void fc_api_tokens(fc_req_t *req) {
  fc_app_t *app = fc_app_of(req);
  if (!app->auth) {
    fc_http_error(req, 404, "auth_off", "authentication is off (--open): tokens mean nothing");
    return;
  }
  json_t *j = json_loadb(req->body.data, req->body.len, 0, NULL);
  fc_claims_t c = {0};
  bool bad = !json_is_object(j);
  const char *sub = json_string_value(json_object_get(j, "sub"));
  json_t *ttl_j = json_object_get(j, "ttl");
  json_int_t ttl = ttl_j ? (json_is_integer(ttl_j) ? json_integer_value(ttl_j) : -1) : app->cfg->token_ttl_s;
  c.publish = pattern_list(json_object_get(j, "publish"), false, &c.npublish, &bad);
  c.subscribe = pattern_list(json_object_get(j, "subscribe"), false, &c.nsubscribe, &bad);
  c.run = pattern_list(json_object_get(j, "run"), true, &c.nrun, &bad);
  c.presence = pattern_list(json_object_get(j, "presence"), false, &c.npresence, &bad);
  c.send = flag(j, "send", &bad);
  c.admin = flag(j, "admin", &bad);
  if (bad || !sub || !*sub || strlen(sub) > 128 || ttl < 1 || ttl > MAX_TOKEN_TTL_S) {
    fc_http_error(req, 400, "bad_token_request",
                  "expected {\"sub\": \"name\", \"publish\": [patterns], \"subscribe\": [patterns], \"run\": "
                  "[workflow id patterns], \"presence\": [patterns], \"send\": bool, \"admin\": bool, \"ttl\": 1..%d}; "
                  "channel patterns are "
                  "names or globs such as orders.*, run patterns digits and * (at most %d characters)",
                  MAX_TOKEN_TTL_S, RUN_PATTERN_MAX);
  } else {
    c.sub = fc_xstrndup(sub, strlen(sub));
    answer_token(req, 201, fc_auth_mint(app->auth, &c, now_s(), ttl), ttl, NULL);
  }
  fc_claims_dispose(&c);
  json_decref(j);
}
