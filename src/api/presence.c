/* Presence routes: who is subscribed to a channel, and how many. In cluster
 * mode the answer comes from Redis, on a libuv worker thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

typedef int (*answer_fn)(fc_presence_t *p, const char *channel, fc_buf_t *out);

typedef struct {
  uv_work_t work;
  fc_req_t *req;
  answer_fn fn;
  int rc;
  fc_buf_t body;
} query_t;

static void respond(fc_req_t *req, int rc, const fc_buf_t *b) {
  if (rc == -ENOENT)
    fc_http_error(req, 404, "presence_off", "presence is not on for this channel (config: presence:PATTERN = on)");
  else if (rc < 0) fc_http_error(req, 503, "storage_unavailable", "storage (Redis) is unreachable; retry later");
  else fc_http_respond(req, 200, "application/json", NULL, b->data, b->len);
}

static void query_work(uv_work_t *w) {
  query_t *q = w->data;
  q->rc = q->fn(fc_app_of(q->req)->presence, q->req->params[0], &q->body);
}

static void query_done(uv_work_t *w, int status) {
  query_t *q = w->data;
  respond(q->req, status < 0 ? -EIO : q->rc, &q->body);
  fc_buf_dispose(&q->body);
  free(q);
}

static void answer(fc_req_t *req, answer_fn fn) {
  const char *name = req->params[0];
  if (!fc_channel_name_valid(name, strlen(name))) {
    fc_http_error(req, 400, "bad_channel", "channel name must match [A-Za-z0-9._:-]{1,128}");
    return;
  }
  fc_presence_t *p = fc_app_of(req)->presence;
  if (fc_presence_blocks(p) && fc_presence_on(p, name)) {
    query_t *q = fc_xcalloc(1, sizeof *q);
    q->req = req;
    q->fn = fn;
    fc_buf_init(&q->body);
    q->work.data = q;
    uv_queue_work(fc_loop_uv(req->loop), &q->work, query_work, query_done);
    return;
  }
  fc_buf_t b;
  fc_buf_init(&b);
  respond(req, fn(p, name, &b), &b);
  fc_buf_dispose(&b);
}

void fc_api_presence(fc_req_t *req) { answer(req, fc_presence_list); }

void fc_api_presence_stats(fc_req_t *req) { answer(req, fc_presence_stats); }
