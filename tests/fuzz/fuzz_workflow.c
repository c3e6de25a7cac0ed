/* Workflow definition files through the runner's real loader (a reload of
 * --workflows DIR): any bytes as one file, or two when the input holds a
 * 0xFF byte (the second then may reuse the first's id). Besides memory
 * safety and UB: a reload counts no more workflows than files, and what it
 * loaded reads back as JSON that parses. */
#include "app.h"

static void put(const char *dir, const char *name, const unsigned char *p, size_t n) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *o = fopen(path, "w");
  if (!o || fwrite(p, 1, n, o) != n) abort();
  fclose(o);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size > 65536) return 0;
  char dir[64];
  fz_init_jobs(NULL, dir);
  const unsigned char *cut = memchr(data, 0xFF, size);
  size_t first = cut ? (size_t)(cut - data) : size;
  put(dir, "a.json", data, first);
  if (cut) put(dir, "b.json", cut + 1, size - first - 1);
  size_t n = fc_jobs_reload(fz.app->jobs);
  if (n > (cut ? 2u : 1u)) abort();
  fc_buf_t b;
  fc_buf_init(&b);
  fc_jobs_workflows_json(fz.app->jobs, &(fc_jobs_actor_t){.all = true}, &b);
  json_t *j = json_loadb(b.data, b.len, 0, NULL);
  if (!json_is_array(j) || json_array_size(j) != n) abort();
  json_decref(j);
  fc_buf_dispose(&b);
  char path[128];
  snprintf(path, sizeof path, "%s/b.json", dir);
  unlink(path);
  fz_spin();
  return 0;
}
