/* The dashboard's files (web/), embedded at build time by
 * cmake/embed_web.cmake into a table that src/api/web.c serves. */
#ifndef FC_WEB_ASSETS_H
#define FC_WEB_ASSETS_H

#include <stddef.h>

typedef struct {
  const char *name;         /* the file's name, no directory */
  const char *content_type; /* from its extension */
  const char *etag;         /* quoted, strong */
  const unsigned char *data;
  size_t len;
} fc_web_asset_t;

extern const fc_web_asset_t fc_web_assets[];
extern const size_t fc_web_nassets;

#endif
