/* The dashboard: its embedded files (web/, see web_assets.h) with strict
 * security headers and ETag revalidation, and the two routes its login needs:
 * who the session is, and logout (the cookie is HttpOnly: only the server can
 * clear it). Only names in the table are served: a request for anything else,
 * `..` or an encoded variant included, is a 404 that reads no file. */
#include <string.h>

#include "api/api.h"
#include "api/web_assets.h"

/* No inline script or style, no eval, nothing from elsewhere, no framing. */
#define WEB_HEADERS                                                                                                    \
  "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "           \
  "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"                                \
  "X-Content-Type-Options: nosniff\r\n"                                                                                \
  "Referrer-Policy: no-referrer\r\n"                                                                                   \
  "X-Frame-Options: DENY\r\n"                                                                                          \
  "Cross-Origin-Opener-Policy: same-origin\r\n"                                                                        \
  "Cache-Control: no-cache\r\n"

static const fc_web_asset_t *find_asset(const char *name) {
  for (size_t i = 0; i < fc_web_nassets; i++)
    if (!strcmp(fc_web_assets[i].name, name)) return &fc_web_assets[i];
  return NULL;
}

/* True when If-None-Match names `etag` (or is "*"). */
static bool not_modified(fc_req_t *req, const char *etag) {
  fc_str_t h = fc_req_header(req, "if-none-match");
  if (!h.base) return false;
  size_t n = strlen(etag);
  for (size_t i = 0; i < h.len; i++) {
    if (h.base[i] == '*') return true;
    if (i + n <= h.len && !memcmp(h.base + i, etag, n)) return true;
  }
  return false;
}

/* GET / (index.html), /assets/{name}, /favicon.ico. */
void fc_api_dashboard(fc_req_t *req) {
  const char *name = req->params[0];
  if (!name) name = req->nsegs == 1 && !strcmp(req->segs[0], "favicon.ico") ? "favicon.svg" : "index.html";
  const fc_web_asset_t *a = find_asset(name);
  if (!a) {
    fc_http_error(req, 404, "not_found", "no such file in the dashboard");
    return;
  }
  char extra[1024];
  snprintf(extra, sizeof extra, WEB_HEADERS "ETag: %s\r\n", a->etag);
  if (not_modified(req, a->etag)) {
    fc_http_respond(req, 304, NULL, extra, "", 0);
    return;
  }
  fc_http_respond(req, 200, a->content_type, extra, a->data, a->len);
}

static json_t *patterns(char *const *p, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(p[i]));
  return a;
}

/* GET /api/v1/session: who the request's token is and what it may do, so the
 * page shows only what it may use: {"authenticated":false} without a valid
 * token (a 200, so a page that is not logged in yet logs no error), and
 * {"open":true,...} when the server runs without authentication. */
void fc_api_session(fc_req_t *req) {
  const fc_claims_t *c = fc_api_try_claims(req);
  json_t *j;
  if (!fc_app_of(req)->auth) {
    j = json_pack("{s:b,s:b,s:n,s:b}", "authenticated", 1, "open", 1, "sub", "admin", 1);
  } else if (!c) {
    j = json_pack("{s:b}", "authenticated", 0);
  } else {
    j = json_pack("{s:b,s:b,s:s?,s:b,s:o,s:o,s:o,s:I}", "authenticated", 1, "open", 0, "sub", c->sub, "admin", c->admin,
                  "publish", patterns(c->publish, c->npublish), "subscribe", patterns(c->subscribe, c->nsubscribe),
                  "run", patterns(c->run, c->nrun), "exp", (json_int_t)c->exp);
  }
  fc_http_respond_json(req, 200, j);
}

/* POST /api/v1/logout: clears the login cookie. */
void fc_api_logout(fc_req_t *req) {
  fc_http_respond(req, 204, NULL, "Set-Cookie: flowcast_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax\r\n", "", 0);
}
