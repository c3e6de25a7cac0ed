/* Validation: what a publisher sends, turned into events. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pub/internal.h"

#define NAME_RULE "must match [A-Za-z0-9._:-]{1,128}"

static int refuse(fc_pub_error_t *err, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(fc_pub_error_t *err, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  err->code = code;
  return -EINVAL;
}

fc_pub_invalid_t fc_pub_json_event(const json_t *obj, fc_pub_event_t *ev) {
  memset(ev, 0, sizeof *ev);
  json_t *name = json_object_get(obj, "event"), *data = json_object_get(obj, "data");
  if (name && !json_is_null(name)) {
    if (!json_is_string(name) || !fc_event_name_valid(json_string_value(name), json_string_length(name)))
      return FC_PUB_BAD_EVENT;
    ev->name = (fc_str_t){json_string_value(name), json_string_length(name)};
  }
  if (!data) return FC_PUB_NO_DATA;
  if (json_is_string(data)) {
    ev->data = (fc_str_t){json_string_value(data), json_string_length(data)};
    if (memchr(ev->data.base, '\0', ev->data.len)) return FC_PUB_DATA_NUL;
  } else {
    ev->dump = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    ev->data = (fc_str_t){ev->dump, strlen(ev->dump)};
    ev->is_json = true;
  }
  return FC_PUB_OK;
}

void fc_pub_event_dispose(fc_pub_event_t *ev) {
  free(ev->dump);
  memset(ev, 0, sizeof *ev);
}

int fc_pub_add_json(fc_pub_op_t *op, const json_t *obj, fc_str_t from, fc_pub_error_t *err) {
  fc_pub_event_t ev;
  int rc = 0;
  switch (fc_pub_json_event(obj, &ev)) {
    case FC_PUB_OK: fc__pub_add(op, ev.name, ev.data, from, ev.is_json); break;
    case FC_PUB_BAD_EVENT: rc = refuse(err, "bad_event", "event name " NAME_RULE); break;
    case FC_PUB_NO_DATA: rc = refuse(err, "bad_message", "publish needs \"data\""); break;
    case FC_PUB_DATA_NUL: rc = refuse(err, "bad_utf8", "data must not contain NUL"); break;
  }
  fc_pub_event_dispose(&ev);
  return rc;
}

/* JSON unless another type is named. curl -d sends the form type by default,
 * and no form is ever posted here, so it counts as unnamed. */
static bool is_json_type(const char *mt) {
  size_t n = strlen(mt);
  return n == 0 || !strcmp(mt, "application/x-www-form-urlencoded") || !strcmp(mt, "application/json") ||
         (n > 5 && !strcmp(mt + n - 5, "+json"));
}

static fc_str_t trim_ws(const char *p, size_t n) {
  while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++, n--;
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n')) n--;
  return (fc_str_t){p, n};
}

/* One NDJSON line: {"data": <any>, "event": "name"?}. */
static int add_ndjson_line(fc_pub_op_t *op, fc_str_t line, size_t lineno, fc_pub_error_t *err) {
  json_error_t e;
  json_t *j = json_loadb(line.base, line.len, 0, &e);
  if (!j || !json_is_object(j)) {
    bool parsed = j != NULL;
    json_decref(j);
    return refuse(err, "bad_json", "line %zu: %s", lineno,
                  parsed ? "expected an object {\"data\": ..., \"event\": ...}" : e.text);
  }
  if (!json_object_get(j, "data")) { /* an NDJSON line says so before a bad name */
    json_decref(j);
    return refuse(err, "bad_json", "line %zu: missing \"data\"", lineno);
  }
  fc_pub_event_t ev;
  int rc = 0;
  switch (fc_pub_json_event(j, &ev)) {
    case FC_PUB_OK: fc__pub_add(op, ev.name, ev.data, (fc_str_t){"", 0}, ev.is_json); break;
    case FC_PUB_BAD_EVENT: rc = refuse(err, "bad_event", "line %zu: event name " NAME_RULE, lineno); break;
    case FC_PUB_NO_DATA: rc = refuse(err, "bad_json", "line %zu: missing \"data\"", lineno); break;
    case FC_PUB_DATA_NUL: rc = refuse(err, "bad_utf8", "line %zu: data must not contain NUL", lineno); break;
  }
  fc_pub_event_dispose(&ev);
  json_decref(j);
  return rc;
}

static int add_ndjson(fc_pub_op_t *op, const char *body, size_t len, fc_pub_error_t *err) {
  const char *c = body, *end = body + len;
  size_t lineno = 0;
  while (c < end) {
    const char *nl = memchr(c, '\n', (size_t)(end - c));
    if (!nl) nl = end;
    fc_str_t line = trim_ws(c, (size_t)(nl - c));
    c = nl + 1;
    lineno++;
    if (line.len && add_ndjson_line(op, line, lineno, err) < 0) return -EINVAL;
  }
  if (op->ntev == 0) return refuse(err, "empty_batch", "the NDJSON body holds no event");
  op->is_batch = true;
  return 0;
}

int fc_pub_add_body(fc_pub_op_t *op, const char *channel, const char *event, const char *media_type, const char *body,
                    size_t len, fc_pub_error_t *err) {
  if (event && !fc_event_name_valid(event, strlen(event))) return refuse(err, "bad_event", "event name " NAME_RULE);
  if (!fc_channel_name_valid(channel, strlen(channel))) return refuse(err, "bad_channel", "channel name " NAME_RULE);
  if (!fc_utf8_valid(body, len)) return refuse(err, "bad_utf8", "the body is not valid UTF-8 text");
  if (!strcmp(media_type, "application/x-ndjson")) return add_ndjson(op, body, len, err);
  fc_str_t name = event ? (fc_str_t){event, strlen(event)} : (fc_str_t){"", 0};
  if (!is_json_type(media_type)) {
    fc_pub_add(op, name, (fc_str_t){body, len}, false);
    return 0;
  }
  json_error_t e;
  json_t *j = json_loadb(body, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
  if (!j) return refuse(err, "bad_json", "invalid JSON at line %d column %d: %s", e.line, e.column, e.text);
  json_decref(j);
  fc_pub_add(op, name, trim_ws(body, len), true);
  return 0;
}
