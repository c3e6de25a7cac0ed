/* Blocking HTTP client for the CLI. */
#include "cli/client.h"

#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int fc_url_parse(const char *url, fc_url_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (strncmp(url, "http://", 7) != 0) {
    snprintf(err, errlen, "expected an http:// URL, got '%s'", url);
    return -1;
  }
  const char *h = url + 7, *slash = strchr(h, '/');
  size_t hl = slash ? (size_t)(slash - h) : strlen(h);
  const char *colon = memchr(h, ':', hl);
  size_t namelen = colon ? (size_t)(colon - h) : hl;
  if (namelen == 0 || namelen >= sizeof out->host) {
    snprintf(err, errlen, "no host in '%s'", url);
    return -1;
  }
  memcpy(out->host, h, namelen);
  out->port = 80;
  if (colon) {
    uint64_t p;
    if (fc_parse_u64(colon + 1, hl - namelen - 1, &p) < 0 || p == 0 || p > 65535) {
      snprintf(err, errlen, "bad port in '%s'", url);
      return -1;
    }
    out->port = (int)p;
  }
  if (slash) snprintf(out->prefix, sizeof out->prefix, "%s", slash);
  size_t pl = strlen(out->prefix);
  while (pl && out->prefix[pl - 1] == '/') out->prefix[--pl] = '\0';
  return 0;
}

static int dial(const fc_url_t *u, char *err, size_t errlen) {
  char port[16];
  snprintf(port, sizeof port, "%d", u->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
  int rc = getaddrinfo(u->host, port, &hints, &res);
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) snprintf(err, errlen, "cannot connect to %s:%d: %s", u->host, u->port, strerror(errno));
  return fd;
}

typedef struct {
  const fc_http_call_t *call;
  fc_buf_t *out;
  bool done, stop;
  bool stream; /* a 2xx answer with on_body set: the body goes there */
} parse_t;

static int on_headers(llhttp_t *p) {
  parse_t *s = p->data;
  int status = p->status_code;
  s->stream = s->call->on_body && status >= 200 && status < 300;
  if (s->call->on_status) s->call->on_status(s->call->ud, status);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  parse_t *s = p->data;
  if (s->stream) {
    if (s->call->on_body(s->call->ud, at, n)) {
      s->stop = true;
      return HPE_USER;
    }
  } else if (s->out && s->out->len < (1u << 20)) {
    fc_buf_append(s->out, at, n); /* an answer or an error body; a runaway one is cut at 1 MiB */
  }
  return 0;
}

static int on_complete(llhttp_t *p) {
  ((parse_t *)p->data)->done = true;
  return HPE_PAUSED;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

int fc_http_call(const fc_url_t *u, const fc_http_call_t *c, fc_buf_t *body_out, char *err, size_t errlen) {
  int fd = dial(u, err, errlen);
  if (fd < 0) return FC_HTTP_UNREACHABLE;
  fc_buf_t req;
  fc_buf_init(&req);
  fc_buf_printf(&req, "%s %s%s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: flowcast-cli\r\nConnection: close\r\n", c->method,
                u->prefix, c->path, u->host, u->port);
  if (c->token && *c->token) fc_buf_printf(&req, "Authorization: Bearer %s\r\n", c->token);
  if (c->last_event_id && *c->last_event_id) fc_buf_printf(&req, "Last-Event-ID: %s\r\n", c->last_event_id);
  if (c->on_body) fc_buf_puts(&req, "Accept: text/event-stream\r\n");
  if (c->body) {
    fc_buf_printf(&req, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                  c->content_type ? c->content_type : "application/json", c->body_len);
  }
  fc_buf_puts(&req, "\r\n");
  if (c->body) fc_buf_append(&req, c->body, c->body_len);
  int rc = send_all(fd, req.data, req.len);
  fc_buf_dispose(&req);
  if (rc < 0) {
    snprintf(err, errlen, "cannot send the request to %s:%d: %s", u->host, u->port, strerror(errno));
    close(fd);
    return FC_HTTP_UNREACHABLE;
  }
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_headers_complete = on_headers;
  settings.on_body = on_body;
  settings.on_message_complete = on_complete;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  parse_t st = {c, body_out, false, false, false};
  bool got_bytes = false;
  parser.data = &st;
  char buf[16384];
  for (;;) {
    if (c->cancel_fd > 0) {
      struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = c->cancel_fd, .events = POLLIN}};
      if (poll(pf, 2, -1) < 0 && errno == EINTR) continue;
      if (pf[1].revents) {
        snprintf(err, errlen, "cancelled");
        close(fd);
        return FC_HTTP_CUT;
      }
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) got_bytes = true;
    llhttp_errno_t e = n > 0 ? llhttp_execute(&parser, buf, (size_t)n) : llhttp_finish(&parser);
    if (st.done || st.stop) break;
    if (e != HPE_OK || n <= 0) {
      if (n <= 0 && parser.status_code) break; /* a close-delimited body ended */
      int rc = n <= 0 ? FC_HTTP_CUT : FC_HTTP_MALFORMED;
      if (rc == FC_HTTP_CUT)
        snprintf(err, errlen, "%s:%d closed the connection %s", u->host, u->port,
                 !got_bytes ? "without answering" : "in the middle of its answer");
      else
        snprintf(err, errlen, "%s:%d did not answer in HTTP (%s): is it a flowcast server?", u->host, u->port,
                 llhttp_errno_name(e));
      close(fd);
      return rc;
    }
  }
  close(fd);
  return parser.status_code;
}
