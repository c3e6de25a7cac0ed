/* Presence routes: who is subscribed to a channel, and how many. */
#include <errno.h>
#include <string.h>

#include "api/api.h"

typedef int (*answer_fn)(fc_presence_t *p, const char *channel, fc_buf_t *out);

static void answer(fc_req_t *req, answer_fn fn) {
  const char *name = req->params[0];
  if (!fc_channel_name_valid(name, strlen(name))) {
    fc_http_error(req, 400, "bad_channel", "channel name must match [A-Za-z0-9._:-]{1,128}");
    return;
  }
  fc_buf_t b;
  fc_buf_init(&b);
  if (fn(fc_app_of(req)->presence, name, &b) == -ENOENT)
    fc_http_error(req, 404, "presence_off", "presence is not on for this channel (config: presence:PATTERN = on)");
  else fc_http_respond(req, 200, "application/json", NULL, b.data, b.len);
  fc_buf_dispose(&b);
}

void fc_api_presence(fc_req_t *req) { answer(req, fc_presence_list); }

void fc_api_presence_stats(fc_req_t *req) { answer(req, fc_presence_stats); }
