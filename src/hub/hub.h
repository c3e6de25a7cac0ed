/* hub: channels, their retained history, subscriptions and cross-thread fan-out.
 * No sockets here: transports register subscription links and receive events
 * through a callback on their own loop thread.
 *
 * Ordering: one hub lock serializes publishes, so ids (`seq`) are assigned in the
 * order events enter every channel and every per-thread inbox. A subscriber on any
 * thread therefore sees ids strictly increasing, across all its channels, which is
 * what makes one Last-Event-ID enough to resume a multi-channel stream. */
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
  fc_channel_t *channel; /* channels outlive their events */
  const char *name;      /* SSE event name, "" when none; NUL-terminated */
  const char *data;      /* payload, NUL-terminated */
  const char *from;      /* publisher connection id, "" when none */
  uint32_t data_len;
  uint16_t name_len, from_len;
  bool is_json; /* data is a JSON text: history shows it as a value, not a string */
  _Atomic(fc_frame_t *) ws; /* the WebSocket frame, built once on first use */
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

/* An event as a publisher hands it in. Borrowed slices. */
typedef struct {
  fc_str_t name; /* may be empty */
  fc_str_t data;
  fc_str_t from; /* may be empty */
  bool is_json;
  /* 0 unless the store already gave them (it is then the only publisher, and
   * gives exactly what the hub would): id, ordinal, time in ms. */
  uint64_t seq, n;
  int64_t time_ms;
} fc_event_in_t;

/* Builds the SSE frame of `data` for event `seq` into `out`: an `id:` line, an
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

/* Fills a channel's history from storage the first time it is used after a
 * start: calls fc_hub_restore_event() for each event, oldest first. Runs with
 * the hub lock held. */
typedef void (*fc_hub_load_cb)(void *ud, fc_channel_t *ch, unsigned limit);

typedef struct {
  unsigned threads;   /* loop threads that hold subscribers */
  unsigned retention; /* events kept per channel, unless a rule says otherwise */
  const fc_hub_rule_t *rules;
  size_t nrules;
  fc_hub_load_cb load;
  void *load_ud;
  /* Called, from any thread, when `thread`'s inbox goes from empty to not empty;
   * the loop then calls fc_hub_drain() on that thread. */
  void (*notify)(unsigned thread, void *ud);
  void *notify_ud;
} fc_hub_opts_t;

fc_hub_t *fc_hub_new(const fc_hub_opts_t *opts);
/* Frees channels, history and queued inbox events. No thread may use the hub then. */
void fc_hub_free(fc_hub_t *hub);

/* True when `name` is a valid channel name: [A-Za-z0-9._:-]{1,128}. */
bool fc_channel_name_valid(const char *name, size_t len);
/* True when `name` is a valid event name: [A-Za-z0-9._:-]{1,128}. */
bool fc_event_name_valid(const char *name, size_t len);

/* Looks a channel up by name; creates it when `create`. Returns NULL when absent
 * (or the name is invalid). Channels live until fc_hub_free(). Any thread. */
fc_channel_t *fc_hub_channel(fc_hub_t *hub, const char *name, size_t len, bool create);
const char *fc_channel_name(const fc_channel_t *ch);

typedef struct {
  uint64_t first_seq, last_seq; /* ids given to the batch, consecutive */
  size_t subscribers;           /* subscribers of the channel when published */
} fc_publish_result_t;

/* Publishes `n` events to `ch` as one unit: they get consecutive ids, enter the
 * history together and are queued for every thread that has subscribers. Copies
 * the inputs. Any thread. */
void fc_hub_publish(fc_hub_t *hub, fc_channel_t *ch, const fc_event_in_t *in, size_t n,
                    fc_publish_result_t *res);

/* Where a new subscription starts. */
typedef struct {
  bool has_after;  /* resume: after `after` (a Last-Event-ID) */
  uint64_t after;
  unsigned replay; /* otherwise: the newest `replay` retained events */
} fc_resume_t;

/* A gap found while resuming one channel. */
typedef struct {
  fc_channel_t *channel;
  uint64_t lost;   /* events evicted between the resume point and the oldest retained */
  bool exact;      /* false: `lost` is a lower bound */
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
 * `links[i].channel` before calling) and fills `out` with what the subscriber
 * must be sent before live events, merged in id order. Atomic with respect to
 * publishes: no event is missed or given twice. Call on `thread`. */
void fc_hub_subscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t **links, size_t n,
                      const fc_resume_t *from, fc_backlog_t *out);
/* Removes a link; a no-op for a link that is not subscribed. Call on its thread. */
void fc_hub_unsubscribe(fc_hub_t *hub, unsigned thread, fc_sub_link_t *link);

/* Delivers what `thread`'s inbox holds to that thread's links. Call on `thread`. */
void fc_hub_drain(fc_hub_t *hub, unsigned thread);

/* Retained events of `ch` with id > `after`, oldest first, at most `limit`
 * (each referenced; dispose the backlog). */
void fc_hub_history(fc_hub_t *hub, fc_channel_t *ch, uint64_t after, size_t limit,
                    fc_backlog_t *out);

/* Drops a channel's retained history; ids keep increasing. */
void fc_hub_purge(fc_hub_t *hub, fc_channel_t *ch);

typedef struct {
  const char *name; /* valid until fc_hub_free() */
  size_t retained;
  uint64_t last_seq; /* 0 when the channel has no event yet */
  size_t subscribers;
} fc_channel_info_t;
/* A snapshot of every channel, sorted by name; free() the array. */
fc_channel_info_t *fc_hub_list(fc_hub_t *hub, size_t *n);

/* How many channels there are. */
size_t fc_hub_channel_count(fc_hub_t *hub);

/* The highest id given so far. */
uint64_t fc_hub_last_seq(fc_hub_t *hub);

/* True when `name` matches `pattern` ('*' matches any run, possibly empty). */
bool fc_glob_match(const char *pattern, const char *name);

/* Start-up: sets the id counter to continue after `last_seq`, and registers a
 * stored channel with its counters; its events load when it is first used. */
void fc_hub_restore_seq(fc_hub_t *hub, uint64_t last_seq);
void fc_hub_restore_channel(fc_hub_t *hub, const char *name, uint64_t first_seq, uint64_t last_seq,
                            uint64_t next_n, uint64_t stored);
/* Adds a stored event (seq, n and time set) to a channel being loaded. Only
 * from within the load callback. */
void fc_hub_restore_event(fc_channel_t *ch, const fc_event_in_t *ev);

/* Storage's private per-channel slot: the store's writer thread only. */
typedef struct {
  int64_t id;         /* row id */
  uint64_t id_group;  /* commit group that created the row: a rollback undoes it */
  uint64_t group;     /* commit group next_n belongs to */
  uint64_t next_n;    /* ordinal for the next event written in that group */
  uint64_t trimmed_n; /* events with smaller ordinals are trimmed */
  bool trim_listed;
} fc_channel_store_t;
fc_channel_store_t *fc_channel_store(fc_channel_t *ch);
/* The ordinal the channel's next event gets. */
uint64_t fc_channel_next_n(fc_hub_t *hub, fc_channel_t *ch);
/* Events the channel keeps, and its age limit in seconds (0: none). */
unsigned fc_channel_retention(const fc_channel_t *ch);
uint64_t fc_channel_max_age(const fc_channel_t *ch);

/* Drops retained events older than their channel's age limit; returns how
 * many. Any thread. */
size_t fc_hub_expire(fc_hub_t *hub, int64_t now_ms);

#endif
