/* fcload helpers: diagnostics, error counts, line buffers, chunked decoding, small parsers. */
#include "fcload.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints a progress / diagnostic line on stderr unless --quiet. */
void note(const char *fmt, ...)
{
    if (g.opt.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fcload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double ns_to_s(uint64_t ns) { return (double)ns / 1e9; }

double elapsed_s(uint64_t from, uint64_t to)
{
    return (from && to > from) ? ns_to_s(to - from) : 0.0;
}

/* Counts one occurrence of an error kind, e.g. "sub connect: ECONNREFUSED".
 * Kinds are kept in a small table; past MAX_ERROR_KINDS they go to "other". */
void count_error(const char *fmt, ...)
{
    char name[sizeof g.errs[0].name];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (uint32_t i = 0; i < g.nerrs; i++) {
        if (strcmp(g.errs[i].name, name) == 0) {
            g.errs[i].count++;
            return;
        }
    }
    if (g.nerrs < MAX_ERROR_KINDS - 1) {
        snprintf(g.errs[g.nerrs].name, sizeof g.errs[0].name, "%s", name);
        g.errs[g.nerrs++].count = 1;
        return;
    }
    /* The last slot counts every kind past the others, under its own name. */
    if (g.nerrs == MAX_ERROR_KINDS - 1) {
        snprintf(g.errs[g.nerrs].name, sizeof g.errs[0].name, "other kinds");
        g.errs[g.nerrs++].count = 0;
    }
    g.errs[MAX_ERROR_KINDS - 1].count++;
}

/* Appends len bytes to a line buffer, growing it up to MAX_LINE.
 * Returns 0, or -1 when the line is too long or memory runs out. */
int lb_append(struct linebuf *lb, const char *p, size_t len)
{
    if (len == 0)
        return 0;
    if ((size_t)lb->len + len > MAX_LINE)
        return -1;
    if (lb->len + len > lb->cap) {
        uint32_t cap = lb->cap ? lb->cap : 64;
        while (cap < lb->len + len)
            cap *= 2;
        char *d = realloc(lb->data, cap);
        if (!d)
            return -1;
        lb->data = d;
        lb->cap = cap;
    }
    memcpy(lb->data + lb->len, p, len);
    lb->len += (uint32_t)len;
    return 0;
}

void lb_free(struct linebuf *lb)
{
    free(lb->data);
    lb->data = NULL;
    lb->len = lb->cap = 0;
}

/*
 * Takes the next complete line from the input (*p, *n), joined with whatever
 * partial line the buffer carried over from earlier input.
 * Returns 1 and sets (*line, *line_len) (without "\n" or "\r\n") and advances
 * the input past the newline; the line stays valid until the next call.
 * Returns 0 when the input holds no newline: it is all kept in the buffer.
 * Returns -1 when the line exceeds MAX_LINE.
 */
int take_line(struct linebuf *lb, const char **p, size_t *n,
                     const char **line, size_t *line_len)
{
    const char *nl = memchr(*p, '\n', *n);
    if (!nl) {
        if (lb_append(lb, *p, *n) < 0)
            return -1;
        *p += *n;
        *n = 0;
        return 0;
    }
    size_t take = (size_t)(nl - *p);
    if (lb->len == 0) {
        *line = *p;
        *line_len = take;
    } else {
        if (lb_append(lb, *p, take) < 0)
            return -1;
        *line = lb->data;
        *line_len = lb->len;
        lb->len = 0; /* content stays readable until the next append */
    }
    *p = nl + 1;
    *n -= take + 1;
    if (*line_len > 0 && (*line)[*line_len - 1] == '\r')
        (*line_len)--;
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Feeds one framing byte (anything but chunk payload) to the decoder.
 * Returns 0 to go on, 2 at the final zero-size chunk, -1 on bad framing. */
static int dechunk_byte(struct dechunk *dc, char c)
{
    switch (dc->state) {
    case CH_SIZE:
        if (hexval(c) >= 0) {
            if (++dc->digits > 15)
                return -1;
            dc->left = dc->left * 16 + (uint64_t)hexval(c);
            return 0;
        }
        if (dc->digits == 0)
            return -1;
        if (c != '\n') {
            dc->state = CH_EXT; /* ";ext" or "\r": skip to the newline */
            return 0;
        }
        break;
    case CH_EXT:
        if (c != '\n')
            return 0;
        break;
    case CH_DATA_CR:
        if (c == '\r') {
            dc->state = CH_DATA_LF;
            return 0;
        }
        if (c != '\n')
            return -1;
        dc->state = CH_SIZE;
        dc->digits = 0;
        return 0;
    case CH_DATA_LF:
        if (c != '\n')
            return -1;
        dc->state = CH_SIZE;
        dc->digits = 0;
        return 0;
    default:
        return 2;
    }
    /* end of a size line */
    if (dc->left == 0) {
        dc->state = CH_END;
        return 2;
    }
    dc->state = CH_DATA;
    return 0;
}

/*
 * Consumes chunked framing from (*p, *n) and yields the next run of payload.
 * Returns 1 with (*run, *run_len) set, 0 when the input ran out, 2 at the end
 * of the body (zero-size chunk), -1 on malformed framing.
 */
int dechunk_next(struct dechunk *dc, const char **p, size_t *n,
                        const char **run, size_t *run_len)
{
    while (*n > 0) {
        if (dc->state == CH_DATA) {
            size_t take = *n < dc->left ? *n : (size_t)dc->left;
            *run = *p;
            *run_len = take;
            *p += take;
            *n -= take;
            dc->left -= take;
            if (dc->left == 0)
                dc->state = CH_DATA_CR;
            return 1;
        }
        char c = **p;
        (*p)++;
        (*n)--;
        int r = dechunk_byte(dc, c);
        if (r != 0)
            return r;
    }
    return 0;
}

/*
 * Finds `key` in s[0..n) and reads the unsigned integer after it, skipping
 * up to 6 quote, backslash, colon or space characters, so it works on plain
 * JSON ("fcseq":12) and on JSON escaped inside a string (\"fcseq\":12).
 */
bool find_number(const char *s, size_t n, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    const char *k = memmem(s, n, key, klen);
    if (!k)
        return false;
    const char *p = k + klen, *end = s + n;
    for (int i = 0; i < 6 && p < end && *p && strchr("\"\\: ", *p); i++)
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    uint64_t v = 0;
    for (int digits = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        if (++digits > 19)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

/* Parses an HTTP/1.x status line ("HTTP/1.1 200 OK"), which is not
 * NUL-terminated. Returns the status code, or -1 if malformed. */
int parse_status_line(const char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ')
        return -1;
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return -1;
        status = status * 10 + (line[i] - '0');
    }
    return (len == 12 || line[12] == ' ') ? status : -1;
}

/* Parses an SSE id of the form "123" or "123:4" (Nchan: "time:tag", also
 * "time:[tag],..."). Returns false for anything else. */
bool parse_event_id(const char *s, size_t n, uint64_t id[2])
{
    size_t i = 0;
    id[0] = id[1] = 0;
    if (n == 0 || !isdigit((unsigned char)s[0]))
        return false;
    for (; i < n && isdigit((unsigned char)s[i]) && i < 19; i++)
        id[0] = id[0] * 10 + (uint64_t)(s[i] - '0');
    if (i == n)
        return true;
    if (s[i] != ':')
        return false;
    i++;
    if (i < n && s[i] == '[')
        i++;
    size_t start = i;
    for (; i < n && isdigit((unsigned char)s[i]) && i - start < 19; i++)
        id[1] = id[1] * 10 + (uint64_t)(s[i] - '0');
    return i > start;
}
