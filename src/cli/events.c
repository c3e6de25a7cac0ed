/* Events as the CLI prints them with --json. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"

/* Unwraps an envelope {"channel","data","time"?}: returns its data as text
 * (free() it) and borrows channel and time from `env`; NULL when `env` is not
 * one. */
static char *unwrap(json_t *env, const char **channel, const char **time) {
  json_t *ch = json_object_get(env, "channel"), *data = json_object_get(env, "data"), *t = json_object_get(env, "time");
  if (!json_is_object(env) || !json_is_string(ch) || !data || (t && !json_is_string(t))) return NULL;
  *channel = json_string_value(ch);
  *time = t ? json_string_value(t) : NULL;
  if (json_is_string(data)) return strdup(json_string_value(data));
  return json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
}

char *fc__event_json(const fc_sse_event_t *ev, const char *channel, bool envelope) {
  const char *time = NULL;
  json_t *env = envelope ? json_loadb(ev->data, ev->data_len, JSON_DECODE_ANY, NULL) : NULL;
  char *inner = env ? unwrap(env, &channel, &time) : NULL;
  json_t *o = json_object();
  if (channel) json_object_set_new(o, "channel", json_string(channel));
  bool notice = !strncmp(ev->event, "flowcast.", 9); /* gap, join, leave: sent without an id */
  json_object_set_new(o, "id", *ev->id && !notice ? json_string(ev->id) : json_null());
  json_object_set_new(o, "event", strcmp(ev->event, "message") ? json_string(ev->event) : json_null());
  json_t *data = inner ? json_string(inner) : json_stringn(ev->data, ev->data_len);
  if (!data) data = json_stringn_nocheck(ev->data, ev->data_len); /* not UTF-8: as the server sent it */
  json_object_set_new(o, "data", data);
  if (time) json_object_set_new(o, "time", json_string(time));
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  json_decref(env);
  free(inner);
  return s;
}
