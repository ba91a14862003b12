/* jsonl.c - capped streaming line reader; see jsonl.h. */
#include "fmacros.h"
#include "jsonl.h"
#include "util.h"

#include <errno.h>
#include <unistd.h>

#define JSONL_CHUNK_BYTES 65536

struct jsonl {
    int fd;             /* the source */
    char *buf;          /* buffered bytes [start, end) are unread */
    size_t cap;         /* bytes allocated for buf */
    size_t start, end;  /* unread window */
    size_t max_line;    /* cap on a stored line */
    int64_t offset;     /* source offset of buf[start] */
    int64_t line_no;    /* number of the next line */
    int skipping;       /* inside an overlong line: discard to newline */
    size_t skipped;     /* bytes of the overlong line seen so far */
    int64_t skip_start; /* offset where the overlong line began */
    int eof;            /* read() returned 0 */
};

jsonl *jsonl_new(int fd, size_t max_line, int64_t start_offset,
                 int64_t first_line_no)
{
    jsonl *r = xcalloc(1, sizeof *r);
    r->fd = fd;
    r->max_line = max_line;
    r->cap = max_line + JSONL_CHUNK_BYTES + 1;
    r->buf = xmalloc(r->cap);
    r->offset = start_offset;
    r->line_no = first_line_no;
    return r;
}

void jsonl_destroy(jsonl **rp)
{
    if (!*rp)
        return;
    free((*rp)->buf);
    FO_FREE(rp);
}

/* Reads more bytes; returns >0 bytes read, 0 at EOF, -1 with errno. */
static ssize_t fill(jsonl *r)
{
    if (r->start > 0 && r->start == r->end) {
        r->start = r->end = 0;
    } else if (r->start > 0 && r->cap - r->end < JSONL_CHUNK_BYTES) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    size_t room = r->cap - r->end;
    if (room > JSONL_CHUNK_BYTES)
        room = JSONL_CHUNK_BYTES;
    ssize_t n;
    do {
        n = read(r->fd, r->buf + r->end, room);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        r->end += (size_t)n;
    if (n == 0)
        r->eof = 1;
    return n;
}

fo_err jsonl_next(jsonl *r, jsonl_line *out)
{
    for (;;) {
        char *base = r->buf + r->start;
        size_t avail = r->end - r->start;
        char *nl = avail ? memchr(base, '\n', avail) : NULL;
        if (r->skipping) {
            size_t used = nl ? (size_t)(nl - base) + 1 : avail;
            r->skipped += used;
            r->start += used;
            r->offset += (int64_t)used;
            if (nl || (r->eof && avail == 0)) {
                r->skipping = 0;
                out->data = NULL;
                out->len = r->skipped - (nl ? 1 : 0);
                out->line_no = r->line_no++;
                out->offset = r->skip_start;
                out->end_offset = r->offset;
                return FO_ETOOBIG;
            }
        } else if (nl || (r->eof && avail > 0)) {
            size_t len = nl ? (size_t)(nl - base) : avail;
            size_t used = nl ? len + 1 : len;
            if (len > r->max_line) {
                /* Found whole in the buffer but still over the cap. */
                r->skipping = 1;
                r->skipped = 0;
                r->skip_start = r->offset;
                continue;
            }
            out->data = base;
            out->len = len;
            out->line_no = r->line_no++;
            out->offset = r->offset;
            r->start += used;
            r->offset += (int64_t)used;
            out->end_offset = r->offset;
            return FO_OK;
        } else if (avail > r->max_line) {
            r->skipping = 1;
            r->skipped = 0;
            r->skip_start = r->offset;
            continue;
        }
        if (r->eof)
            return FO_EEOF;
        ssize_t n = fill(r);
        if (n < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? FO_EAGAIN
                                                             : FO_EIO;
    }
}
