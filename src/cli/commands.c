/* Client commands: publish and token, and what every client command shares. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"

int fc__client_init(fc__client_t *o, const char *url, const char *token, const char *cmd) {
  if (!url) url = getenv("FLOWCAST_URL");
  if (!url || !*url) url = "http://127.0.0.1:8000";
  if (!token) token = getenv("FLOWCAST_TOKEN");
  o->token = token;
  o->url_text = url;
  if (token && strpbrk(token, "\r\n")) {
    fprintf(stderr, "flowcast %s: the token holds a line break: pass it without one\n", cmd);
    return FC_EXIT_USAGE;
  }
  char err[256];
  if (fc_url_parse(url, &o->url, err, sizeof err) < 0) {
    fprintf(stderr, "flowcast %s: %s\nflowcast %s: hint: --url and FLOWCAST_URL take http[s]://HOST[:PORT][/PREFIX]\n",
            cmd, err, cmd);
    return FC_EXIT_USAGE;
  }
  return 0;
}

int fc__parse_count(const char *cmd, const char *opt, const char *v, uint64_t max, uint64_t *out) {
  if (fc_parse_u64(v, strlen(v), out) < 0 || *out > max) {
    fprintf(stderr, "flowcast %s: %s wants a whole number from 0 to %llu, got '%s'\n", cmd, opt,
            (unsigned long long)max, v);
    return -1;
  }
  return 0;
}

/* Reads all of stdin. */
static char *read_stdin(size_t *len) {
  fc_buf_t b;
  fc_buf_init(&b);
  char chunk[8192];
  for (size_t n; (n = fread(chunk, 1, sizeof chunk, stdin)) > 0;) fc_buf_append(&b, chunk, n);
  fc_buf_puts(&b, "");
  return fc_buf_take(&b, len);
}

static void publish_usage(void) {
  printf("Usage: flowcast publish CHANNEL [DATA|-] [--event NAME] [--type CONTENT-TYPE] [--url URL] [--token T]\n\n"
         "Publishes DATA (or standard input with - or no DATA) to CHANNEL and prints the event id.\n"
         "DATA is JSON unless --type says otherwise (e.g. text/plain, application/x-ndjson).\n"
         "CHANNEL and NAME are 1 to 128 of A-Z a-z 0-9 . _ : - (checked before sending).\n"
         "URL and T default to FLOWCAST_URL (http://127.0.0.1:8000) and FLOWCAST_TOKEN.\n\n");
  fc_cli_exit_help(stdout);
}

int fc_cli_publish(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *event = NULL, *type = "application/json", *channel = NULL, *data = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return publish_usage(), FC_EXIT_OK;
    if (!strcmp(a, "--event") && v) event = v, i++;
    else if (!strcmp(a, "--type") && v) type = v, i++;
    else if (!strcmp(a, "--url") && v) url = v, i++;
    else if (!strcmp(a, "--token") && v) token = v, i++;
    else if (a[0] == '-' && a[1])
      return fprintf(stderr, "flowcast publish: unknown option or missing value '%s' (see --help)\n", a), FC_EXIT_USAGE;
    else if (!channel) channel = a;
    else if (!data) data = a;
    else return fprintf(stderr, "flowcast publish: unexpected argument '%s' (see --help)\n", a), FC_EXIT_USAGE;
  }
  if (!channel) return fprintf(stderr, "flowcast publish: name a channel (see --help)\n"), FC_EXIT_USAGE;
  if (!fc_cli_channel_valid(channel)) return fc_cli_bad_channel("publish", channel);
  if (event && !fc_cli_channel_valid(event)) {
    fprintf(stderr, "flowcast publish: '%s' is not an event name: a name is 1 to 128 of A-Z a-z 0-9 . _ : -\n", event);
    return FC_EXIT_USAGE;
  }
  if (strpbrk(type, "\r\n")) return fprintf(stderr, "flowcast publish: --type holds a line break\n"), FC_EXIT_USAGE;
  fc__client_t o;
  int rc = fc__client_init(&o, url, token, "publish");
  if (rc) return rc;
  size_t len;
  char *body = !data || !strcmp(data, "-") ? read_stdin(&len) : fc_xstrndup(data, len = strlen(data));
  fc_buf_t path, out;
  fc_buf_init(&path);
  fc_buf_init(&out);
  fc_buf_puts(&path, "/api/v1/channels/");
  fc_url_escape(&path, channel);
  fc_buf_puts(&path, "/events");
  if (event) fc_buf_puts(&path, "?event="), fc_url_escape(&path, event);
  char err[256];
  int status = fc_http_call(
      &o.url,
      &(fc_http_call_t){
          .method = "POST", .path = path.data, .token = o.token, .content_type = type, .body = body, .body_len = len},
      &out, err, sizeof err);
  free(body);
  if (status != 201) {
    rc = fc_cli_report("publish", status, &out, err, o.url_text);
    if (rc == FC_EXIT_OK) rc = FC_EXIT_ERROR; /* a 2xx other than 201 is not a flowcast answer */
  } else {
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    printf("%s\n", id ? id : out.data ? out.data : "");
    json_decref(j);
  }
  fc_buf_dispose(&path);
  fc_buf_dispose(&out);
  return rc;
}

/* ---- token ----------------------------------------------------------------- */

static void token_usage(void) {
  printf("Usage: flowcast token --sub NAME [--publish PATTERN]... [--subscribe PATTERN]... [--presence PATTERN]...\n"
         "                      [--ttl S] [--admin] [--url URL] [--token ADMIN_TOKEN]\n\n"
         "Mints a scoped token through POST /api/v1/tokens (needs an admin token) and prints it.\n"
         "PATTERN is a channel name or a glob such as orders.*; --presence lets the token read who is\n"
         "subscribed to matching channels (GET /api/v1/channels/{c}/presence).\n\n");
  fc_cli_exit_help(stdout);
}

/* Mints the token described by `req`; prints it. Returns the exit status. */
static int mint(const fc__client_t *o, json_t *req) {
  char *body = json_dumps(req, JSON_COMPACT);
  fc_buf_t out;
  fc_buf_init(&out);
  char err[256];
  int status = fc_http_call(
      &o->url,
      &(fc_http_call_t){
          .method = "POST", .path = "/api/v1/tokens", .token = o->token, .body = body, .body_len = strlen(body)},
      &out, err, sizeof err);
  free(body);
  json_t *j = status == 201 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
  const char *tok = json_string_value(json_object_get(j, "access_token"));
  int rc = FC_EXIT_OK;
  if (tok) printf("%s\n", tok);
  else if ((rc = fc_cli_report("token", status, &out, err, o->url_text)) == FC_EXIT_OK) rc = FC_EXIT_ERROR;
  json_decref(j);
  fc_buf_dispose(&out);
  return rc;
}

int fc_cli_token(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *sub = NULL;
  json_t *pub = json_array(), *subs = json_array(), *pres = json_array();
  uint64_t ttl = 0;
  bool admin = false;
  int rc = FC_EXIT_USAGE;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      token_usage();
      rc = FC_EXIT_OK;
      goto done;
    }
    if (!strcmp(a, "--sub") && v) sub = v, i++;
    else if (!strcmp(a, "--publish") && v) json_array_append_new(pub, json_string(v)), i++;
    else if (!strcmp(a, "--subscribe") && v) json_array_append_new(subs, json_string(v)), i++;
    else if (!strcmp(a, "--presence") && v) json_array_append_new(pres, json_string(v)), i++;
    else if (!strcmp(a, "--ttl") && v) {
      if (fc__parse_count("token", "--ttl", v, 100000000, &ttl) < 0) goto done;
      i++;
    } else if (!strcmp(a, "--admin")) admin = true;
    else if (!strcmp(a, "--url") && v) url = v, i++;
    else if (!strcmp(a, "--token") && v) token = v, i++;
    else {
      fprintf(stderr, "flowcast token: unexpected argument or missing value '%s' (see --help)\n", a);
      goto done;
    }
  }
  fc__client_t o;
  if (!sub) {
    fprintf(stderr, "flowcast token: --sub NAME is required (the token's subject, e.g. a service name)\n");
    goto done;
  }
  if ((rc = fc__client_init(&o, url, token, "token")) != 0) goto done;
  json_t *req = json_pack("{s:s,s:O,s:O,s:O,s:b}", "sub", sub, "publish", pub, "subscribe", subs, "presence", pres,
                          "admin", admin);
  if (!req) {
    fprintf(stderr, "flowcast token: --sub and the patterns must be UTF-8 text\n");
    rc = FC_EXIT_USAGE;
    goto done;
  }
  if (ttl > 0) json_object_set_new(req, "ttl", json_integer((json_int_t)ttl));
  rc = mint(&o, req);
  json_decref(req);
done:
  json_decref(pub);
  json_decref(subs);
  json_decref(pres);
  return rc;
}
