/* Client commands: publish, subscribe (reconnecting, resuming) and token. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/sseparse.h"

/* Options every client command takes. */
typedef struct {
  fc_url_t url;
  const char *token;
  bool json;
} client_opts_t;

static int client_init(client_opts_t *o, const char *url, const char *token, const char *cmd) {
  if (!url) url = getenv("FLOWCAST_URL");
  if (!url || !*url) url = "http://127.0.0.1:8000";
  if (!token) token = getenv("FLOWCAST_TOKEN");
  o->token = token;
  char err[256];
  if (fc_url_parse(url, &o->url, err, sizeof err) < 0) {
    fprintf(stderr, "flowcast %s: %s\n", cmd, err);
    return -1;
  }
  return 0;
}

/* Prints the server's JSON error (or the raw answer) for a failed call. */
static void print_failure(const char *cmd, int status, const fc_buf_t *body) {
  json_t *j = body->data ? json_loadb(body->data, body->len, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  fprintf(stderr, "flowcast %s: %d: %s\n", cmd, status, msg ? msg : body->data ? body->data : "");
  json_decref(j);
}

/* Reads all of stdin. */
static char *read_stdin(size_t *len) {
  fc_buf_t b;
  fc_buf_init(&b);
  char chunk[8192];
  for (size_t n; (n = fread(chunk, 1, sizeof chunk, stdin)) > 0;) fc_buf_append(&b, chunk, n);
  return fc_buf_take(&b, len);
}

int fc_cli_publish(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *event = NULL, *type = "application/json", *channel = NULL, *data = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("Usage: flowcast publish CHANNEL [DATA|-] [--event NAME] [--type CONTENT-TYPE] [--url URL] [--token T]\n\n"
             "Publishes DATA (or standard input with - or no DATA) to CHANNEL and prints the event id.\n"
             "DATA is JSON unless --type says otherwise (e.g. text/plain, application/x-ndjson).\n"
             "URL and T default to FLOWCAST_URL (http://127.0.0.1:8000) and FLOWCAST_TOKEN.\n");
      return 0;
    }
    if (!strcmp(a, "--event") && v) event = v, i++;
    else if (!strcmp(a, "--type") && v) type = v, i++;
    else if (!strcmp(a, "--url") && v) url = v, i++;
    else if (!strcmp(a, "--token") && v) token = v, i++;
    else if (a[0] == '-' && a[1]) return fprintf(stderr, "flowcast publish: unknown option '%s'\n", a), 2;
    else if (!channel) channel = a;
    else if (!data) data = a;
    else return fprintf(stderr, "flowcast publish: unexpected argument '%s'\n", a), 2;
  }
  client_opts_t o;
  if (!channel) return fprintf(stderr, "flowcast publish: name a channel (see --help)\n"), 2;
  if (client_init(&o, url, token, "publish") < 0) return 2;
  size_t len;
  char *body = !data || !strcmp(data, "-") ? read_stdin(&len) : fc_xstrndup(data, len = strlen(data));
  char path[512];
  snprintf(path, sizeof path, "/api/v1/channels/%s/events%s%s", channel, event ? "?event=" : "", event ? event : "");
  fc_buf_t out;
  fc_buf_init(&out);
  char err[256];
  int status = fc_http_call(&o.url, &(fc_http_call_t){.method = "POST", .path = path, .token = o.token,
                                                       .content_type = type, .body = body, .body_len = len},
                            &out, err, sizeof err);
  free(body);
  int rc = 0;
  if (status < 0) {
    fprintf(stderr, "flowcast publish: %s\n", err);
    rc = 1;
  } else if (status != 201) {
    print_failure("publish", status, &out);
    rc = 1;
  } else {
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    printf("%s\n", json_string_value(json_object_get(j, "id")) ? json_string_value(json_object_get(j, "id")) : out.data);
    json_decref(j);
  }
  fc_buf_dispose(&out);
  return rc;
}

/* ---- subscribe ------------------------------------------------------------- */

typedef struct sse_reader sse_reader_t;
struct sse_reader {
  fc_sse_parser_t parser;
  /* Handles a complete event instead of printing it; returns true to stop. */
  bool (*on_event)(sse_reader_t *r, const fc_sse_event_t *ev);
  int status; /* for on_event's use */
  bool json;
  long count; /* events to print before exiting; 0: no limit */
  long printed;
  unsigned default_retry_ms;
};

/* Prints one event, or hands it to on_event. */
static bool on_sse_event(void *ud, const fc_sse_event_t *ev) {
  sse_reader_t *r = ud;
  if (r->on_event) return r->on_event(r, ev);
  bool named = strcmp(ev->event, "message") != 0;
  if (r->json) {
    json_t *j = json_pack("{s:s,s:s?,s:s%}", "id", ev->id, "event", named ? ev->event : NULL, "data", ev->data,
                          ev->data_len);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(j);
  } else if (!strcmp(ev->event, "flowcast.gap")) {
    fprintf(stderr, "flowcast subscribe: gap: %s\n", ev->data);
  } else {
    printf("%s\n", ev->data);
  }
  fflush(stdout);
  r->printed++;
  return r->count && r->printed >= r->count;
}

static int on_sse_bytes(void *ud, const char *p, size_t n) {
  sse_reader_t *r = ud;
  int rc = fc_sse_feed(&r->parser, p, n);
  if (rc < 0) fprintf(stderr, "flowcast: the server sent an event past %zu bytes; reconnecting\n", r->parser.max_event);
  return rc ? 1 : 0;
}

static void sse_reader_init(sse_reader_t *r, const char *last_id, unsigned retry_ms) {
  fc_sse_parser_init(&r->parser, on_sse_event, r, last_id, 0);
  r->default_retry_ms = retry_ms;
}

/* The reconnection delay: the server's `retry:` when sane, else the default. */
static unsigned sse_retry_ms(const sse_reader_t *r) {
  return r->parser.retry_set && r->parser.retry_ms < 600000 ? (unsigned)r->parser.retry_ms : r->default_retry_ms;
}

int fc_cli_subscribe(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *last = NULL;
  sse_reader_t r = {0};
  fc_buf_t query;
  fc_buf_init(&query);
  fc_buf_puts(&query, "/api/v1/sse?replay=0");
  int nch = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("Usage: flowcast subscribe CHANNEL... [--last-event-id ID] [--json] [--count N] [--url URL] [--token T]\n\n"
             "Prints each event's data as it arrives (with --json: {\"id\",\"event\",\"data\"} per line).\n"
             "Reconnects by itself and resumes after the last event it printed; a gap is reported on\n"
             "standard error. --count N exits after N events.\n");
      return 0;
    }
    if (!strcmp(a, "--last-event-id") && v) last = v, i++;
    else if (!strcmp(a, "--json")) r.json = true;
    else if (!strcmp(a, "--count") && v) r.count = atol(v), i++;
    else if (!strcmp(a, "--url") && v) url = v, i++;
    else if (!strcmp(a, "--token") && v) token = v, i++;
    else if (a[0] == '-') return fprintf(stderr, "flowcast subscribe: unknown option '%s'\n", a), 2;
    else fc_buf_printf(&query, "&channel=%s", a), nch++;
  }
  client_opts_t o;
  if (!nch) return fprintf(stderr, "flowcast subscribe: name at least one channel (see --help)\n"), 2;
  if (client_init(&o, url, token, "subscribe") < 0) return 2;
  sse_reader_init(&r, last, 3000);
  int rc = 0;
  for (;;) {
    fc_buf_t out;
    fc_buf_init(&out);
    char err[256];
    fc_sse_parser_reset(&r.parser);
    int status = fc_http_call(&o.url, &(fc_http_call_t){.method = "GET", .path = query.data, .token = o.token,
                                                         .last_event_id = r.parser.last_id, .on_body = on_sse_bytes,
                                                         .ud = &r},
                              &out, err, sizeof err);
    if (status >= 400 && status < 500) {
      print_failure("subscribe", status, &out);
      rc = 1;
    }
    fc_buf_dispose(&out);
    if (rc || (r.count && r.printed >= r.count)) break;
    if (status < 0) fprintf(stderr, "flowcast subscribe: %s; retrying in %u ms\n", err, sse_retry_ms(&r));
    usleep(sse_retry_ms(&r) * 1000);
  }
  fc_buf_dispose(&query);
  fc_sse_parser_dispose(&r.parser);
  return rc;
}

/* ---- token ----------------------------------------------------------------- */

int fc_cli_token(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *sub = NULL;
  json_t *pub = json_array(), *subs = json_array();
  long ttl = 0;
  bool admin = false;
  int rc = 2;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("Usage: flowcast token --sub NAME [--publish PATTERN]... [--subscribe PATTERN]... [--ttl S] [--admin]\n"
             "                      [--url URL] [--token ADMIN_TOKEN]\n\n"
             "Mints a scoped token through POST /api/v1/tokens (needs an admin token) and prints it.\n"
             "PATTERN is a channel name or a glob such as orders.*\n");
      rc = 0;
      goto done;
    }
    if (!strcmp(a, "--sub") && v) sub = v, i++;
    else if (!strcmp(a, "--publish") && v) json_array_append_new(pub, json_string(v)), i++;
    else if (!strcmp(a, "--subscribe") && v) json_array_append_new(subs, json_string(v)), i++;
    else if (!strcmp(a, "--ttl") && v) ttl = atol(v), i++;
    else if (!strcmp(a, "--admin")) admin = true;
    else if (!strcmp(a, "--url") && v) url = v, i++;
    else if (!strcmp(a, "--token") && v) token = v, i++;
    else {
      fprintf(stderr, "flowcast token: unexpected argument '%s' (see --help)\n", a);
      goto done;
    }
  }
  client_opts_t o;
  if (!sub) {
    fprintf(stderr, "flowcast token: --sub NAME is required\n");
    goto done;
  }
  if (client_init(&o, url, token, "token") < 0) goto done;
  json_t *req = json_pack("{s:s,s:O,s:O,s:b}", "sub", sub, "publish", pub, "subscribe", subs, "admin", admin);
  if (ttl > 0) json_object_set_new(req, "ttl", json_integer(ttl));
  char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  fc_buf_t out;
  fc_buf_init(&out);
  char err[256];
  int status = fc_http_call(&o.url, &(fc_http_call_t){.method = "POST", .path = "/api/v1/tokens", .token = o.token,
                                                       .body = body, .body_len = strlen(body)},
                            &out, err, sizeof err);
  free(body);
  rc = 1;
  if (status < 0) {
    fprintf(stderr, "flowcast token: %s\n", err);
  } else if (status != 201) {
    print_failure("token", status, &out);
  } else {
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    printf("%s\n", json_string_value(json_object_get(j, "access_token")));
    json_decref(j);
    rc = 0;
  }
  fc_buf_dispose(&out);
done:
  json_decref(pub);
  json_decref(subs);
  return rc;
}

/* ---- start ------------------------------------------------------------------ */

/* Prints a job stream's events; the unnamed one is the final status. */
static bool on_job_event(sse_reader_t *r, const fc_sse_event_t *ev) {
  bool final = !strcmp(ev->event, "message");
  json_t *j = json_loads(ev->data, 0, NULL);
  if (!strcmp(ev->event, "log")) {
    const char *line = json_string_value(json_object_get(j, "line"));
    printf("  %s\n", line ? line : ev->data);
  } else if (!strcmp(ev->event, "status") || final) {
    const char *st = json_string_value(json_object_get(j, "status"));
    printf("%s: %s\n", final ? "final" : "status", st ? st : ev->data);
    if (final) r->status = st && !strcmp(st, "Done") ? 0 : 1;
  }
  json_decref(j);
  fflush(stdout);
  return final;
}

/* Asks the server for the job's final status (after a 204 on the stream). */
static int job_status(const client_opts_t *o, const char *wf, const char *job) {
  char path[256], err[256];
  snprintf(path, sizeof path, "/api/v1/job?w=%s&i=%s", wf, job);
  fc_buf_t out;
  fc_buf_init(&out);
  int status = fc_http_call(&o->url, &(fc_http_call_t){.method = "GET", .path = path, .token = o->token}, &out, err,
                            sizeof err);
  json_t *j = status == 200 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
  const char *st = json_string_value(json_object_get(j, "status"));
  int rc = st && !strcmp(st, "Done") ? 0 : 1;
  printf("final: %s\n", st ? st : "unknown");
  json_decref(j);
  fc_buf_dispose(&out);
  return rc;
}

int fc_cli_start(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *wf = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("Usage: flowcast start WORKFLOW_ID [--url URL] [--token T]\n\n"
             "Starts a job of the workflow and follows it, printing status changes and log lines.\n"
             "Exits 0 only when the job ends Done (1 for any other final status).\n");
      return 0;
    }
    if (!strcmp(a, "--url") && v) url = v, i++;
    else if (!strcmp(a, "--token") && v) token = v, i++;
    else if (a[0] == '-' || wf) return fprintf(stderr, "flowcast start: unexpected argument '%s'\n", a), 2;
    else wf = a;
  }
  client_opts_t o;
  if (!wf) return fprintf(stderr, "flowcast start: name a workflow id (see --help)\n"), 2;
  if (client_init(&o, url, token, "start") < 0) return 2;
  char path[256], err[256], job[64] = "";
  snprintf(path, sizeof path, "/api/v1/start?w=%s", wf);
  fc_buf_t out;
  fc_buf_init(&out);
  int status = fc_http_call(&o.url, &(fc_http_call_t){.method = "POST", .path = path, .token = o.token}, &out, err,
                            sizeof err);
  json_t *j = status >= 200 && status < 300 ? json_loadb(out.data, out.len, JSON_DECODE_ANY, NULL) : NULL;
  if (json_is_string(j)) snprintf(job, sizeof job, "%s", json_string_value(j));
  json_decref(j);
  if (!job[0]) {
    if (status < 0) fprintf(stderr, "flowcast start: %s\n", err);
    else print_failure("start", status, &out);
    fc_buf_dispose(&out);
    return 1;
  }
  fc_buf_dispose(&out);
  printf("job %s\n", job);
  fflush(stdout);
  sse_reader_t r = {.on_event = on_job_event, .status = -1};
  sse_reader_init(&r, NULL, 1000);
  snprintf(path, sizeof path, "/api/v1/sse/%s/%s", wf, job);
  int rc = 1;
  for (int attempt = 0; attempt < 30; attempt++) {
    fc_buf_init(&out);
    fc_sse_parser_reset(&r.parser);
    status = fc_http_call(&o.url, &(fc_http_call_t){.method = "GET", .path = path, .token = o.token,
                                                     .last_event_id = r.parser.last_id, .on_body = on_sse_bytes,
                                                     .ud = &r},
                          &out, err, sizeof err);
    if (r.status >= 0) rc = r.status;
    else if (status == 204) rc = job_status(&o, wf, job); /* it ended while we were away */
    else if (status >= 400) print_failure("start", status, &out);
    fc_buf_dispose(&out);
    if (r.status >= 0 || status == 204 || status >= 400) break;
    usleep(sse_retry_ms(&r) * 1000); /* the stream broke: resume after the last event */
  }
  fc_sse_parser_dispose(&r.parser);
  return rc;
}
