/* `flowcast subscribe`: follows channels, reconnecting and resuming. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"

typedef struct {
  fc__follow_t follow;
  bool json;
  bool envelope;       /* unwrap {"channel","data","time"} data (a server answering ?envelope=1) */
  const char *channel; /* the only channel, for --json; NULL with several */
  uint64_t count;      /* events to print before exiting; 0: no limit */
  uint64_t printed;
} sub_t;

/* Prints one event; asks to stop after --count events. */
static bool on_event(void *ud, const fc_sse_event_t *ev) {
  sub_t *s = ud;
  bool gap = !strcmp(ev->event, "flowcast.gap"); /* a notice, not an event: --count leaves it out */
  if (s->json) {
    char *line = fc__event_json(ev, s->channel, s->envelope);
    printf("%s\n", line);
    free(line);
  } else if (gap) {
    fprintf(stderr, "flowcast subscribe: gap: %s\n", ev->data);
  } else {
    printf("%s\n", ev->data);
  }
  fflush(stdout);
  if (gap) return false;
  s->printed++;
  if (s->count && s->printed >= s->count) s->follow.done = true;
  return s->follow.done;
}

static void usage(void) {
  printf("Usage: flowcast subscribe CHANNEL... [--replay N] [--last-event-id ID] [--json] [--count N]\n"
         "                          [--retries N] [--url URL] [--token T]\n\n"
         "Prints each event's data, one per line, as it arrives. It starts with new events only;\n"
         "--replay N first prints up to N retained events, and --last-event-id ID every retained\n"
         "event after ID (then --replay is ignored).\n\n"
         "  --json            one JSON object per line: {\"channel\",\"id\",\"event\",\"data\",\"time\"};\n"
         "                    \"event\" is null for unnamed events, \"data\" the event's text (JSON data\n"
         "                    as compact JSON text), \"time\" its publish time (RFC 3339, UTC); the stream\n"
         "                    is asked for ?envelope=1, which names each event's channel and time\n"
         "  --count N         exit 0 after N events\n"
         "  --retries N       give up (exit 5) after N failed connection attempts in a row (default 0: never)\n\n"
         "It reconnects by itself when the stream drops: after the server's retry delay (3 s), doubled\n"
         "at each failed attempt up to 30 s, with random jitter, and resumes with Last-Event-ID after\n"
         "the last event printed, so nothing is lost or repeated while the server keeps it. A gap\n"
         "(events evicted meanwhile) is reported on standard error. It stops for good on 204, on 401\n"
         "or 403 (exit 3), on 404 (exit 4) and on another 4xx (exit 1).\n\n");
  fc_cli_exit_help(stdout);
}

/* Parses the options into `s` and the query. Returns -1 to go on, or an exit status. */
static int parse(int argc, char **argv, sub_t *s, fc_buf_t *query, const char **url, const char **token,
                 const char **last) {
  uint64_t replay = 0, retries = 0;
  int nch = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(), FC_EXIT_OK;
    if (!strcmp(a, "--last-event-id") && v) *last = v, i++;
    else if (!strcmp(a, "--json")) s->json = true;
    else if (!strcmp(a, "--count") && v) {
      if (fc__parse_count("subscribe", "--count", argv[++i], 1000000000, &s->count) < 0) return FC_EXIT_USAGE;
    } else if (!strcmp(a, "--replay") && v) {
      if (fc__parse_count("subscribe", "--replay", argv[++i], 1000000, &replay) < 0) return FC_EXIT_USAGE;
    } else if (!strcmp(a, "--retries") && v) {
      if (fc__parse_count("subscribe", "--retries", argv[++i], 1000000, &retries) < 0) return FC_EXIT_USAGE;
    } else if (!strcmp(a, "--url") && v) *url = v, i++;
    else if (!strcmp(a, "--token") && v) *token = v, i++;
    else if (a[0] == '-')
      return fprintf(stderr, "flowcast subscribe: unknown option or missing value '%s' (see --help)\n", a),
             FC_EXIT_USAGE;
    else if (!fc_cli_channel_valid(a)) return fc_cli_bad_channel("subscribe", a);
    else {
      fc_buf_puts(query, nch ? "&channel=" : "channel=");
      fc_url_escape(query, a);
      s->channel = nch++ ? NULL : a;
    }
  }
  if (!nch) return fprintf(stderr, "flowcast subscribe: name at least one channel (see --help)\n"), FC_EXIT_USAGE;
  if (nch > 64) return fprintf(stderr, "flowcast subscribe: at most 64 channels on one stream\n"), FC_EXIT_USAGE;
  if (*last && (!**last || strpbrk(*last, "\r\n"))) {
    fprintf(stderr, "flowcast subscribe: --last-event-id wants an event id (as printed by publish or --json)\n");
    return FC_EXIT_USAGE;
  }
  fc_buf_printf(query, "&replay=%llu", (unsigned long long)replay);
  s->follow.max_failures = (unsigned)retries;
  return -1;
}

int fc_cli_subscribe(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *last = NULL;
  sub_t s = {0};
  fc_buf_t query;
  fc_buf_init(&query);
  fc_buf_puts(&query, "/api/v1/sse?");
  int rc = parse(argc, argv, &s, &query, &url, &token, &last);
  if (rc < 0 && s.json) { /* the server names each event's channel and time */
    fc_buf_puts(&query, "&envelope=1");
    s.envelope = true;
  }
  fc__client_t o;
  if (rc < 0) rc = fc__client_init(&o, url, token, "subscribe");
  else if (rc == 0) rc = -2; /* --help */
  if (rc != 0) {
    fc_buf_dispose(&query);
    return rc == -2 ? FC_EXIT_OK : rc;
  }
  s.follow = (fc__follow_t){.cmd = "subscribe",
                            .client = &o,
                            .path = query.data,
                            .default_retry_ms = 3000,
                            .max_backoff_ms = 30000,
                            .max_failures = s.follow.max_failures};
  fc_sse_parser_init(&s.follow.parser, on_event, &s, last, 0);
  fc_buf_t body;
  fc_buf_init(&body);
  char err[256] = "";
  int status = fc__follow(&s.follow, &body, err, sizeof err);
  if (status == 200) {
    rc = FC_EXIT_OK;
  } else if (status == 204) {
    fprintf(stderr, "flowcast subscribe: the server ended the stream for good (204 No Content)\n");
    rc = FC_EXIT_OK;
  } else {
    rc = fc_cli_report("subscribe", status, &body, err, o.url_text);
    if (rc == FC_EXIT_OK) rc = FC_EXIT_ERROR;
  }
  fc_buf_dispose(&body);
  fc_buf_dispose(&query);
  fc_sse_parser_dispose(&s.follow.parser);
  return rc;
}
