/* Rate limits of token subjects: events published (--publish-rate,
 * --publish-burst) and channels created (--channel-create-limit per
 * minute). Keys are subjects, so a client cannot escape its limit by minting
 * more tokens for itself; admin tokens (and --open) are not limited. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"

atomic_ullong fc_api_publish_limited_total, fc_api_create_limited_total;

void fc_api_limits_init(fc_app_t *app) {
  const fc_config_t *cfg = app->cfg;
  app->publish_rate = fc_rate_new(cfg->publish_rate, cfg->publish_burst);
  app->channel_creates = fc_rate_new(cfg->channel_create_limit / 60.0, cfg->channel_create_limit);
}

void fc_api_limits_free(fc_app_t *app) {
  fc_rate_free(app->publish_rate);
  fc_rate_free(app->channel_creates);
  app->publish_rate = app->channel_creates = NULL;
}

uint64_t fc_api_publish_wait(fc_app_t *app, const fc_claims_t *c, size_t n) {
  if (!app->publish_rate || !c || c->admin) return 0;
  uint64_t wait = fc_rate_take(app->publish_rate, c->sub ? c->sub : "", (double)n, fc_mono_ms());
  if (wait) fc_api_publish_limited_total++;
  return wait;
}

uint64_t fc_api_create_wait(fc_app_t *app, const fc_claims_t *c, const char *who, const char *name) {
  if (!app->channel_creates || (c && c->admin)) return 0;
  fc_channel_t *ch;
  int rc = fc_hub_open(app->hub, name, strlen(name), 0, &ch);
  if (rc == 0) fc_hub_drop(app->hub, ch);
  if (rc != -ENOENT) return 0; /* it exists, or the open that follows will say what is wrong */
  char key[160];
  snprintf(key, sizeof key, "%s%s", c ? "sub:" : "addr:", c ? (c->sub ? c->sub : "") : who);
  uint64_t wait = fc_rate_take(app->channel_creates, key, 1, fc_mono_ms());
  if (wait) fc_api_create_limited_total++;
  return wait;
}
