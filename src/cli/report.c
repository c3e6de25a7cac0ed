/* What the client commands share: exit statuses, failure reports that name the
 * problem and the fix, channel names in URLs, reconnection delays. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/client.h"

int fc_cli_exit_for(int status) {
  if (status >= 200 && status < 300) return FC_EXIT_OK;
  if (status < 0 || status == 502 || status == 503 || status == 504) return FC_EXIT_UNAVAILABLE;
  if (status == 401 || status == 403) return FC_EXIT_AUTH;
  if (status == 404 || status == 410) return FC_EXIT_NOT_FOUND;
  return FC_EXIT_ERROR;
}

/* What a status means when the server gave no message. */
static const char *status_text(int status) {
  switch (status) {
    case 400: return "the server rejected the request as malformed";
    case 401: return "the server wants a valid token";
    case 403: return "the token does not allow this";
    case 404: return "the server has no such resource";
    case 405: return "the server does not allow this method here";
    case 408: return "the server timed out waiting for the request";
    case 409: return "the request conflicts with the current state";
    case 413: return "the request body is larger than the server allows";
    case 414: return "the request's URL is too long";
    case 429: return "too many requests: the server is rate limiting";
    case 502:
    case 504: return "a proxy in front of the server could not reach it";
    case 503: return "the server (or its storage) is unavailable";
    default: return status >= 500 ? "the server failed" : "the server refused the request";
  }
}

/* What to do about a failure. */
static const char *hint_for(int status, const char *code, const char *url) {
  static char buf[512];
  if (status < 0) {
    snprintf(buf, sizeof buf, "is the server running and listening at %s? set --url or FLOWCAST_URL", url);
    return buf;
  }
  if (code && !strcmp(code, "invalid_token"))
    return "the token is expired or not valid here: log in again or mint a new one (flowcast token), "
           "and pass it with --token or FLOWCAST_TOKEN";
  switch (status) {
    case 401: return "pass a token with --token or FLOWCAST_TOKEN (from POST /api/v1/login or flowcast token)";
    case 403:
      return "use a token whose rights cover this channel or action (flowcast token --publish/--subscribe PATTERN)";
    case 404:
      snprintf(buf, sizeof buf, "check the name, and that %s is a flowcast server (with its path prefix, if any)", url);
      return buf;
    case 413: return "send less data, or raise the server's --max-body";
    case 429: return "wait a minute and try again";
    case 503:
      return "the server could not store or serve this now: retry later, and check its storage (disk, --max-db-size, "
             "Redis)";
    default: return NULL;
  }
}

int fc_cli_report(const char *cmd, int status, const fc_buf_t *body, const char *err, const char *url) {
  json_t *j = status > 0 && body && body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
  json_t *e = json_object_get(j, "error");
  const char *msg = json_string_value(json_object_get(e, "message"));
  const char *code = json_string_value(json_object_get(e, "code"));
  if (status < 0) {
    fprintf(stderr, "flowcast %s: %s\n", cmd, err && *err ? err : "the server could not be reached");
  } else if (msg && *msg) {
    fprintf(stderr, "flowcast %s: %d: %s%s%s%s\n", cmd, status, msg, code ? " (" : "", code ? code : "",
            code ? ")" : "");
  } else if (!j && body && body->len) {
    fprintf(stderr, "flowcast %s: %d: %s: %.*s\n", cmd, status, status_text(status),
            (int)(body->len > 300 ? 300 : body->len), body->data);
  } else {
    fprintf(stderr, "flowcast %s: %d: %s\n", cmd, status, status_text(status));
  }
  const char *hint = hint_for(status, code, url);
  if (hint) fprintf(stderr, "flowcast %s: hint: %s\n", cmd, hint);
  json_decref(j);
  return fc_cli_exit_for(status);
}

bool fc_cli_channel_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 128) return false;
  return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

int fc_cli_bad_channel(const char *cmd, const char *name) {
  fprintf(stderr,
          "flowcast %s: '%s' is not a channel name: a name is 1 to 128 characters of A-Z a-z 0-9 . _ : -\n"
          "flowcast %s: hint: for a hierarchy use dots or colons, e.g. orders.eu or orders:eu\n",
          cmd, name, cmd);
  return FC_EXIT_USAGE;
}

void fc_url_escape(fc_buf_t *out, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                 *p == '.' || *p == '_' || *p == '~';
    if (plain) {
      fc_buf_append(out, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      fc_buf_append(out, e, 3);
    }
  }
}

unsigned fc_cli_backoff_ms(unsigned base_ms, unsigned attempt, unsigned cap_ms, uint32_t rnd) {
  uint64_t d = base_ms ? base_ms : 1;
  for (unsigned i = 0; i < attempt && d < cap_ms; i++) d *= 2;
  if (d > cap_ms) d = cap_ms;
  uint64_t half = d / 2;
  return (unsigned)(half + (half ? rnd % (d - half + 1) : 0));
}
