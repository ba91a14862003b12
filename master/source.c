/*
 * source.c - the source interface, and its first two kinds: a JSONL file
 * and stdin; see source.h. Queues are in source_queue.c.
 *
 * A file is read from the committed cursor (a byte offset) on; stdin
 * cannot seek, so the bytes before the cursor are read and skipped. The
 * acknowledgement of a file is the cursor itself, which the master commits
 * in the transaction that records a batch's last item.
 */
#include "fmacros.h"
#include "source.h"
#include "jsonl.h"
#include "source_queue.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COUNT_LINES_MAX_BYTES (256LL << 20)

struct source {
    squeue *q;      /* a queue, or NULL for a file */
    int fd;         /* the file or stdin */
    int pollable;   /* a pipe or socket: poll it */
    int64_t size;   /* regular file size, or -1 */
    int64_t offset; /* the cursor it opened at */
    jsonl *rd;      /* line reader */
    char err[512];  /* the last error */
};

source *source_open(const source_cfg *c, const store_cursor *cur, char *err,
                    size_t errlen, int *code)
{
    source *s = xcalloc(1, sizeof *s);
    s->fd = -1;
    s->size = -1;
    s->offset = cur->offset;
    if (queue_is_url(c->input)) {
        s->q = squeue_open(c, err, errlen, code);
        if (!s->q) {
            free(s);
            return NULL;
        }
        return s;
    }
    *code = 2; /* usage */
    if (strcmp(c->input, "-") == 0) {
        s->fd = STDIN_FILENO;
    } else {
        s->fd = open(c->input, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0) {
            /* A mistyped queue URL ("rediss://:pw@host/s") lands here as
             * a file name: never echo its password. */
            char shown[512];
            snprintf(err, errlen, "--input %s: %s",
                     util_redact_url(c->input, shown, sizeof shown),
                     strerror(errno));
            goto fail;
        }
    }
    struct stat sb;
    if (fstat(s->fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        s->size = sb.st_size;
        if (sb.st_size < cur->offset) {
            snprintf(err, errlen,
                     "--input %s is %lld bytes, but the job had already "
                     "read %lld: the input changed; use a new --out to "
                     "start over",
                     c->input, (long long)sb.st_size, (long long)cur->offset);
            goto fail;
        }
        if (lseek(s->fd, cur->offset, SEEK_SET) < 0) {
            snprintf(err, errlen, "--input %s: seek: %s", c->input,
                     strerror(errno));
            *code = 3;
            goto fail;
        }
    } else {
        /* A pipe cannot seek: skip what earlier runs already read. */
        char buf[1 << 16];
        int64_t left = cur->offset;
        while (left > 0) {
            ssize_t r =
                read(s->fd, buf,
                     left < (int64_t)sizeof buf ? (size_t)left : sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                snprintf(err, errlen,
                         "--input -: ended before the resume point "
                         "(byte %lld)",
                         (long long)cur->offset);
                goto fail;
            }
            left -= r;
        }
        s->pollable = 1;
        int fl = fcntl(s->fd, F_GETFL);
        fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
    }
    s->rd =
        jsonl_new(s->fd, (size_t)c->max_line_bytes, cur->offset, cur->line_no);
    return s;
fail:
    if (s->fd > STDIN_FILENO)
        close(s->fd);
    free(s);
    return NULL;
}

void source_close(source **sp, int64_t wait_ms)
{
    source *s = *sp;
    if (!s)
        return;
    if (s->q)
        squeue_close(&s->q, wait_ms);
    jsonl_destroy(&s->rd);
    if (s->fd > STDIN_FILENO)
        close(s->fd);
    FO_FREE(sp);
}

void source_drain(source *s, int64_t wait_ms)
{
    if (s->q)
        squeue_drain(s->q, wait_ms);
}

int source_next(source *s, int64_t want, source_item *it, int64_t now)
{
    if (s->q)
        return squeue_next(s->q, want, it, now);
    jsonl_line ln;
    fo_err rc = jsonl_next(s->rd, &ln);
    if (rc == FO_EAGAIN)
        return SOURCE_AGAIN;
    if (rc == FO_EEOF)
        return SOURCE_EOF;
    if (rc == FO_EIO) {
        snprintf(s->err, sizeof s->err, "%s", strerror(errno));
        return SOURCE_ERROR;
    }
    *it = (source_item){.data = ln.data,
                        .len = ln.len,
                        .rc = rc,
                        .line_no = ln.line_no,
                        .end_offset = ln.end_offset};
    return SOURCE_ITEM;
}

const char *source_error(const source *s)
{
    return s->q ? squeue_error(s->q) : s->err;
}

int source_is_queue(const source *s)
{
    return s->q != NULL;
}

int source_pollable(source *s, void **socket, int *fd)
{
    if (s->q) {
        *socket = squeue_socket(s->q);
        *fd = -1;
        return 1;
    }
    if (!s->pollable)
        return 0;
    *socket = NULL;
    *fd = s->fd;
    return 1;
}

void source_tick(source *s, int64_t now, int holding)
{
    if (s->q)
        squeue_tick(s->q, now, holding);
}

void source_ack(source *s, const uint64_t *handles, size_t n)
{
    if (s->q)
        squeue_ack(s->q, handles, n);
}

void source_release(source *s, uint64_t handle)
{
    if (s->q)
        squeue_release(s->q, handle);
}

char **source_take_acked(source *s, size_t *n)
{
    *n = 0;
    return s->q ? squeue_take_acked(s->q, n) : NULL;
}

int64_t source_size(const source *s)
{
    return s->size;
}

int64_t source_count_rest(source *s)
{
    if (s->size < 0 || s->size > COUNT_LINES_MAX_BYTES)
        return -1;
    char buf[1 << 16];
    int64_t n = 0, off = s->offset;
    int nonempty = 0;
    while (off < s->size) {
        ssize_t r = pread(s->fd, buf, sizeof buf, off);
        if (r <= 0)
            return -1;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n') {
                n += nonempty;
                nonempty = 0;
            } else if (buf[i] != ' ' && buf[i] != '\r' && buf[i] != '\t') {
                nonempty = 1;
            }
        }
        off += r;
    }
    return n + nonempty;
}
