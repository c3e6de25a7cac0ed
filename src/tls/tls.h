/* tls: the listening port as HTTPS, with OpenSSL. A net connection filter
 * (fc_conn_filter_t): each loop does its own handshakes and record work on
 * its own connections, through a BIO that reads the loop's read buffer in
 * place and queues each record it writes on the connection's write queue, so
 * TLS adds no lock and no thread between the loops. Certificates load at
 * start-up and again on fc_tls_reload (SIGHUP): new handshakes use the new
 * context, open connections keep theirs. */
#ifndef FC_TLS_H
#define FC_TLS_H

#include <stdint.h>

#include "core/core.h"
#include "net/net.h"

typedef struct fc_tls fc_tls_t;

typedef struct {
  const char *cert_file; /* PEM: the certificate, then its chain */
  const char *key_file;  /* PEM: its private key (not encrypted) */
  /* ALPN protocols this port speaks, most preferred first, NULL-terminated;
   * NULL: {"http/1.1"}. A client offering none of them goes on without ALPN. */
  const char *const *alpn;
} fc_tls_opts_t;

typedef struct {
  uint64_t handshakes;         /* completed */
  uint64_t handshake_failures; /* a peer that sent something other than a good handshake */
  uint64_t reloads;            /* certificate reloads that took */
} fc_tls_stats_t;

/* Loads the certificate and key into a server context: TLS 1.2 and 1.3 only,
 * ECDHE with AEAD ciphers for 1.2, the server's cipher order, no
 * renegotiation, no compression. Returns NULL with a message in `err` that
 * names the file that cannot be read or is not PEM, or says the key does not
 * match the certificate. Start-up thread; the result is shared by the loops. */
fc_tls_t *fc_tls_new(const fc_tls_opts_t *opts, char *err, size_t errlen);
/* Frees it; every connection it made must be closed. */
void fc_tls_free(fc_tls_t *t);
/* Reads the same files again into a new context that later handshakes use;
 * open connections keep the one they began with. Returns 0, or a negative
 * errno with `err` (the old context stays). Any thread. */
int fc_tls_reload(fc_tls_t *t, char *err, size_t errlen);
/* Makes a fresh connection a TLS one: its bytes go through the handshake and
 * the record layer. Call before anything is sent on it. Returns 0 or -ENOMEM.
 * The connection's loop. */
int fc_tls_attach(fc_tls_t *t, fc_conn_t *c);
/* The protocol ALPN agreed on `c` ("h2", "http/1.1"), "" when none, NULL when
 * `c` is not a TLS connection or its handshake has not finished. */
const char *fc_tls_alpn(const fc_conn_t *c);
/* Counters; any thread. */
void fc_tls_stats(fc_tls_t *t, fc_tls_stats_t *out);

#endif
