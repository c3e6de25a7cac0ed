/* TLS connections: an SSL object per connection over a BIO of our own, the
 * server context and its reload. */
#include "tls/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2's suites: forward secrecy and AEAD only (Mozilla's "intermediate"
 * less DHE). TLS 1.3's are OpenSSL's defaults, all AEAD. */
#define TLS12_CIPHERS                                                                                                  \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                           \
  "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct fc_tls {
  char *cert_file, *key_file;
  unsigned char alpn[64]; /* wire format: length-prefixed names, most preferred first */
  unsigned alpn_len;
  BIO_METHOD *bio_method;
  pthread_mutex_t lock; /* guards ctx: held to take a reference or to swap it */
  SSL_CTX *ctx;
  atomic_uint_fast64_t handshakes, failures, reloads;
};

/* One connection's TLS state (the filter's state). */
typedef struct {
  fc_tls_t *tls;
  fc_conn_t *conn;
  SSL *ssl;
  const char *in; /* unread input of the current read (the loop's buffer) */
  size_t inlen;
  bool ready;  /* handshake done */
  bool failed; /* a fatal error: nothing more goes through ssl */
  bool shut;   /* close_notify queued */
} tconn_t;

static const fc_conn_filter_t filter;

/* The BIO: reads take from the current read's bytes in place; each write (a
 * record, or a handshake flight's) becomes a frame on the write queue. */
static int bio_write(BIO *b, const char *p, int n) {
  tconn_t *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  fc_frame_t *f = fc_frame_copy(p, (size_t)n);
  fc_conn_send_raw(t->conn, f); /* fails only on a closing connection: the bytes go nowhere */
  fc_frame_unref(f);
  return n;
}

static int bio_read(BIO *b, char *p, int n) {
  tconn_t *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->inlen == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t k = (size_t)n < t->inlen ? (size_t)n : t->inlen;
  memcpy(p, t->in, k);
  t->in += k;
  t->inlen -= k;
  return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b, (void)num, (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

/* The reason of the last OpenSSL error, and the thread's error queue cleared. */
static const char *ssl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  return r ? r : "unknown error";
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned inlen,
                   void *arg) {
  (void)ssl;
  fc_tls_t *t = arg;
  unsigned char *sel;
  if (SSL_select_next_proto(&sel, outlen, t->alpn, t->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

/* An encrypted key would make OpenSSL prompt on the terminal: refuse instead. */
static int no_password(char *buf, int size, int rw, void *ud) {
  (void)buf, (void)size, (void)rw, (void)ud;
  return 0;
}

static int check_readable(const char *what, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    int e = errno;
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
    return -e;
  }
  fclose(f);
  return 0;
}

/* A certificate's subject and expiry, for the log. */
static void log_cert(SSL_CTX *ctx, const char *msg, const char *file) {
  X509 *x = SSL_CTX_get0_certificate(ctx);
  char subject[256] = "", until[64] = "";
  if (x) {
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, X509_get0_notAfter(x))) {
      int n = BIO_read(b, until, sizeof until - 1);
      until[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
  }
  fc_log(FC_LOG_INFO, msg, "cert=%s subject=\"%s\" not_after=\"%s\"", file, subject, until);
}

static SSL_CTX *make_ctx(fc_tls_t *t, char *err, size_t errlen) {
  if (check_readable("tls-cert", t->cert_file, err, errlen) < 0 ||
      check_readable("tls-key", t->key_file, err, errlen) < 0)
    return NULL;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    snprintf(err, errlen, "tls: cannot make a context: %s", ssl_reason());
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* Resumption goes by tickets: no session cache, whose lock the loops would share. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_default_passwd_cb(ctx, no_password);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, t);
  if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
    snprintf(err, errlen, "tls: cipher list refused: %s", ssl_reason());
  } else if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
    snprintf(err, errlen, "tls-cert %s: not a usable PEM certificate (%s)", t->cert_file, ssl_reason());
  } else if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
    bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
    const char *why = ssl_reason();
    if (mismatch) snprintf(err, errlen, "tls-key %s does not match the certificate in %s", t->key_file, t->cert_file);
    else snprintf(err, errlen, "tls-key %s: not a usable PEM private key (%s)", t->key_file, why);
  } else if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "tls-key %s does not match the certificate in %s", t->key_file, t->cert_file);
  } else {
    return ctx;
  }
  SSL_CTX_free(ctx);
  return NULL;
}

fc_tls_t *fc_tls_new(const fc_tls_opts_t *opts, char *err, size_t errlen) {
  static const char *const default_alpn[] = {"http/1.1", NULL};
  fc_tls_t *t = fc_xcalloc(1, sizeof *t);
  t->cert_file = fc_xstrndup(opts->cert_file, strlen(opts->cert_file));
  t->key_file = fc_xstrndup(opts->key_file, strlen(opts->key_file));
  for (const char *const *p = opts->alpn ? opts->alpn : default_alpn; *p; p++) {
    size_t n = strlen(*p);
    if (n == 0 || n > 255 || t->alpn_len + 1 + n > sizeof t->alpn) continue;
    t->alpn[t->alpn_len++] = (unsigned char)n;
    memcpy(t->alpn + t->alpn_len, *p, n);
    t->alpn_len += (unsigned)n;
  }
  pthread_mutex_init(&t->lock, NULL);
  t->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "flowcast");
  BIO_meth_set_write(t->bio_method, bio_write);
  BIO_meth_set_read(t->bio_method, bio_read);
  BIO_meth_set_ctrl(t->bio_method, bio_ctrl);
  BIO_meth_set_create(t->bio_method, bio_create);
  t->ctx = make_ctx(t, err, errlen);
  if (!t->ctx) {
    fc_tls_free(t);
    return NULL;
  }
  log_cert(t->ctx, "tls certificate loaded", t->cert_file);
  return t;
}

void fc_tls_free(fc_tls_t *t) {
  if (!t) return;
  SSL_CTX_free(t->ctx);
  BIO_meth_free(t->bio_method);
  pthread_mutex_destroy(&t->lock);
  free(t->cert_file);
  free(t->key_file);
  free(t);
}

int fc_tls_reload(fc_tls_t *t, char *err, size_t errlen) {
  SSL_CTX *ctx = make_ctx(t, err, errlen);
  if (!ctx) return -EINVAL;
  pthread_mutex_lock(&t->lock);
  SSL_CTX *old = t->ctx;
  t->ctx = ctx;
  pthread_mutex_unlock(&t->lock);
  SSL_CTX_free(old); /* connections made with it hold their own references */
  atomic_fetch_add(&t->reloads, 1);
  log_cert(ctx, "tls certificate reloaded", t->cert_file);
  return 0;
}

int fc_tls_attach(fc_tls_t *t, fc_conn_t *c) {
  tconn_t *tc = fc_xcalloc(1, sizeof *tc);
  tc->tls = t;
  tc->conn = c;
  pthread_mutex_lock(&t->lock);
  tc->ssl = SSL_new(t->ctx);
  pthread_mutex_unlock(&t->lock);
  BIO *bio = tc->ssl ? BIO_new(t->bio_method) : NULL;
  if (!bio) {
    SSL_free(tc->ssl);
    ERR_clear_error();
    free(tc);
    return -ENOMEM;
  }
  BIO_set_data(bio, tc);
  SSL_set_bio(tc->ssl, bio, bio); /* one reference, the SSL's */
  SSL_set_accept_state(tc->ssl);
  fc_conn_set_filter(c, &filter, tc);
  return 0;
}

const char *fc_tls_alpn(const fc_conn_t *c) {
  tconn_t *t = fc_conn_filter_state(c, &filter);
  if (!t || !t->ready) return NULL;
  static _Thread_local char name[256];
  const unsigned char *p;
  unsigned n;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  memcpy(name, p ? (const char *)p : "", n);
  name[n] = '\0';
  return name;
}

void fc_tls_stats(fc_tls_t *t, fc_tls_stats_t *out) {
  out->handshakes = atomic_load(&t->handshakes);
  out->handshake_failures = atomic_load(&t->failures);
  out->reloads = atomic_load(&t->reloads);
}

/* A fatal error on `t`: logged at debug level (peers cause them at will). */
static int fail(tconn_t *t, const char *what, int ssl_err) {
  char peer[64];
  fc_conn_peer(t->conn, peer, sizeof peer);
  fc_log(FC_LOG_DEBUG, what, "peer=%s ssl_error=%d reason=\"%s\"", peer, ssl_err, ssl_reason());
  t->failed = true;
  return -EPROTO;
}

static int handshake(tconn_t *t) {
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->ready = true;
    atomic_fetch_add_explicit(&t->tls->handshakes, 1, memory_order_relaxed);
    return 0;
  }
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ) return 0;
  atomic_fetch_add_explicit(&t->tls->failures, 1, memory_order_relaxed);
  return fail(t, "tls handshake failed", e);
}

/* Hands every whole record's plaintext to the handler. */
static int read_plain(tconn_t *t) {
  char buf[16384];
  for (;;) {
    int r = SSL_read(t->ssl, buf, sizeof buf);
    if (r > 0) {
      fc_conn_deliver(t->conn, buf, (size_t)r);
      if (fc_conn_closing(t->conn)) return 0;
      continue;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) { /* the peer's close_notify */
      ERR_clear_error();
      fc_conn_eof(t->conn);
      return 0;
    }
    return fail(t, "tls read failed", e);
  }
}

static int on_read(fc_conn_t *c, const char *p, size_t n) {
  tconn_t *t = fc_conn_filter_state(c, &filter);
  if (t->failed) return -EPROTO;
  t->in = p;
  t->inlen = n;
  int rc = t->ready ? 0 : handshake(t);
  if (rc == 0 && t->ready) rc = read_plain(t);
  t->in = NULL;
  t->inlen = 0;
  return rc;
}

static int on_send(fc_conn_t *c, const void *p, size_t n) {
  tconn_t *t = fc_conn_filter_state(c, &filter);
  if (!t->ready || t->failed || t->shut) return -EPIPE; /* handlers answer requests, which come after the handshake */
  for (size_t off = 0; off < n;) {
    size_t chunk = n - off < (1u << 30) ? n - off : (1u << 30);
    int r = SSL_write(t->ssl, (const char *)p + off, (int)chunk);
    if (r <= 0) {
      fail(t, "tls write failed", SSL_get_error(t->ssl, r));
      return -EIO;
    }
    off += (size_t)r;
  }
  return 0;
}

static void on_shutdown(fc_conn_t *c) {
  tconn_t *t = fc_conn_filter_state(c, &filter);
  if (!t->ready || t->failed || t->shut) return;
  t->shut = true;
  SSL_shutdown(t->ssl); /* queues close_notify; the peer's is not waited for */
  ERR_clear_error();
}

static void on_close(fc_conn_t *c) {
  tconn_t *t = fc_conn_filter_state(c, &filter);
  SSL_free(t->ssl);
  free(t);
}

static const fc_conn_filter_t filter = {
    .on_read = on_read, .send = on_send, .on_shutdown = on_shutdown, .on_close = on_close};
