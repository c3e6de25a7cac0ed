/* fcload SSE parsing: a subscriber's event stream, line by line, into deliveries. */
#include "fcload.h"

#include <string.h>

/* End of an SSE event (blank line): account for it, reset event state. */
static void sse_dispatch(struct sub *s, uint64_t now)
{
    if (s->flags & SF_EV_DATA) {
        if (s->flags & SF_EV_SEQ)
            record_delivery(s, s->ev_seq, s->ev_ts, now);
        else
            g.foreign++;
    }
    s->flags &= (uint8_t)~(SF_EV_DATA | SF_EV_SEQ | SF_EV_ID);
}

/* Handles one SSE line (field, comment, or blank line ending an event). */
static void sse_line(struct sub *s, const char *line, size_t len, uint64_t now)
{
    if (len == 0) {
        sse_dispatch(s, now);
        return;
    }
    if (line[0] == ':') {
        g.comments++;
        return;
    }
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t val_len = (size_t)(line + len - val);
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        s->flags |= SF_EV_DATA;
        if (find_number(val, val_len, "fcseq", &s->ev_seq) &&
            find_number(val, val_len, "fcts", &s->ev_ts))
            s->flags |= SF_EV_SEQ;
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
        if (parse_event_id(val, val_len, s->ev_id))
            s->flags |= SF_EV_ID;
    } else if (name_len == 5 && memcmp(line, "retry", 5) == 0) {
        g.retry_lines++;
    }
    /* "event" and unknown fields are ignored */
}

/* Feeds decoded body bytes to the SSE parser. */
void sse_feed(struct sub *s, const char *p, size_t n, uint64_t now)
{
    if (n > 0 && s->state == SUB_WAIT_BODY)
        sub_ready(s);
    while (n > 0 && s->state == SUB_READY) {
        const char *line;
        size_t len;
        int r = take_line(&s->carry, &p, &n, &line, &len);
        if (r < 0) {
            sub_fail(s, "sub: SSE line too long");
            return;
        }
        if (r == 0)
            return;
        sse_line(s, line, len, now);
    }
}
