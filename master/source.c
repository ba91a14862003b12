/*
 * source.c - the source interface, and its first two kinds: a JSONL file
 * and stdin; see source.h. Queues are in source_queue.c.
 *
 * A file is read from the committed cursor (a byte offset) on; stdin
 * cannot seek, so the lines before the cursor are read and skipped. The
 * acknowledgement of a file is the cursor itself, which the master commits
 * in the transaction that records a batch's last item.
 *
 * Every line read extends a running hash of the input (FNV-1a over each
 * line's length and, when it was within --max-line-bytes, its bytes); the
 * cursor carries the hash of what lies before it. That is what lets a
 * resumed stdin prove it is the same input. Its weakness: the bytes of a
 * line over the cap are not hashed, only its length, and a changed
 * --max-line-bytes can make a line that was hashed whole now over the cap
 * (or back), which reads as a changed input.
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
#define HASH_BASIS 1469598103934665603ULL /* FNV-1a: the empty input */
#define HASH_PRIME 1099511628211ULL

struct source {
    squeue *q;      /* a queue, or NULL for a file */
    int fd;         /* the file or stdin */
    int pollable;   /* a pipe or socket: poll it */
    int64_t size;   /* regular file size, or -1 */
    int64_t offset; /* the cursor it opened at */
    jsonl *rd;      /* line reader */
    uint64_t hash;  /* hash of the input read so far, 0 unknown */
    char err[512];  /* the last error */
};

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= HASH_PRIME;
    }
    return h;
}

/* The running hash after line ln (read with rc); unknown stays unknown. */
static uint64_t hash_line(uint64_t h, const jsonl_line *ln, fo_err rc)
{
    if (!h)
        return 0;
    int64_t span = ln->end_offset - ln->offset;
    h = hash_bytes(h, &span, sizeof span);
    if (rc == FO_OK)
        h = hash_bytes(h, ln->data, ln->len);
    return h ? h : 1; /* 0 means unknown */
}

static int is_blank_line(const jsonl_line *ln, fo_err rc)
{
    if (rc != FO_OK)
        return 0;
    for (size_t i = 0; i < ln->len; i++)
        if (ln->data[i] != ' ' && ln->data[i] != '\t' && ln->data[i] != '\r')
            return 0;
    return 1;
}

static void stdin_differs(char *err, size_t errlen, const char *input,
                          int64_t line)
{
    char what[300];
    if (strcmp(input, "-") == 0)
        snprintf(what, sizeof what, "the input on stdin");
    else
        snprintf(what, sizeof what, "--input %.200s", input);
    snprintf(err, errlen,
             "%s differs from the one this --out was started with (first "
             "difference near line %lld); use another --out",
             what, (long long)line);
}

/* Reads stdin or a pipe (blocking) from its start up to the cursor, checking
 * each mark the cursor passed, then (expect_end) to its end. Returns 0, or -1
 * with err. */
static int stdin_skip(source *s, const source_cfg *c, const store_cursor *cur,
                      char *err, size_t errlen)
{
    size_t nmarks = 0, mi = 0;
    const store_mark *marks = c->st ? store_input_marks(c->st, &nmarks) : NULL;
    int64_t good_line = 1;         /* lines before it are known the same */
    int64_t at = 0, next_line = 1; /* where the reader is */
    while (at < cur->offset) {
        jsonl_line ln;
        fo_err rc = jsonl_next(s->rd, &ln);
        if (rc == FO_EIO) {
            snprintf(err, errlen, "--input -: %s", strerror(errno));
            return -1;
        }
        if (rc == FO_EEOF || rc == FO_EAGAIN) {
            /* Shorter than what the job already read. */
            stdin_differs(err, errlen, c->input, next_line);
            return -1;
        }
        s->hash = hash_line(s->hash, &ln, rc);
        at = ln.end_offset;
        next_line = ln.line_no + 1;
        while (mi < nmarks && marks[mi].offset <= ln.end_offset) {
            if (marks[mi].offset < ln.end_offset || marks[mi].hash != s->hash) {
                stdin_differs(err, errlen, c->input, good_line);
                return -1;
            }
            good_line = marks[mi++].line_no;
        }
        if (ln.end_offset > cur->offset) {
            /* No line ends where the cursor is. */
            stdin_differs(err, errlen, c->input, good_line);
            return -1;
        }
    }
    if (cur->hash && cur->hash != s->hash) {
        stdin_differs(err, errlen, c->input, good_line);
        return -1;
    }
    /* A terminal is not the job's input piped again: do not wait for
     * someone to type the rest. */
    if (!c->expect_end || isatty(s->fd))
        return 0;
    for (;;) {
        jsonl_line ln;
        fo_err rc = jsonl_next(s->rd, &ln);
        if (rc == FO_EEOF || rc == FO_EAGAIN)
            return 0;
        if (rc == FO_EIO) {
            snprintf(err, errlen, "--input -: %s", strerror(errno));
            return -1;
        }
        if (!is_blank_line(&ln, rc)) {
            /* More items than the complete job had. */
            stdin_differs(err, errlen, c->input, ln.line_no);
            return -1;
        }
    }
}

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
    int is_stdin = strcmp(c->input, "-") == 0;
    if (is_stdin) {
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
    /* From the start the hash is known; from a cursor, it is the cursor's. */
    s->hash = cur->offset == 0 ? HASH_BASIS : cur->hash;
    struct stat sb;
    int regular = fstat(s->fd, &sb) == 0 && S_ISREG(sb.st_mode);
    if (regular)
        s->size = sb.st_size;
    if (regular && !is_stdin) {
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
        s->rd = jsonl_new(s->fd, (size_t)c->max_line_bytes, cur->offset,
                          cur->line_no);
        return s;
    }
    /* stdin (even a redirected file: its offset is not ours to trust) or
     * another pipe: read what earlier runs already read, and check it. */
    s->hash = HASH_BASIS;
    s->rd = jsonl_new(s->fd, (size_t)c->max_line_bytes, 0, 1);
    if (stdin_skip(s, c, cur, err, errlen) < 0)
        goto fail;
    if (!regular) {
        s->pollable = 1;
        int fl = fcntl(s->fd, F_GETFL);
        fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
    }
    return s;
fail:
    jsonl_destroy(&s->rd);
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
                        .end_offset = ln.end_offset,
                        .hash = s->hash = hash_line(s->hash, &ln, rc)};
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
