/* The `::sse` line protocol of exec tasks through the real runner: a
 * workflow whose one exec task prints the input (cat), so its bytes reach
 * the runner through a real pipe and its line splitting, `::sse` lines are
 * published (to the job's workflow channel, another channel, or a WebSocket
 * connection with "to") and the rest become log events. Besides memory
 * safety and UB: the job always ends (Done: every line is either published
 * or logged, a malformed one never fails the task). */
#include "app.h"

static const char *const files[] = {
    "cat.json",
    "{\"id\": 1, \"name\": \"cat\", \"tasks\": [{\"type\": \"exec\", \"command\": [\"cat\", \"%s/input\"], "
    "\"timeoutSeconds\": 20}]}",
    NULL};

static const char *status_of(const char *id, fc_buf_t *b) {
  b->len = 0;
  if (fc_jobs_job_json(fz.app->jobs, 1, id, b, NULL) < 0) abort();
  fc_buf_append(b, "", 1);
  const char *s = strstr(b->data, "\"status\":\"");
  return s ? s + 10 : "";
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size > 256 * 1024) return 0;
  char dir[64], path[128];
  fz_init_jobs(files, dir);
  snprintf(path, sizeof path, "%s/input", dir);
  FILE *o = fopen(path, "w");
  if (!o || fwrite(data, 1, size, o) != size) abort();
  fclose(o);
  char id[40];
  if (fc_jobs_start(fz.app->jobs, 1, NULL, NULL, id) < 0) abort();
  fc_buf_t b;
  fc_buf_init(&b);
  const char *st = status_of(id, &b);
  for (int i = 0; i < 20000 && (!strncmp(st, "Pending", 7) || !strncmp(st, "Running", 7)); i++) {
    uv_run(&fz.loop->uv, UV_RUN_ONCE);
    st = status_of(id, &b);
  }
  if (strncmp(st, "Done\"", 5)) {
    fprintf(stderr, "fuzz: the job ended as %.20s\n", st);
    abort();
  }
  fc_buf_dispose(&b);
  fz_spin();
  return 0;
}
