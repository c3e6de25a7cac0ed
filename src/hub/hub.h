/* hub: channels, their retained history, subscriptions and cross-thread fan-out.
 * No sockets here: transports register subscription links and receive events
 * through a callback on their own loop thread.
 *
 * Ids: the hub gives none. Its one publisher (src/pub) numbers events and
 * publishes them in id order; one hub lock serializes publishes, so events
 * enter every channel and every per-thread inbox in id order. A subscriber on
 * any thread therefore sees ids strictly increasing, across all its channels,
 * which is what makes one Last-Event-ID enough to resume a multi-channel stream. */
#ifndef FC_HUB_H
#define FC_HUB_H

#include "core/core.h"

typedef struct fc_hub fc_hub_t;
typedef struct fc_channel fc_channel_t;
typedef struct fc_sub_link fc_sub_link_t;

#define FC_CHANNEL_NAME_MAX 128
#define FC_EVENT_NAME_MAX 128

/* One published event. Immutable once published; shared by history, inboxes and
 * write queues through the refcount of its SSE frame. */
typedef struct fc_event {
  fc_frame_t sse;        /* "id: ..\nevent: ..\ndata: ..\n\n"; its refs are the event's */
  uint64_t seq;          /* server-wide id, shown to clients as decimal */
  uint64_t n;            /* 1-based ordinal within its channel */
  int64_t time_ms;       /* publish time, ms since the epoch */
  fc_channel_t *channel; /* channels outlive their events (each counts in it) */
  const char *name;      /* SSE event name, "" when none; NUL-terminated */
  const char *data;      /* payload, NUL-terminated */
  const char *from;      /* publisher connection id, "" when none */
  uint32_t data_len;
  uint16_t name_len, from_len;
  bool is_json;                   /* data is a JSON text: history shows it as a value, not a string */
  _Atomic(fc_frame_t *) ws;       /* the WebSocket frame, built once on first use */
  _Atomic(fc_frame_t *) envelope; /* the SSE frame of ?envelope=1 streams, likewise */
  char mem[];
} fc_event_t;

static inline fc_event_t *fc_event_ref(fc_event_t *ev) {
  fc_frame_ref(&ev->sse);
  return ev;
}
static inline void fc_event_unref(fc_event_t *ev) { fc_frame_unref(&ev->sse); }

/* Appends the event's JSON members, without braces:
 * "channel":..,"id":"..","event":name|null,"data":<JSON value or string>[,"from":".."]. */
void fc_event_json_members(fc_buf_t *b, const fc_event_t *ev);

/* The event's WebSocket frame: built by `build` the first time any thread asks,
 * then shared (the event holds one reference). Any thread. */
fc_frame_t *fc_event_ws_frame(fc_event_t *ev, fc_frame_t *(*build)(const fc_event_t *ev));
/* The same for the event's enveloped SSE frame (sse's ?envelope=1). */
fc_frame_t *fc_event_envelope_frame(fc_event_t *ev, fc_frame_t *(*build)(const fc_event_t *ev));

/* An event as a publisher hands it in. Borrowed slices. */
typedef struct {
  fc_str_t name; /* may be empty */
  fc_str_t data;
  fc_str_t from; /* may be empty */
  bool is_json;
  /* Given by the publisher: the id (greater than every id published before),
   * the ordinal (the channel's next, fc_channel_next_n), time in ms. */
  uint64_t seq, n;
  int64_t time_ms;
} fc_event_in_t;

/* True for a notice (fc_hub_notice): an event with no id, never in history. */
static inline bool fc_event_is_notice(const fc_event_t *ev) { return ev->seq == 0; }

/* Builds the SSE frame of `data` for event `seq` into `out`: an `id:` line (none
 * when `seq` is 0, a notice), an
 * `event:` line when `name` is not empty, one `data:` line per line of data
 * (lines end at CRLF, CR or LF), then a blank line. */
void fc_sse_frame_build(fc_buf_t *out, uint64_t seq, fc_str_t name, fc_str_t data);

/* Where a subscriber receives its events. The transport embeds one link per
 * channel it follows. `deliver` runs on the link's loop thread and must not
 * unsubscribe any link synchronously (close later, from a libuv callback). */
typedef void (*fc_sub_deliver_cb)(fc_sub_link_t *link, fc_event_t *ev);
struct fc_sub_link {
  fc_sub_link_t *prev, *next; /* in the channel's list for this thread */
  fc_channel_t *channel;      /* NULL while not subscribed */
  uint64_t last_seq;          /* highest id already given; later copies are skipped */
  uint64_t notice_from;       /* the channel's notices up to this one came before the link: skipped */
  bool wants_notices;         /* set before subscribing: the subscriber takes notices (fc_hub_notice) */
  fc_sub_deliver_cb deliver;
  void *owner;
};

/* Retention for channels whose name matches `pattern` (a name, or a glob
 * where '*' matches any run of characters). The first matching rule wins. */
typedef struct {
  const char *pattern;
  unsigned count;     /* events kept */
  uint64_t max_age_s; /* 0: no age limit */
} fc_hub_rule_t;

/* Fills a channel that is not in memory from storage: its counters with
 * fc_hub_restore_counters(), then its newest `limit` events with
 * fc_hub_restore_event(), oldest first. Returns 1 when storage knows the
 * channel, 0 when it does not, or a negative errno (nothing is then used).
 * Runs without the hub lock, on a channel no other thread sees yet; any thread. */
typedef int (*fc_hub_load_cb)(void *ud, fc_channel_t *ch, unsigned limit);

typedef struct {
  unsigned threads;   /* loop threads that hold subscribers */
  unsigned retention; /* events kept per channel, unless a rule says otherwise */
  const fc_hub_rule_t *rules;
  size_t nrules;
  /* Durable storage: channels are loaded from it on demand, and a channel
   * not in use is freed even with retained events (storage has them). NULL:
   * memory only, where a channel stays while it retains events. */
  fc_hub_load_cb load;
  void *load_ud;
  size_t max_channels; /* channels in memory at most (0: no cap) */
  uint64_t idle_ms;    /* an unused channel is freed by the sweep after this long */
  /* Called, from any thread, when `thread`'s inbox goes from empty to not empty;
   * the loop then calls fc_hub_drain() on that thread, once per notice (the
   * next notice comes only after a drain emptied the inbox, so one message
   * per loop can carry every notice). */
  void (*notify)(unsigned thread, void *ud);
  void *notify_ud;
  /* Called with the hub lock held when a channel enters memory (`in_memory`)
   * and when it leaves; in the order of those changes. Must not block nor
   * call the hub. May be NULL. */
  void (*on_channel)(void *ud, const char *name, bool in_memory);
  void *on_channel_ud;
} fc_hub_opts_t;

fc_hub_t *fc_hub_new(const fc_hub_opts_t *opts);
/* Frees channels, history and queued inbox events. No thread may use the hub then. */
void fc_hub_free(fc_hub_t *hub);

/* True when `name` is a valid channel name: [A-Za-z0-9._:-]{1,128}. */
bool fc_channel_name_valid(const char *name, size_t len);
/* True when `name` is a valid event name: [A-Za-z0-9._:-]{1,128}. */
bool fc_event_name_valid(const char *name, size_t len);

/* Channel lifetime. A channel is in memory while something uses it: a
 * reference (from fc_hub_open/fc_hub_channel, or fc_channel_ref), a
 * subscription link, or an event that points at it outside its own history.
 * Once none is left for `idle_ms`, fc_hub_sweep() frees it (with storage,
 * even with retained events: they load again on the next use, and ids,
 * ordinals and history continue exactly). */
enum {
  FC_HUB_CREATE = 1, /* create the channel when neither memory nor storage has it */
  FC_HUB_NOCAP = 2,  /* bring it into memory past max_channels (server-made channels) */
  FC_HUB_CACHED = 4, /* only a channel already in memory: never read storage */
};
/* Looks a channel up by name, in memory, then in storage (read without the
 * hub lock). On success stores a reference in `*out` (release it with
 * fc_channel_unref) and returns 0. Errors: -EINVAL (bad name), -ENOENT (no
 * such channel, without FC_HUB_CREATE), -EMFILE (max_channels are in memory:
 * nothing was created), -EIO (storage could not be read). Any thread. */
int fc_hub_open(fc_hub_t *hub, const char *name, size_t len, unsigned flags, fc_channel_t **out);
/* True when channels not in memory are read from storage (a load hook is
 * set): only then may fc_hub_open block on storage. Any thread. */
bool fc_hub_loads(const fc_hub_t *hub);
/* fc_hub_open() for the server's own channels: with `create`, uncapped.
 * Returns a reference, or NULL on any error. */
fc_channel_t *fc_hub_channel(fc_hub_t *hub, const char *name, size_t len, bool create);
/* Another reference on a channel the caller already holds one on (or is
 * subscribed to). Any thread. */
fc_channel_t *fc_channel_ref(fc_channel_t *ch);
/* Drops a reference; NULL is a no-op. The channel stays until a sweep finds
 * it unused. Any thread. */
void fc_channel_unref(fc_channel_t *ch);
/* The same, for a reference that was not a use of the channel (a cluster's
 * bus): its idle time goes on. */
void fc_channel_unref_quiet(fc_channel_t *ch);
/* Drops a reference, and frees the channel at once when nothing else uses
 * it: what a refused request opened leaves nothing behind. Any thread. */
void fc_hub_drop(fc_hub_t *hub, fc_channel_t *ch);
/* Frees the channels unused for `idle_ms` as of `now_ms` (fc_mono_ms()),
 * then gives freed memory back to the system when many went. Returns how
 * many were freed. Takes the hub lock in short slices. Any thread. */
size_t fc_hub_sweep(fc_hub_t *hub, uint64_t now_ms);
const char *fc_channel_name(const fc_channel_t *ch);

typedef struct {
  uint64_t first_seq, last_seq; /* ids given to the batch, consecutive */
  size_t subscribers;           /* subscribers of the channel when published */
} fc_publish_result_t;

/* Publishes `n` numbered events to `ch` as one unit: they enter the history
 * together and are queued for every thread that has subscribers. Ids rise
 * within the channel and ordinals follow the channel's (checked by assert);
 * the caller serializes its calls, in id order but for a cluster's catch-up.
 * Copies the inputs. Any thread. */
void fc_hub_publish(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n, fc_publish_result_t *res);

/* fc_hub_publish() for events that came from elsewhere (a cluster's bus):
 * they are not a use of the channel, which is freed once idle. */
void fc_hub_apply(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n, fc_publish_result_t *res);

/* Queues a notice on `ch` (a JSON `data` named `name`, such as presence's
 * flowcast.join): an event without an id that never enters history, given
 * to the links subscribed when it is queued that want notices (nothing is
 * made when none does), in order with the channel's
 * published events (it takes the same inboxes under the same lock). Each
 * link's deliver callback decides whether its subscriber wants it
 * (fc_event_is_notice). Copies the inputs. Any thread. */
void fc_hub_notice(fc_hub_t *hub, fc_channel_t *ch, fc_str_t name, fc_str_t data);

/* Where a new subscription starts. */
typedef struct {
  bool has_after; /* resume: after `after` (a Last-Event-ID) */
  uint64_t after;
  unsigned replay; /* otherwise: the newest `replay` retained events */
} fc_resume_t;

/* A gap found while resuming one channel. */
typedef struct {
  fc_channel_t *channel;
  uint64_t lost;     /* events evicted between the resume point and the oldest retained */
  bool exact;        /* false: `lost` is a lower bound */
  uint64_t next_seq; /* id of the first event still retained after the gap, 0 if none */
} fc_gap_t;

/* What a subscription starts with: gaps first, then replayed events in id order. */
typedef struct {
  fc_gap_t *gaps;
  size_t ngaps;
  fc_event_t **events; /* each holds a reference, owned by the caller */
  size_t nevents;
  uint64_t position; /* the last id given on the server when the backlog was taken */
} fc_backlog_t;
void fc_backlog_dispose(fc_backlog_t *b);

/* Subscribes `n` links, all on loop thread `thread`, to their channels (set
 * `links[i].channel` to channels the caller holds references on; the
 * subscription keeps each channel until fc_hub_unsubscribe) and fills `out` with what the subscriber
 * must be sent before live events, merged in id order. Atomic with respect to
 * publishes: no event is missed or given twice. Call on `thread`. */
void fc_hub_subscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t **links, size_t n, const fc_resume_t *from,
                      fc_backlog_t *out);
/* Removes a link; a no-op for a link that is not subscribed. Call on its thread. */
void fc_hub_unsubscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t *link);

/* Delivers what `thread`'s inbox holds to that thread's links. Call on
 * `thread`, in answer to a notice (see fc_hub_opts_t.notify). */
void fc_hub_drain(fc_hub_t *hub, unsigned thread);

/* Retained events of `ch` with id > `after`, oldest first, at most `limit`
 * (each referenced; dispose the backlog). */
void fc_hub_history(fc_hub_t *hub, fc_channel_t *ch, uint64_t after, size_t limit, fc_backlog_t *out);

/* Drops a channel's retained events with ids up to `upto` (UINT64_MAX: all);
 * ids keep increasing. */
void fc_hub_purge(fc_hub_t *hub, fc_channel_t *ch, uint64_t upto);

typedef struct {
  char name[FC_CHANNEL_NAME_MAX + 1];
  size_t retained;
  uint64_t last_seq; /* 0 when the channel has no event yet */
  size_t subscribers;
} fc_channel_info_t;
/* A snapshot of the channels in memory whose names sort after `after` (""
 * for all), the first `limit` by name (strcmp order); free() the array. */
fc_channel_info_t *fc_hub_list(fc_hub_t *hub, const char *after, size_t limit, size_t *n);

/* How many channels are in memory. */
size_t fc_hub_channel_count(fc_hub_t *hub);
/* Events a channel named `name` keeps (the first matching rule, or the default). */
unsigned fc_hub_retention_of(const fc_hub_t *hub, const char *name);

/* The highest id published so far (or restored with fc_hub_restore_seq). */
uint64_t fc_hub_last_seq(fc_hub_t *hub);

/* Start-up: the highest id given before, which subscribers are told as their
 * position until something new is published. */
void fc_hub_restore_seq(fc_hub_t *hub, uint64_t last_seq);
/* Only from within the load callback, on the channel being loaded: its
 * stored counters, then each stored event (seq, n and time set), oldest first. */
void fc_hub_restore_counters(fc_channel_t *ch, uint64_t first_seq, uint64_t last_seq, uint64_t next_n);
void fc_hub_restore_event(fc_channel_t *ch, const fc_event_in_t *ev);

/* The channel's subscribers on this server. */
size_t fc_channel_subscribers(fc_hub_t *hub, fc_channel_t *ch);
/* The channel's last id (0: none yet). */
uint64_t fc_channel_last_seq(fc_hub_t *hub, fc_channel_t *ch);
/* A cluster's catch-up found events trimmed from storage before this node
 * saw them: the channel's next ordinal becomes `next_n`, the skipped ones
 * counted as lost (the gap rule tells resuming subscribers). */
void fc_hub_skip(fc_hub_t *hub, fc_channel_t *ch, uint64_t next_n);
/* The ordinal the channel's next event gets. */
uint64_t fc_channel_next_n(fc_hub_t *hub, fc_channel_t *ch);
/* Events the channel keeps, and its age limit in seconds (0: none). */
unsigned fc_channel_retention(const fc_channel_t *ch);
uint64_t fc_channel_max_age(const fc_channel_t *ch);

/* Drops retained events older than their channel's age limit; returns how
 * many. Any thread. */
size_t fc_hub_expire(fc_hub_t *hub, int64_t now_ms);

#endif
