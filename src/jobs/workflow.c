/* Workflow files: loading, validation, listing, and channel triggers. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/cron.h"

#define CLAIM_TTL_S 86400 /* a trigger's claim outlives any clock skew and redelivery */
#include "jobs/internal.h"

/* Names the first invalid field of a task in `field`/`why`; 0 when valid. */
static int check_task(json_t *t, size_t i, char *field, size_t flen, char *why, size_t wlen) {
  const char *type = json_string_value(json_object_get(t, "type"));
  snprintf(field, flen, "tasks[%zu].type", i);
  if (!json_is_object(t) || !type) return snprintf(why, wlen, "a task needs a \"type\""), -EINVAL;
  json_t *coe = json_object_get(t, "continueOnError");
  if (coe && !json_is_boolean(coe)) {
    snprintf(field, flen, "tasks[%zu].continueOnError", i);
    return snprintf(why, wlen, "must be true or false"), -EINVAL;
  }
  if (!strcmp(type, "wait")) {
    json_t *s = json_object_get(t, "seconds");
    snprintf(field, flen, "tasks[%zu].seconds", i);
    if (!json_is_number(s) || json_number_value(s) < 0 || json_number_value(s) > 31536000)
      return snprintf(why, wlen, "must be a number of seconds (0 to one year)"), -EINVAL;
  } else if (!strcmp(type, "exec")) {
    json_t *cmd = json_object_get(t, "command"), *v;
    size_t k;
    snprintf(field, flen, "tasks[%zu].command", i);
    if (!json_is_array(cmd) || json_array_size(cmd) == 0)
      return snprintf(why, wlen, "must be a non-empty array of strings (argv)"), -EINVAL;
    json_array_foreach(cmd, k, v) if (!json_is_string(v)) return snprintf(why, wlen, "must hold only strings"), -EINVAL;
    json_t *env = json_object_get(t, "env");
    const char *key;
    snprintf(field, flen, "tasks[%zu].env", i);
    if (env && !json_is_object(env)) return snprintf(why, wlen, "must be an object of strings"), -EINVAL;
    if (env)
      json_object_foreach(env, key, v) if (!json_is_string(v)) return snprintf(why, wlen, "must hold only strings"),
          -EINVAL;
    json_t *cwd = json_object_get(t, "cwd"), *to = json_object_get(t, "timeoutSeconds");
    snprintf(field, flen, "tasks[%zu].cwd", i);
    if (cwd && !json_is_string(cwd)) return snprintf(why, wlen, "must be a string"), -EINVAL;
    snprintf(field, flen, "tasks[%zu].timeoutSeconds", i);
    if (to && (!json_is_number(to) || json_number_value(to) <= 0))
      return snprintf(why, wlen, "must be a positive number"), -EINVAL;
  } else if (!strcmp(type, "publish")) {
    const char *ch = json_string_value(json_object_get(t, "channel"));
    json_t *ev = json_object_get(t, "event");
    snprintf(field, flen, "tasks[%zu].channel", i);
    if (!ch || !fc_channel_name_valid(ch, strlen(ch)))
      return snprintf(why, wlen, "must be a channel name [A-Za-z0-9._:-]{1,128}"), -EINVAL;
    snprintf(field, flen, "tasks[%zu].event", i);
    if (ev && (!json_is_string(ev) || !fc_event_name_valid(json_string_value(ev), json_string_length(ev))))
      return snprintf(why, wlen, "must be an event name [A-Za-z0-9._:-]{1,128}"), -EINVAL;
    snprintf(field, flen, "tasks[%zu].data", i);
    if (!json_object_get(t, "data")) return snprintf(why, wlen, "is missing"), -EINVAL;
  } else if (strcmp(type, "approval")) {
    return snprintf(why, wlen, "unknown task type '%s' (wait, exec, publish, approval)", type), -EINVAL;
  }
  return 0;
}

static int check_triggers(json_t *tr, char *field, size_t flen, char *why, size_t wlen) {
  snprintf(field, flen, "triggers");
  if (!tr) return 0;
  if (!json_is_array(tr)) return snprintf(why, wlen, "must be an array"), -EINVAL;
  size_t i;
  json_t *t;
  json_array_foreach(tr, i, t) {
    const char *type = json_string_value(json_object_get(t, "type"));
    snprintf(field, flen, "triggers[%zu].type", i);
    if (!type) return snprintf(why, wlen, "a trigger needs a \"type\""), -EINVAL;
    if (!strcmp(type, "channel")) {
      const char *ch = json_string_value(json_object_get(t, "channel"));
      snprintf(field, flen, "triggers[%zu].channel", i);
      if (!ch || !fc_channel_name_valid(ch, strlen(ch)))
        return snprintf(why, wlen, "must be a channel name [A-Za-z0-9._:-]{1,128}"), -EINVAL;
    } else if (!strcmp(type, "cron")) {
      snprintf(field, flen, "triggers[%zu].cron", i);
      const char *expr = json_string_value(json_object_get(t, "cron"));
      fc_cron_t c;
      if (!expr) return snprintf(why, wlen, "must be a cron expression such as \"*/5 * * * *\""), -EINVAL;
      if (fc_cron_parse(expr, &c, why, wlen) < 0) return -EINVAL;
    } else if (strcmp(type, "manual")) {
      return snprintf(why, wlen, "unknown trigger type '%s' (manual, channel, cron)", type), -EINVAL;
    }
  }
  return 0;
}

/* Validates a parsed file. Returns 0, or -EINVAL naming the bad field in
 * `field` and why in `why`. */
static int check_def(json_t *d, char *field, size_t flen, char *why, size_t wlen) {
  snprintf(field, flen, "(root)");
  if (!json_is_object(d)) return snprintf(why, wlen, "must be a JSON object"), -EINVAL;
  json_t *id = json_object_get(d, "id"), *name = json_object_get(d, "name"), *desc = json_object_get(d, "description");
  snprintf(field, flen, "id");
  if (!json_is_integer(id) || json_integer_value(id) < 0) return snprintf(why, wlen, "must be a whole number"), -EINVAL;
  snprintf(field, flen, "name");
  if (!json_is_string(name) || !json_string_length(name))
    return snprintf(why, wlen, "must be a non-empty string"), -EINVAL;
  snprintf(field, flen, "description");
  if (desc && !json_is_string(desc)) return snprintf(why, wlen, "must be a string"), -EINVAL;
  json_t *maxc = json_object_get(d, "maxConcurrent");
  snprintf(field, flen, "maxConcurrent");
  if (maxc && (!json_is_integer(maxc) || json_integer_value(maxc) < 1 || json_integer_value(maxc) > 100000))
    return snprintf(why, wlen, "must be a whole number from 1 (jobs of this workflow running at once)"), -EINVAL;
  json_t *tasks = json_object_get(d, "tasks"), *t;
  snprintf(field, flen, "tasks");
  if (!json_is_array(tasks) || json_array_size(tasks) == 0)
    return snprintf(why, wlen, "must be a non-empty array"), -EINVAL;
  size_t i;
  json_array_foreach(tasks, i, t) if (check_task(t, i, field, flen, why, wlen) < 0) return -EINVAL;
  return check_triggers(json_object_get(d, "triggers"), field, flen, why, wlen);
}

static wf_t *load_file(const char *path, wf_t *list) {
  json_error_t e;
  json_t *d = json_load_file(path, 0, &e);
  char field[64], why[256];
  if (!d) {
    fc_log(FC_LOG_ERROR, "invalid workflow", "file=%s field=(json) error=\"line %d: %s\"", path, e.line, e.text);
    return NULL;
  }
  if (check_def(d, field, sizeof field, why, sizeof why) < 0) {
    fc_log(FC_LOG_ERROR, "invalid workflow", "file=%s field=%s error=\"%s\"", path, field, why);
    json_decref(d);
    return NULL;
  }
  int64_t id = json_integer_value(json_object_get(d, "id"));
  for (wf_t *w = list; w; w = w->next)
    if (w->id == id) {
      fc_log(FC_LOG_ERROR, "invalid workflow", "file=%s field=id error=\"id %lld is already used by %s\"", path,
             (long long)id, w->file);
      json_decref(d);
      return NULL;
    }
  wf_t *w = fc_xcalloc(1, sizeof *w);
  w->refs = 1;
  w->id = id;
  w->def = d;
  w->tasks = json_object_get(d, "tasks");
  w->name = strdup(json_string_value(json_object_get(d, "name")));
  const char *desc = json_string_value(json_object_get(d, "description"));
  w->description = strdup(desc ? desc : w->name);
  w->max_running = (unsigned)json_integer_value(json_object_get(d, "maxConcurrent")); /* 0: no own limit */
  w->file = strdup(path);
  return w;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

/* Loads every *.json file of `dir` (sorted by name); invalid ones are logged
 * and skipped. Returns the list (owned by the caller) and its length. */
wf_t *fc__wf_load_dir(fc_jobs_t *j, const char *dir, size_t *n) {
  struct dirent **names;
  int k = scandir(dir, &names, NULL, by_name);
  wf_t *list = NULL, **tail = &list;
  *n = 0;
  if (k < 0) {
    fc_log(FC_LOG_WARN, "no workflows", "dir=%s error=\"%s\"", dir, strerror(errno));
    return NULL;
  }
  for (int i = 0; i < k; i++) {
    size_t len = strlen(names[i]->d_name);
    if (len > 5 && !strcmp(names[i]->d_name + len - 5, ".json")) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
      wf_t *w = load_file(path, list);
      if (w) {
        w->owner = j;
        *tail = w;
        tail = &w->next;
        (*n)++;
      }
    }
    free(names[i]);
  }
  free(names);
  return list;
}

void fc__wf_unref(wf_t *w) {
  if (!w || --w->refs > 0) return;
  free(w->links);
  free(w->crons);
  free(w->cron_next);
  json_decref(w->def);
  free(w->name);
  free(w->description);
  free(w->file);
  free(w);
}

wf_t *fc__wf_find(fc_jobs_t *j, int64_t id) {
  for (wf_t *w = j->wfs; w; w = w->next)
    if (w->id == id) return w;
  return NULL;
}

void fc__wf_json(fc_buf_t *b, const wf_t *w) {
  char *s = json_dumps(w->def, JSON_COMPACT | JSON_PRESERVE_ORDER);
  fc_buf_puts(b, s);
  free(s);
}

/* True when this node is the one to start the job of trigger `key` (in
 * cluster mode every node holding the workflow sees the same trigger). */
static bool claimed(fc_jobs_t *j, const wf_t *w, const char *key) {
  if (!j->o.claim) return true;
  int rc = j->o.claim(j->o.ud, key, CLAIM_TTL_S);
  if (rc < 0)
    fc_log(FC_LOG_WARN, "trigger skipped: the cluster could not be asked who runs it", "workflow=%lld key=%s error=%d",
           (long long)w->id, key, rc);
  return rc == 1;
}

/* A channel trigger fired: start a job with the event as its input. Loop 0. */
static void on_trigger(fc_sub_link_t *link, fc_event_t *ev) {
  wf_t *w = link->owner;
  char key[64];
  snprintf(key, sizeof key, "trigger:%lld:%llu", (long long)w->id, (unsigned long long)ev->seq);
  if (!w->owner || !claimed(w->owner, w, key)) return;
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_puts(&b, "{");
  fc_event_json_members(&b, ev);
  fc_buf_puts(&b, "}");
  char id[40];
  int rc = w->owner && !w->owner->stopping ? fc_jobs_start(w->owner, w->id, b.data, NULL, id) : -ECANCELED;
  if (rc == 0)
    fc_log(FC_LOG_INFO, "job triggered", "workflow=%lld job=%s channel=%s", (long long)w->id, id,
           fc_channel_name(ev->channel));
  else if (rc != -ECANCELED) fc__jobs_trigger_refused(w->owner, w->id, rc);
  fc_buf_dispose(&b);
}

/* Starts the jobs whose cron time has come (a 1 s timer on loop 0). */
void fc__wf_cron_tick(fc_jobs_t *j, int64_t now_s) {
  for (wf_t *w = j->wfs; w; w = w->next) {
    for (size_t i = 0; i < w->ncrons; i++) {
      if (w->cron_next[i] < 0 || now_s < w->cron_next[i]) continue;
      /* The scheduled time names the run: nodes whose clocks differ by
       * seconds still ask for the same key. */
      char key[64], id[40];
      snprintf(key, sizeof key, "cron:%lld:%zu:%lld", (long long)w->id, i, (long long)w->cron_next[i]);
      w->cron_next[i] = fc_cron_next(&w->crons[i], now_s);
      if (!claimed(j, w, key)) continue;
      int rc = fc_jobs_start(j, w->id, NULL, NULL, id);
      if (rc == 0) fc_log(FC_LOG_INFO, "job triggered", "workflow=%lld job=%s trigger=cron", (long long)w->id, id);
      else fc__jobs_trigger_refused(j, w->id, rc);
    }
  }
}

/* Subscribes (`on`) or unsubscribes the workflow's channel and cron triggers. Loop 0. */
void fc__wf_triggers(fc_jobs_t *j, wf_t *w, bool on) {
  fc_hub_t *hub = j->o.hub;
  if (!on) {
    for (size_t i = 0; i < w->nlinks; i++) fc_hub_unsubscribe(hub, 0, &w->links[i]);
    w->owner = NULL;
    w->ncrons = 0;
    return;
  }
  json_t *tr = json_object_get(w->def, "triggers"), *t;
  size_t i;
  w->links = fc_xcalloc(json_array_size(tr) + 1, sizeof *w->links);
  w->crons = fc_xcalloc(json_array_size(tr) + 1, sizeof *w->crons);
  w->cron_next = fc_xcalloc(json_array_size(tr) + 1, sizeof *w->cron_next);
  int64_t now = fc_now_ms() / 1000;
  json_array_foreach(tr, i, t) {
    const char *ch = json_string_value(json_object_get(t, "channel"));
    if (!strcmp(json_string_value(json_object_get(t, "type")), "cron")) {
      char why[8];
      if (fc_cron_parse(json_string_value(json_object_get(t, "cron")), &w->crons[w->ncrons], why, sizeof why) == 0) {
        w->cron_next[w->ncrons] = fc_cron_next(&w->crons[w->ncrons], now);
        w->ncrons++;
      }
      continue;
    }
    if (strcmp(json_string_value(json_object_get(t, "type")), "channel")) continue;
    fc_sub_link_t *l = &w->links[w->nlinks++];
    l->channel = fc_hub_channel(hub, ch, strlen(ch), true);
    if (!l->channel) { /* storage could not be read */
      w->nlinks--;
      continue;
    }
    l->deliver = on_trigger;
    l->owner = w;
    fc_backlog_t bl;
    fc_hub_subscribe(hub, 0, &l, 1, &(fc_resume_t){.replay = 0}, &bl);
    fc_backlog_dispose(&bl);
    fc_channel_unref(l->channel); /* the subscription holds it now */
  }
}
