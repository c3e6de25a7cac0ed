/* Request targets, query strings and routing. */
#include "http/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct mem_block {
  struct mem_block *next;
  max_align_t align[];
} mem_block_t;

void *fc_req_alloc(fc_req_t *req, size_t n) {
  fc__req_t *q = fc__req(req);
  size_t a = _Alignof(max_align_t), at = (q->arena_used + a - 1) & ~(a - 1);
  if (at + n <= sizeof q->arena) {
    q->arena_used = at + n;
    return q->arena + at;
  }
  mem_block_t *b = fc_xmalloc(sizeof *b + n);
  b->next = q->mem;
  q->mem = b;
  return b->align;
}

char *fc_req_strndup(fc_req_t *req, const char *s, size_t n) {
  char *p = fc_req_alloc(req, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* A request object is large (its header tables): each thread keeps a few
 * spare ones, buffers included, instead of a malloc and free per request. */
#define SPARE_MAX 64
#define SPARE_BUF_MAX (16u << 10)      /* larger buffers are not kept */
static _Thread_local fc__req_t *spare; /* linked through ->mem */
static _Thread_local unsigned nspare;
static _Thread_local bool spare_registered;
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_free(void *unused) {
  (void)unused;
  while (spare) {
    fc__req_t *q = spare;
    spare = q->mem;
    fc_buf_dispose(&q->raw);
    fc_buf_dispose(&q->pub.body);
    free(q->fields);
    free(q);
  }
  nspare = 0;
}

static void spare_key_init(void) { pthread_key_create(&spare_key, spare_free); }

fc_req_t *fc__req_new(void) {
  fc__req_t *q = spare;
  if (!q) return &((fc__req_t *)fc_xcalloc(1, sizeof *q))->pub;
  spare = q->mem;
  nspare--;
  memset(&q->pub, 0, offsetof(fc_req_t, body));
  memset(&q->hc, 0, offsetof(fc__req_t, raw) - offsetof(fc__req_t, hc));
  q->pub.body.len = q->raw.len = 0;
  if (q->pub.body.data) q->pub.body.data[0] = '\0';
  if (q->raw.data) q->raw.data[0] = '\0';
  return &q->pub;
}

fc_req_t *fc_http_req_new(unsigned method, const char *url, size_t len) {
  fc_req_t *r = fc__req_new();
  fc__req_t *q = fc__req(r);
  r->method = method;
  fc_buf_append(&q->raw, url, len);
  r->url = (fc_str_t){q->raw.data, q->raw.len};
  return r;
}

void fc_http_req_free(fc_req_t *req) { fc__req_free(req); }

void fc__req_free(fc_req_t *req) {
  fc__req_t *q = fc__req(req);
  if (req->user && req->user_free) req->user_free(req->user);
  for (mem_block_t *b = q->mem, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  if (q->raw.cap > SPARE_BUF_MAX) fc_buf_dispose(&q->raw);
  if (req->body.cap > SPARE_BUF_MAX) fc_buf_dispose(&req->body);
  if (nspare == SPARE_MAX) {
    fc_buf_dispose(&q->raw);
    fc_buf_dispose(&req->body);
    free(q->fields);
    free(q);
    return;
  }
  if (!spare_registered) { /* the thread's destructor frees the list when it ends */
    pthread_once(&spare_once, spare_key_init);
    pthread_setspecific(spare_key, &spare);
    spare_registered = true;
  }
  q->mem = spare;
  spare = q;
  nspare++;
}

size_t *fc__req_field(fc__req_t *q) {
  if (q->noff == FC_HTTP_MAX_HEADERS) return NULL;
  if (q->noff == q->fields_cap) {
    size_t cap = q->fields_cap ? q->fields_cap * 2 : 16;
    if (cap > FC_HTTP_MAX_HEADERS) cap = FC_HTTP_MAX_HEADERS;
    q->fields = fc_xrealloc(q->fields, cap * sizeof *q->fields);
    q->fields_cap = cap;
  }
  return q->fields[q->noff++].off;
}

void fc__req_fields_done(fc__req_t *q) {
  for (size_t i = 0; i < q->noff; i++) {
    size_t *o = q->fields[i].off;
    size_t name = o[0], nlen = o[1], value = o[2], vlen = o[3];
    q->fields[i].h.name = (fc_str_t){q->raw.data + name, nlen};
    q->fields[i].h.value = (fc_str_t){vlen ? q->raw.data + value : "", vlen};
  }
  q->nheaders = q->noff; /* only now are they there to read */
}

bool fc_req_gone(const fc_req_t *req) { return fc__req((fc_req_t *)req)->hc == NULL; }

void fc_req_serial(fc_req_t *req) { fc__req(req)->serial = true; }

void fc_req_peer_ip(fc_req_t *req, char *out, size_t len) {
  fc__req_t *q = fc__req(req);
  snprintf(out, len, "-");
  if (!q->hc) return;
  fc_conn_peer(q->hc->conn, out, len);
  char *colon = out[0] == '[' ? strstr(out, "]:") : strrchr(out, ':');
  if (colon) *(colon + (out[0] == '[')) = '\0';
}

fc_str_t fc_req_header(const fc_req_t *req, const char *name) {
  fc__req_t *q = fc__req(req);
  size_t n = strlen(name);
  for (size_t i = 0; i < q->nheaders; i++) {
    const fc_header_t *h = &q->fields[i].h;
    if (h->name.len == n && strncasecmp(h->name.base, name, n) == 0) return h->value;
  }
  return (fc_str_t){NULL, 0};
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

ssize_t fc_url_decode(const char *s, size_t n, char *out, bool plus) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (i + 2 >= n) return -EINVAL; /* fewer than two hex digits left */
      int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -EINVAL; /* %00 has no use here */
      out[k++] = (char)(hi * 16 + lo);
      i += 2;
    } else if (plus && s[i] == '+') {
      out[k++] = ' ';
    } else {
      out[k++] = s[i];
    }
  }
  out[k] = '\0';
  return (ssize_t)k;
}

int fc_http_parse_target(fc_req_t *req) {
  const char *u = req->url.base;
  size_t n = req->url.len;
  const char *q = memchr(u, '?', n);
  req->path = (fc_str_t){u, q ? (size_t)(q - u) : n};
  req->query = q ? (fc_str_t){q + 1, n - (size_t)(q + 1 - u)} : (fc_str_t){"", 0};
  const char *p = req->path.base, *end = p + req->path.len;
  if (p < end && *p == '/') p++;
  req->nsegs = 0;
  while (p < end) {
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (!slash) slash = end;
    if (req->nsegs == FC_HTTP_MAX_SEGMENTS) return -E2BIG;
    char *seg = fc_req_alloc(req, (size_t)(slash - p) + 1);
    if (fc_url_decode(p, (size_t)(slash - p), seg, false) < 0) return -EINVAL;
    req->segs[req->nsegs++] = seg;
    p = slash + 1;
    if (slash + 1 == end) break; /* a trailing slash adds no segment */
  }
  return 0;
}

const char *fc_req_query(fc_req_t *req, const char *name, size_t index, bool *bad) {
  size_t nlen = strlen(name);
  const char *p = req->query.base, *end = p + req->query.len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    if (!amp) amp = end;
    const char *eq = memchr(p, '=', (size_t)(amp - p));
    const char *kend = eq ? eq : amp;
    if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
      if (index-- == 0) {
        const char *v = eq ? eq + 1 : amp;
        char *out = fc_req_alloc(req, (size_t)(amp - v) + 1);
        if (fc_url_decode(v, (size_t)(amp - v), out, true) < 0) {
          if (bad) *bad = true;
          return NULL;
        }
        return out;
      }
    }
    p = amp + 1;
  }
  return NULL;
}

/* Matches the request's segments against a route pattern; fills params. */
static bool pattern_match(const char *pattern, fc_req_t *req) {
  const char *p = pattern;
  if (*p == '/') p++;
  size_t seg = 0, param = 0;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (seg >= req->nsegs) return false;
    if (len == 2 && p[0] == '{' && p[1] == '}') {
      if (param < FC_HTTP_MAX_PARAMS) req->params[param++] = req->segs[seg];
    } else if (strlen(req->segs[seg]) != len || memcmp(req->segs[seg], p, len) != 0) {
      return false;
    }
    seg++;
    p += len;
    if (*p == '/') p++;
  }
  return seg == req->nsegs;
}

static void allow_header(unsigned methods, fc_buf_t *b) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{FC_GET, "GET"}, {FC_HEAD, "HEAD"}, {FC_POST, "POST"}, {FC_PUT, "PUT"}, {FC_DELETE, "DELETE"}};
  fc_buf_puts(b, "Allow: ");
  for (size_t i = 0; i < FC_ARRAY_LEN(names); i++)
    if (methods & names[i].bit) fc_buf_printf(b, "%s, ", names[i].name);
  fc_buf_puts(b, "OPTIONS\r\n");
}

const fc_route_t *fc_http_match(const fc_route_t *routes, size_t n, fc_req_t *req, unsigned *allowed) {
  *allowed = 0;
  unsigned want = req->method == FC_HEAD ? FC_GET | FC_HEAD : req->method;
  for (size_t i = 0; i < n; i++) {
    if (!pattern_match(routes[i].pattern, req)) continue;
    *allowed |= routes[i].methods;
    if (routes[i].methods & want) return &routes[i];
  }
  return NULL;
}

void fc__http_route(fc_req_t *req) {
  const fc_http_opts_t *o = &req->http->opts;
  req->route = fc_http_match(o->routes, o->nroutes, req, &fc__req(req)->allowed);
}

void fc__http_dispatch(fc_req_t *req) {
  const fc_http_opts_t *o = &req->http->opts;
  const fc_route_t *found = req->route;
  unsigned allowed = fc__req(req)->allowed;
  if (!found && !allowed) {
    fc_http_error(req, 404, "not_found", "no such resource");
    return;
  }
  fc_buf_t extra;
  fc_buf_init(&extra);
  if (req->method == FC_OPTIONS) {
    allow_header(allowed, &extra);
    if (fc_req_header(req, "access-control-request-method").base) {
      fc_buf_puts(&extra, "Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS\r\n"
                          "Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID, Cache-Control\r\n"
                          "Access-Control-Max-Age: 600\r\n");
    }
    fc_http_respond(req, 204, NULL, extra.data, "", 0);
  } else if (!found) {
    allow_header(allowed, &extra);
    fc_http_error_with(req, 405, extra.data, "method_not_allowed", "method %s not allowed on this resource",
                       req->method_name ? req->method_name : "-");
  } else {
    if (!o->authorize || o->authorize(req) >= 0) found->handler(req);
  }
  fc_buf_dispose(&extra);
}
