/* WebSocket sessions: handshake, wslay glue, lifetime, pings, direct messages. */
#include <errno.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ws/internal.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static void on_direct(fc_loop_t *l, fc_msg_t *m, void *ud);

fc_ws_t *fc_ws_new(const fc_ws_opts_t *opts) {
  fc_ws_t *ws = fc_xcalloc(1, sizeof *ws);
  ws->opts = *opts;
  if ((ws->rx_direct = fc_net_receiver(opts->net, on_direct, ws)) < 0) {
    free(ws);
    return NULL;
  }
  ws->loops = fc_xcalloc_lines(opts->threads, sizeof *ws->loops);
  pthread_mutex_init(&ws->lock, NULL);
  ws->nbuckets = 1024;
  ws->buckets = fc_xcalloc(ws->nbuckets, sizeof *ws->buckets);
  if (sodium_init() < 0) abort(); /* no random ids without it */
  randombytes_buf(ws->sub_key, sizeof ws->sub_key);
  return ws;
}

/* Direct messages still in the mailboxes are freed by fc_net_deliver_rest(),
 * which must run before this. */
void fc_ws_free(fc_ws_t *ws) {
  if (!ws) return;
  free(ws->loops);
  free(ws->buckets);
  pthread_mutex_destroy(&ws->lock);
  free(ws);
}

/* ---- frames ------------------------------------------------------------------ */

fc_frame_t *fc__ws_text_frame(const char *payload, size_t len) {
  char *b = fc_xmalloc(len + 10);
  size_t h = 0;
  b[h++] = (char)0x81; /* FIN, text */
  if (len < 126) {
    b[h++] = (char)len;
  } else if (len < 65536) {
    b[h++] = 126;
    b[h++] = (char)(len >> 8), b[h++] = (char)len;
  } else {
    b[h++] = 127;
    for (int i = 7; i >= 0; i--) b[h++] = (char)((uint64_t)len >> (i * 8));
  }
  memcpy(b + h, payload, len);
  return fc_frame_take(b, h + len);
}

/* Sends [text, text+n) as one text message; a full queue closes the session. */
static void send_text(fc_ws_session_t *s, const char *text, size_t n) {
  if (!s->stream || s->closing) return;
  fc_frame_t *f = fc__ws_text_frame(text, n);
  if (fc_conn_send(s->stream->conn, f) == -ENOBUFS) fc__ws_close(s, 1008, "too slow");
  fc_frame_unref(f);
}

void fc__ws_send_json(fc_ws_session_t *s, json_t *j) {
  char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  if (!text) return;
  send_text(s, text, strlen(text));
  free(text);
}

void fc__ws_send_error(fc_ws_session_t *s, const char *ref, const char *code, const char *msg) {
  fc_buf_t b;
  fc_buf_init(&b);
  fc_buf_puts(&b, "{\"type\":\"error\",");
  fc_json_error_members(&b, code, msg);
  if (ref) {
    fc_buf_puts(&b, ",\"ref\":");
    fc_json_text(&b, ref);
  }
  fc_buf_puts(&b, "}");
  send_text(s, b.data, b.len);
  fc_buf_dispose(&b);
}

/* ---- registry ------------------------------------------------------------------ */

static size_t bucket(const fc_ws_t *ws, const char *id) { return fc_hash_fnv1a(id, strlen(id)) & (ws->nbuckets - 1); }

static void registry_add(fc_ws_t *ws, fc_ws_session_t *s) {
  pthread_mutex_lock(&ws->lock);
  size_t b = bucket(ws, s->id);
  s->hnext = ws->buckets[b];
  ws->buckets[b] = s;
  pthread_mutex_unlock(&ws->lock);
}

static void registry_del(fc_ws_t *ws, fc_ws_session_t *s) {
  pthread_mutex_lock(&ws->lock);
  fc_ws_session_t **pp = &ws->buckets[bucket(ws, s->id)];
  while (*pp && *pp != s) pp = &(*pp)->hnext;
  if (*pp) *pp = s->hnext;
  pthread_mutex_unlock(&ws->lock);
}

/* The thread of session `id`, or -1. Registry lock held by the caller. */
static fc_ws_session_t *registry_find(fc_ws_t *ws, const char *id) {
  fc_ws_session_t *s = ws->buckets[bucket(ws, id)];
  while (s && strcmp(s->id, id)) s = s->hnext;
  return s;
}

int fc_ws_send_direct(fc_ws_t *ws, const char *to, const char *from, const json_t *data) {
  if (strlen(to) >= sizeof((direct_t *)0)->to) return -ENOENT;
  pthread_mutex_lock(&ws->lock);
  fc_ws_session_t *s = registry_find(ws, to);
  int thread = s ? (int)s->thread : -1;
  pthread_mutex_unlock(&ws->lock);
  if (thread < 0) return -ENOENT;
  json_t *j = json_pack("{s:s,s:s,s:O}", "type", "direct", "from", from, "data", data);
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  direct_t *d = fc_xcalloc(1, sizeof *d);
  snprintf(d->to, sizeof d->to, "%s", to);
  d->frame = fc__ws_text_frame(text, strlen(text));
  free(text);
  d->msg.receiver = (unsigned)ws->rx_direct;
  fc_net_post(ws->opts.net, (unsigned)thread, &d->msg);
  return 0;
}

/* A direct message reached the loop of its session (which may have left). */
static void on_direct(fc_loop_t *l, fc_msg_t *m, void *ud) {
  fc_ws_t *ws = ud;
  direct_t *d = (direct_t *)m;
  /* Sessions leave the registry on their own thread, so one found here is alive. */
  pthread_mutex_lock(&ws->lock);
  fc_ws_session_t *s = registry_find(ws, d->to);
  pthread_mutex_unlock(&ws->lock);
  if (s && s->thread == fc_loop_index(l) && s->stream && !s->closing &&
      fc_conn_send(s->stream->conn, d->frame) == -ENOBUFS)
    fc__ws_close(s, 1008, "too slow");
  fc_frame_unref(d->frame);
  free(d);
}

/* ---- wslay glue ---------------------------------------------------------------- */

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
  (void)flags;
  fc_ws_session_t *s = ud;
  if (s->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < s->in_len ? len : s->in_len;
  memcpy(buf, s->in, n);
  s->in += n;
  s->in_len -= n;
  return (ssize_t)n;
}

/* Everything wslay writes is queued at once, so it never holds a partial frame
 * and shared event frames can go between its messages. */
static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
  (void)flags;
  fc_ws_session_t *s = ud;
  if (!s->stream) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  static const uint8_t protocol_error[] = {0x88, 0x02, 0x03, 0xea}; /* close 1002 */
  size_t taken = len; /* what wslay handed us, whatever goes out instead */
  if (len == 2 && data[0] == 0x88 && data[1] == 0 && !wslay_event_get_close_received(ctx)) {
    /* flowcast always gives its closes a code, so a bare close that the peer
     * did not start is wslay's answer to a frame it refused: say 1002. */
    data = protocol_error;
    len = sizeof protocol_error;
  }
  fc_conn_send_control(s->stream->conn, data, len); /* control frames are never refused */
  return (ssize_t)taken;
}

/* Control frames must be whole and at most 125 bytes, and a close frame's body
 * is empty or holds a 2-byte code (RFC 6455 5.5): answer 1002 before wslay
 * answers with a close that carries no code. */
static void on_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *f, void *ud) {
  (void)ctx;
  bool control = f->opcode >= 0x8;
  if ((f->opcode == WSLAY_CONNECTION_CLOSE && f->payload_length == 1) ||
      (control && (!f->fin || f->payload_length > 125)))
    fc__ws_close(ud, WSLAY_CODE_PROTOCOL_ERROR, "bad control frame");
}

/* Counts a message against opts.rate (a bucket of twice the rate); past it
 * the message is dropped with an error rate_limited. */
static bool rate_ok(fc_ws_session_t *s) {
  unsigned rate = s->ws->opts.rate;
  if (!rate) return true;
  uint64_t now = uv_now(fc_loop_uv(s->stream->loop));
  double burst = 2.0 * rate;
  if (!s->rate_last_ms) s->rate_tokens = burst;
  else if (now > s->rate_last_ms) s->rate_tokens += rate * (double)(now - s->rate_last_ms) / 1000.0;
  if (s->rate_tokens > burst) s->rate_tokens = burst;
  s->rate_last_ms = now ? now : 1;
  if (s->rate_tokens >= 1) {
    s->rate_tokens -= 1;
    return true;
  }
  s->ws->loops[s->thread].rate_limited++;
  fc_ws_error(s, NULL, "rate_limited", "more than %u messages a second on this connection (--ws-rate): dropped", rate);
  return false;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m, void *ud) {
  (void)ctx;
  fc_ws_session_t *s = ud;
  if (s->closing) return;
  switch (m->opcode) {
    case WSLAY_TEXT_FRAME:
      if (!rate_ok(s)) return;
      if (m->msg_length && !fc_utf8_valid((const char *)m->msg, m->msg_length)) {
        fc__ws_close(s, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "text is not valid UTF-8");
        return;
      }
      fc__ws_on_text(s, (const char *)m->msg, m->msg_length);
      break;
    case WSLAY_BINARY_FRAME: fc__ws_close(s, WSLAY_CODE_UNSUPPORTED_DATA, "binary messages are not supported"); break;
    case WSLAY_PONG: s->awaiting_pong = false; break;
    default: break; /* ping and close: wslay answers them */
  }
}

static const struct wslay_event_callbacks callbacks = {on_recv, on_send, NULL, on_frame_start, NULL, NULL, on_msg};

/* A wslay context holds about 8.8 KB of buffers, ten times the rest of an
 * idle session. It is made when there is something to read or send, and
 * freed again once the peer's input stands between messages and wslay has
 * nothing queued (see release_ctx). NULL when it cannot be made. */
static wslay_event_context_ptr ctx_of(fc_ws_session_t *s) {
  if (!s->ctx && wslay_event_context_server_init(&s->ctx, &callbacks, s) == 0)
    wslay_event_config_set_max_recv_msg_length(s->ctx, s->ws->opts.max_message);
  return s->ctx;
}

/* Follows the frames in the peer's bytes (RFC 6455 5.2), only to know when
 * the input stands between messages: no header or payload half read, no
 * fragmented message open. wslay does the real parsing and the checks. */
static void track_input(fc_ws_session_t *s, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (s->payload_left > 0) {
      size_t take = n < s->payload_left ? n : (size_t)s->payload_left;
      s->payload_left -= take;
      p += take;
      n -= take;
      continue;
    }
    s->hdr[s->hdr_len++] = *p++;
    n--;
    if (s->hdr_len < 2) continue;
    unsigned len7 = s->hdr[1] & 0x7f;
    size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (s->hdr[1] & 0x80 ? 4 : 0);
    if (s->hdr_len < need) continue;
    uint64_t len = len7;
    if (len7 >= 126) {
      len = 0;
      for (size_t i = 2; i < (len7 == 126 ? 4u : 10u); i++) len = len << 8 | s->hdr[i];
    }
    unsigned opcode = s->hdr[0] & 0x0f;
    bool fin = s->hdr[0] & 0x80;
    if (opcode < 8) s->in_fragments = !fin; /* control frames may come between fragments */
    s->payload_left = len;
    s->hdr_len = 0;
  }
}

/* Frees the context when it holds no state worth keeping. */
static void release_ctx(fc_ws_session_t *s) {
  if (!s->ctx || s->closing || s->hdr_len || s->payload_left || s->in_fragments ||
      wslay_event_get_queued_msg_count(s->ctx) > 0)
    return;
  wslay_event_context_free(s->ctx);
  s->ctx = NULL;
}

/* Sends what wslay queued; closes the connection once both sides said close. */
static void pump(fc_ws_session_t *s) {
  if (!s->stream || !s->ctx) return;
  wslay_event_send(s->ctx);
  if (!wslay_event_want_read(s->ctx) && !wslay_event_want_write(s->ctx)) {
    s->closing = true;
    registry_del(s->ws, s); /* no more direct messages to it */
    fc_conn_close_linger(s->stream->conn);
  }
}

void fc__ws_close(fc_ws_session_t *s, uint16_t code, const char *reason) {
  if (s->closing || !s->stream) return;
  s->closing = true;
  registry_del(s->ws, s);
  if (code == 1008 && !strcmp(reason, "too slow")) {
    /* A peer that does not read gets no close frame: its queue is full. */
    atomic_fetch_add(&s->ws->loops[s->thread].drops, 1);
    fc_stream_close(s->stream, false);
    return;
  }
  if (ctx_of(s)) {
    wslay_event_queue_close(s->ctx, code, (const uint8_t *)reason, strlen(reason));
    wslay_event_send(s->ctx);
  }
  /* The peer may still be sending (a message over the limit): read and drop
   * it, so it reads our close frame instead of a reset. */
  fc_conn_close_linger(s->stream->conn);
}

/* ---- session lifetime ---------------------------------------------------------- */

const char *fc_ws_session_id(const fc_ws_session_t *s) { return s->id; }
void *fc_ws_session_user(fc_ws_session_t *s) { return s->user; }
unsigned fc_ws_session_thread(const fc_ws_session_t *s) { return s->thread; }
void fc_ws_session_ref(fc_ws_session_t *s) { s->refs++; }

void fc_ws_session_unref(fc_ws_session_t *s) {
  if (--s->refs > 0) return;
  if (s->user && s->user_free) s->user_free(s->user);
  if (s->ctx) wslay_event_context_free(s->ctx);
  fc_buf_dispose(&s->held);
  free(s);
}

static void on_stream_data(fc_stream_t *st, const char *p, size_t n) {
  fc_ws_session_t *s = st->ud;
  if (!ctx_of(s)) {
    s->closing = true;
    fc_stream_close(st, false);
    return;
  }
  track_input(s, (const uint8_t *)p, n);
  s->in = p;
  s->in_len = n;
  int rc = wslay_event_recv(s->ctx);
  s->in_len = 0;
  if (rc == WSLAY_ERR_NOMEM || !s->stream) {
    s->closing = true;
    fc_stream_close(st, false);
    return;
  }
  /* Our callbacks do not fail: an error here is a frame wslay refused. */
  if (rc != 0) {
    fc__ws_close(s, WSLAY_CODE_PROTOCOL_ERROR, "protocol error");
    return;
  }
  pump(s);
  release_ctx(s);
}

static void on_stream_close(fc_stream_t *st) {
  fc_ws_session_t *s = st->ud;
  fc_ws_t *ws = s->ws;
  ws_loop_t *wl = &ws->loops[s->thread];
  registry_del(ws, s);
  fc__ws_subs_dispose(s);
  if (s->prev) s->prev->next = s->next;
  else wl->sessions = s->next;
  if (s->next) s->next->prev = s->prev;
  atomic_fetch_sub(&wl->count, 1);
  s->stream = NULL;
  s->closing = true;
  fc_ws_session_unref(s);
}

static void on_stream_stop(fc_stream_t *st) { fc__ws_close(st->ud, WSLAY_CODE_GOING_AWAY, "server stopping"); }

static const fc_stream_handler_t ws_stream = {
    .on_close = on_stream_close, .on_stop = on_stream_stop, .on_data = on_stream_data};

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)). */
static void accept_key(fc_str_t key, char out[32]) {
  char buf[128];
  int n = snprintf(buf, sizeof buf, "%.*s%s", (int)key.len, key.base, WS_GUID);
  unsigned char sha[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)buf, (size_t)n, sha);
  sodium_bin2base64(out, 32, sha, sizeof sha, sodium_base64_VARIANT_ORIGINAL);
}

static bool header_has(fc_req_t *req, const char *name, const char *token) {
  fc_str_t v = fc_req_header(req, name);
  if (!v.base) return false;
  size_t tl = strlen(token);
  for (size_t i = 0; i + tl <= v.len; i++)
    if (!strncasecmp(v.base + i, token, tl)) return true;
  return false;
}

/* Checks the handshake; answers 400/426 and returns -EINVAL when it is wrong. */
static int check_handshake(fc_req_t *req, fc_str_t *key) {
  if (!header_has(req, "upgrade", "websocket") || !header_has(req, "connection", "upgrade")) {
    fc_http_error(req, 400, "not_websocket", "expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)");
    return -EINVAL;
  }
  fc_str_t v = fc_req_header(req, "sec-websocket-version");
  if (!v.base || !fc_str_eq(v, "13")) {
    fc_http_error_with(req, 426, "Sec-WebSocket-Version: 13\r\n", "bad_version", "WebSocket version 13 is required");
    return -EINVAL;
  }
  *key = fc_req_header(req, "sec-websocket-key");
  unsigned char raw[32];
  size_t len = 0;
  if (!key->base || key->len > 40 ||
      sodium_base642bin(raw, sizeof raw, key->base, key->len, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      len != 16) {
    fc_http_error(req, 400, "bad_key", "Sec-WebSocket-Key must be 16 bytes in base64");
    return -EINVAL;
  }
  return 0;
}

void fc_ws_accept(fc_ws_t *ws, fc_req_t *req, int64_t expires_ms) {
  fc_str_t key;
  if (check_handshake(req, &key) < 0) return;
  char accept[32], extra[160];
  accept_key(key, accept);
  snprintf(extra, sizeof extra, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept);
  fc_ws_session_t *s = fc_xcalloc(1, sizeof *s);
  s->ws = ws;
  s->thread = fc_loop_index(req->loop);
  s->refs = 1;
  s->expires_ms = expires_ms;
  s->user = req->user;
  s->user_free = req->user_free;
  req->user = NULL;
  /* Unguessable: knowing one id (every event published over WebSocket
   * carries its sender's) tells nothing about the others. */
  uint8_t raw[WS_ID_LEN / 2];
  randombytes_buf(raw, sizeof raw);
  sodium_bin2hex(s->id, sizeof s->id, raw, sizeof raw);
  s->stream = fc_http_stream(req, 101, extra, &ws_stream, s);
  fc_conn_set_bound(s->stream->conn, ws->opts.queue_bytes);
  fc_conn_set_bulk(s->stream->conn, true);
  registry_add(ws, s);
  ws_loop_t *wl = &ws->loops[s->thread];
  s->next = wl->sessions;
  if (s->next) s->next->prev = s;
  wl->sessions = s;
  atomic_fetch_add(&wl->count, 1);
  fc__ws_send_json(s, json_pack("{s:s,s:s}", "type", "welcome", "conn", s->id));
}

void fc_ws_tick(fc_ws_t *ws, fc_loop_t *l) {
  ws_loop_t *wl = &ws->loops[fc_loop_index(l)];
  uint64_t now = uv_now(fc_loop_uv(l));
  if (!wl->last_ping_ms) wl->last_ping_ms = now; /* the first round comes one interval after start */
  bool ping = now - wl->last_ping_ms >= ws->opts.ping_ms;
  if (ping) wl->last_ping_ms = now;
  int64_t wall = fc_now_ms();
  for (fc_ws_session_t *s = wl->sessions, *next; s; s = next) {
    next = s->next;
    if (s->closing) continue;
    if (s->expires_ms && wall >= s->expires_ms) {
      fc__ws_close(s, WSLAY_CODE_POLICY_VIOLATION, "token expired");
    } else if (ping && s->awaiting_pong) {
      s->closing = true; /* silent since the last ping: gone */
      fc_stream_close(s->stream, false);
    } else if (ping) {
      s->awaiting_pong = true;
      struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"", 0};
      if (!ctx_of(s)) continue; /* no pong will come: dropped at the next ping */
      wslay_event_queue_msg(s->ctx, &m);
      pump(s);
      release_ctx(s);
    }
  }
}

void fc_ws_stats(fc_ws_t *ws, fc_ws_stats_t *out) {
  memset(out, 0, sizeof *out);
  for (unsigned t = 0; t < ws->opts.threads; t++) {
    out->sessions += atomic_load(&ws->loops[t].count);
    out->delivered_total += atomic_load(&ws->loops[t].delivered);
    out->drops_total += atomic_load(&ws->loops[t].drops);
    out->rate_limited_total += atomic_load(&ws->loops[t].rate_limited);
  }
}
