#ifndef FC_WS_INTERNAL_H
#define FC_WS_INTERNAL_H

#include <pthread.h>
#include <wslay/wslay.h>

#include "ws/ws.h"

/* A connection id: 128 random bits as 32 lower-case hex digits. */
#define WS_ID_LEN 32

/* One subscription of a session, in the session's table (subs.c). */
typedef struct ws_sub {
  fc_sub_link_t link;            /* first: the deliver callback finds the entry from it */
  fc_presence_entry_t *presence; /* on a channel with presence on, else NULL */
  bool join_leave;               /* the subscriber asked for presence notices */
  struct ws_sub *next;           /* in its bucket */
  uint64_t hash;                 /* of name, keyed per process */
  char name[];                   /* the channel's name */
} ws_sub_t;

/* A direct message on its way to another loop's session. */
typedef struct direct {
  fc_msg_t msg; /* posted to the session's loop */
  char to[WS_ID_LEN + 1];
  fc_frame_t *frame;
} direct_t;

typedef struct {
  _Alignas(FC_CACHE_LINE) fc_ws_session_t *sessions; /* for pings and expiry */
  uint64_t last_ping_ms;                             /* loop time of the last ping round */
  atomic_ullong count, delivered, drops, rate_limited;
} ws_loop_t;

struct fc_ws {
  fc_ws_opts_t opts;
  int rx_direct; /* the net receiver of direct messages */
  ws_loop_t *loops;
  pthread_mutex_t lock;      /* the registry */
  fc_ws_session_t **buckets; /* id -> session, chained */
  size_t nbuckets;
  uint8_t sub_key[16]; /* the key of the subscription tables' hash */
};

struct fc_ws_session {
  fc_ws_t *ws;
  fc_stream_t *stream; /* NULL once the connection is gone */
  unsigned thread;
  int refs;     /* the connection holds one; pending answers hold more */
  bool closing; /* a close was queued or the connection is going */
  bool awaiting_pong;
  int64_t expires_ms;
  wslay_event_context_ptr ctx; /* NULL between messages: see ctx_of() in ws.c */
  uint8_t hdr[14];             /* the peer's frame header read so far */
  uint8_t hdr_len;
  bool in_fragments;     /* a data message whose final fragment has not come */
  uint64_t payload_left; /* bytes of the current frame's payload still to come */
  const char *in;        /* bytes being fed to wslay */
  size_t in_len;
  char id[WS_ID_LEN + 1];
  void *user;
  void (*user_free)(void *);
  double rate_tokens;    /* messages it may send now (opts.rate) */
  uint64_t rate_last_ms; /* loop time the tokens were last counted */
  ws_sub_t **subs;       /* subscriptions by channel name: subs_cap buckets (a power of 2) */
  size_t subs_cap, nsubs;
  /* ops.c: while an op waits for its channel to be read from storage, the
   * messages that follow wait too, in order (each: a size_t length, bytes). */
  bool warming;
  fc_buf_t held;
  fc_ws_session_t *prev, *next; /* in the loop's list */
  fc_ws_session_t *hnext;       /* in the registry */
};

/* subs.c: a session's subscriptions, by channel name, in constant time. The
 * session's loop thread only. */
ws_sub_t *fc__ws_sub_find(fc_ws_session_t *s, const char *name);
/* Adds an entry for `name` (not found before); its link is for the caller to fill. */
ws_sub_t *fc__ws_sub_add(fc_ws_session_t *s, const char *name);
/* Takes the entry of `name` out of the table (the caller unsubscribes and
 * frees it), or returns NULL. */
ws_sub_t *fc__ws_sub_take(fc_ws_session_t *s, const char *name);
/* Unsubscribes every entry from the hub and frees the table. */
void fc__ws_subs_dispose(fc_ws_session_t *s);

/* ops.c: handles one text message. */
void fc__ws_on_text(fc_ws_session_t *s, const char *p, size_t n);
/* Sends a JSON object as a text message (takes the reference). */
void fc__ws_send_json(fc_ws_session_t *s, json_t *j);
/* Sends {"type":"error","code","message","ref"?} built by core's one error
 * writer: every string escaped, invalid UTF-8 as U+FFFD. Loop thread. */
void fc__ws_send_error(fc_ws_session_t *s, const char *ref, const char *code, const char *msg);
/* What a subscribe op asks besides where to start: presence's client info
 * (checked JSON text, or NULL) and notices. */
typedef struct {
  const char *info;
  size_t info_len;
  bool join_leave;
} ws_presence_ask_t;
/* Subscribes the session to a channel and queues its backlog. */
void fc__ws_subscribe(fc_ws_session_t *s, fc_channel_t *ch, const fc_resume_t *from, const char *ref,
                      const ws_presence_ask_t *ask);
/* Removes a subscription's presence entry, then its hub link (not the entry's memory). */
void fc__ws_sub_drop(fc_ws_session_t *s, ws_sub_t *sub);
void fc__ws_unsubscribe(fc_ws_session_t *s, fc_channel_t *ch, const char *name, const char *ref);
/* Closes with a status code (a close frame, then the connection). */
void fc__ws_close(fc_ws_session_t *s, uint16_t code, const char *reason);
/* A server-to-client frame holding `payload` as one text message. */
fc_frame_t *fc__ws_text_frame(const char *payload, size_t len);

#endif
