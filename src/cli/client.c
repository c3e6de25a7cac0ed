/* Blocking HTTP client for the CLI, over TCP or TLS. */
#include "cli/client.h"

#include <errno.h>
#include <llhttp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int fc_url_parse(const char *url, fc_url_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->tls = !strncmp(url, "https://", 8);
  if (strncmp(url, "http://", 7) != 0 && !out->tls) {
    snprintf(err, errlen, "expected an http:// or https:// URL, got '%s'", url);
    return -1;
  }
  const char *h = url + (out->tls ? 8 : 7), *slash = strchr(h, '/');
  size_t hl = slash ? (size_t)(slash - h) : strlen(h);
  const char *colon = memchr(h, ':', hl);
  size_t namelen = colon ? (size_t)(colon - h) : hl;
  if (namelen == 0 || namelen >= sizeof out->host) {
    snprintf(err, errlen, "no host in '%s'", url);
    return -1;
  }
  memcpy(out->host, h, namelen);
  out->port = out->tls ? 443 : 80;
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

/* A connection: a socket, with TLS over it for https. */
typedef struct {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
} link_t;

static void link_close(link_t *l) {
  SSL_free(l->ssl);
  SSL_CTX_free(l->ctx);
  close(l->fd);
  ERR_clear_error();
}

/* The TLS handshake on a connected socket, verifying the certificate against
 * OpenSSL's default CAs and the URL's host (a name, or an address). */
static int tls_open(link_t *l, const fc_url_t *u, char *err, size_t errlen) {
  l->ctx = SSL_CTX_new(TLS_client_method());
  l->ssl = l->ctx ? SSL_new(l->ctx) : NULL;
  if (!l->ssl) {
    snprintf(err, errlen, "cannot set up TLS");
    return -1;
  }
  SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION);
  SSL_CTX_set_default_verify_paths(l->ctx);
  SSL_set_verify(l->ssl, SSL_VERIFY_PEER, NULL);
  static const unsigned char alpn[] = "\x08http/1.1";
  SSL_set_alpn_protos(l->ssl, alpn, sizeof alpn - 1);
  unsigned char addr[16];
  bool ip = inet_pton(AF_INET, u->host, addr) == 1 || inet_pton(AF_INET6, u->host, addr) == 1;
  if (ip) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), u->host);
  } else {
    SSL_set_tlsext_host_name(l->ssl, u->host);
    SSL_set1_host(l->ssl, u->host);
  }
  SSL_set_fd(l->ssl, l->fd);
  signal(SIGPIPE, SIG_IGN); /* OpenSSL writes the socket with write(): a closed peer must not kill us */
  if (SSL_connect(l->ssl) == 1) return 0;
  long v = SSL_get_verify_result(l->ssl);
  unsigned long e = ERR_peek_last_error();
  if (v != X509_V_OK)
    snprintf(err, errlen, "TLS handshake with %s:%d failed: certificate: %s (SSL_CERT_FILE names other CAs)", u->host,
             u->port, X509_verify_cert_error_string(v));
  else
    snprintf(err, errlen, "TLS handshake with %s:%d failed: %s: is it an https port?", u->host, u->port,
             e ? ERR_reason_error_string(e) : "the connection closed");
  return -1;
}

static int send_all(link_t *l, const char *p, size_t n) {
  while (n) {
    ssize_t w = l->ssl ? SSL_write(l->ssl, p, (int)n) : send(l->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR && !l->ssl) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* Bytes read, 0 at the end (a TLS close_notify, or a TCP close), -1 on an error. */
static ssize_t recv_some(link_t *l, char *buf, size_t n) {
  if (!l->ssl) return recv(l->fd, buf, n, 0);
  int r = SSL_read(l->ssl, buf, (int)n);
  if (r > 0) return r;
  int e = SSL_get_error(l->ssl, r);
  ERR_clear_error();
  return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -1;
}

int fc_http_call(const fc_url_t *u, const fc_http_call_t *c, fc_buf_t *body_out, char *err, size_t errlen) {
  link_t link = {.fd = dial(u, err, errlen)};
  if (link.fd < 0) return FC_HTTP_UNREACHABLE;
  if (u->tls && tls_open(&link, u, err, errlen) < 0) {
    link_close(&link);
    return FC_HTTP_UNREACHABLE;
  }
  int fd = link.fd;
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
  int rc = send_all(&link, req.data, req.len);
  fc_buf_dispose(&req);
  if (rc < 0) {
    snprintf(err, errlen, "cannot send the request to %s:%d: %s", u->host, u->port, strerror(errno));
    link_close(&link);
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
    if (c->cancel_fd > 0 && !(link.ssl && SSL_pending(link.ssl) > 0)) {
      struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = c->cancel_fd, .events = POLLIN}};
      if (poll(pf, 2, -1) < 0 && errno == EINTR) continue;
      if (pf[1].revents) {
        snprintf(err, errlen, "cancelled");
        link_close(&link);
        return FC_HTTP_CUT;
      }
    }
    ssize_t n = recv_some(&link, buf, sizeof buf);
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
      link_close(&link);
      return rc;
    }
  }
  link_close(&link);
  return parser.status_code;
}
