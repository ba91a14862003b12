/* batchlog.c - the --batches file; see batchlog.h. */
#include "fmacros.h"
#include "batchlog.h"
#include "log.h"
#include "record.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One write holds the lines of the batches one group commit completes. */
#define BATCHLOG_WRITE_MAX_BYTES ((size_t)1 << 31)

/* An earlier life's record: what the map needs of it. */
typedef struct batchlog_prev {
    size_t slot;     /* its id: prev_ids[slot] */
    uint8_t status;  /* item_status */
    uint8_t written; /* a queue message already in a written line */
} batchlog_prev;

/* Not an item_status: an item whose record could not be found. */
#define STATUS_UNKNOWN (-1)

void batchlog_init(batchlog *bl, const char *path)
{
    memset(bl, 0, sizeof *bl);
    bl->fd = -1;
    bl->path = path ? xstrdup(path) : NULL;
    bl->scan_from = -1;
    bl->min_batch = UINT64_MAX;
    hmap_init(&bl->status, sizeof(uint8_t));
    hmap_init(&bl->earlier, sizeof(batchlog_prev));
    hmap_init(&bl->first_off, sizeof(int64_t));
    buf_init(&bl->wbuf, BATCHLOG_WRITE_MAX_BYTES);
}

void batchlog_fini(batchlog *bl)
{
    /* hmap has no iterator: the ids live in an array of their own. */
    for (size_t i = 0; i < bl->nprev; i++)
        free(bl->prev_ids[i]);
    FO_FREE(&bl->prev_ids);
    bl->nprev = 0;
    hmap_fini(&bl->status);
    hmap_fini(&bl->earlier);
    hmap_fini(&bl->first_off);
    buf_fini(&bl->wbuf);
    /* A zeroed batchlog (its commit never initialised) has fd 0 and no
     * path: it owns no file. */
    if (bl->path && bl->fd >= 0)
        close(bl->fd);
    bl->fd = -1;
    FO_FREE(&bl->path);
}

int batchlog_on(const batchlog *bl)
{
    return bl->path != NULL;
}

fo_err batchlog_open(batchlog *bl, int64_t *good, int restart, char *err,
                     size_t errlen)
{
    bl->fd = open(bl->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (bl->fd < 0) {
        snprintf(err, errlen, "--batches: cannot open %s: %s", bl->path,
                 strerror(errno));
        return FO_EUSAGE;
    }
    /* The file may have just been created: make its name durable too, or
     * a power cut could lose lines the store counts. */
    char *dcopy = xstrdup(bl->path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dcopy);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    struct stat sb;
    if (fstat(bl->fd, &sb) != 0) {
        snprintf(err, errlen, "%s: fstat: %s", bl->path, strerror(errno));
        return FO_EIO;
    }
    if (sb.st_size < *good) {
        LOG_WARN("batches.short",
                 "%s is %lld bytes but %lld were committed (cut short or "
                 "replaced outside fanout); the lines of the batches it "
                 "lost are not written again",
                 bl->path, (long long)sb.st_size, (long long)*good);
        *good = sb.st_size;
    } else if (sb.st_size > *good) {
        if (restart)
            LOG_INFO("batches.restarted",
                     "%s starts over, as the job does from its first line "
                     "(results.jsonl was repaired or redriven)",
                     bl->path);
        else
            LOG_WARN("batches.repaired",
                     "%s: cut %lld bytes written after the last commit (a "
                     "crash mid-write); those batches get their line when they "
                     "complete",
                     bl->path, (long long)(sb.st_size - *good));
        if (ftruncate(bl->fd, *good) != 0 || fsync(bl->fd) != 0) {
            snprintf(err, errlen, "%s: truncate: %s", bl->path,
                     strerror(errno));
            return FO_EIO;
        }
    }
    return FO_OK;
}

/* The key of an earlier record: "l:LINE" for a file, "m:ID" for a queue. */
static size_t earlier_key(char *k, size_t cap, const char *msg_id, int64_t line)
{
    int n = msg_id ? snprintf(k, cap, "m:%s", msg_id)
                   : snprintf(k, cap, "l:%" PRId64, line);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void batchlog_remember(batchlog *bl, const json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "id"));
    const char *st = json_string_value(json_object_get(rec, "status"));
    const char *mid = json_string_value(json_object_get(rec, "message_id"));
    json_t *lj = json_object_get(rec, "line");
    if (!id || !st || (!mid && !json_is_integer(lj)))
        return;
    item_status s = ITEM_INVALID;
    if (!strcmp(st, item_status_name(ITEM_OK)))
        s = ITEM_OK;
    else if (!strcmp(st, item_status_name(ITEM_FAILED)))
        s = ITEM_FAILED;
    else if (!strcmp(st, item_status_name(ITEM_CANCELLED)))
        s = ITEM_CANCELLED;
    char k[600];
    size_t kl = earlier_key(k, sizeof k, mid, mid ? 0 : json_integer_value(lj));
    batchlog_prev *old = hmap_get(&bl->earlier, k, kl);
    if (old) {
        free(bl->prev_ids[old->slot]);
        bl->prev_ids[old->slot] = xstrdup(id);
        old->status = (uint8_t)s;
        return;
    }
    bl->prev_ids =
        xrealloc(bl->prev_ids, (bl->nprev + 1) * sizeof *bl->prev_ids);
    bl->prev_ids[bl->nprev] = xstrdup(id);
    batchlog_prev p = {bl->nprev++, (uint8_t)s, 0};
    json_t *bj = json_object_get(rec, "batch");
    if (mid && json_is_integer(bj) &&
        (uint64_t)json_integer_value(bj) < bl->min_batch)
        bl->min_batch = (uint64_t)json_integer_value(bj);
    hmap_put(&bl->earlier, k, kl, &p);
}

void batchlog_forget(batchlog *bl, const char *msg_id)
{
    if (!hmap_len(&bl->earlier))
        return;
    char k[600];
    size_t kl = earlier_key(k, sizeof k, msg_id, 0);
    batchlog_prev *p = hmap_get(&bl->earlier, k, kl);
    if (!p)
        return;
    FO_FREE(&bl->prev_ids[p->slot]);
    hmap_del(&bl->earlier, k, kl);
}

void batchlog_set_scan_from(batchlog *bl, int64_t off)
{
    bl->scan_from = off;
}

static size_t ref_key(char k[12], uint64_t batch, uint32_t idx)
{
    memcpy(k, &batch, 8);
    memcpy(k + 8, &idx, 4);
    return 12;
}

void batchlog_note(batchlog *bl, proto_ref ref, item_status st)
{
    if (!bl->path)
        return;
    char k[12];
    uint8_t v = (uint8_t)st;
    hmap_put(&bl->status, k, ref_key(k, ref.batch, ref.idx), &v);
}

void batchlog_note_offset(batchlog *bl, uint64_t no, int64_t off)
{
    if (!bl->path || hmap_get(&bl->first_off, (const char *)&no, sizeof no))
        return;
    hmap_put(&bl->first_off, (const char *)&no, sizeof no, &off);
}

/* Finds the id and status of item i of mb, and forgets them. Returns 0
 * to list the item, 1 to leave it out (a queue message that came back
 * after an earlier life wrote it in a batch's line: its record is before
 * the scan, or a line read back lists it). */
static int take_item(batchlog *bl, const mbatch *mb, uint32_t i, int queue,
                     char **id, int *st)
{
    const mitem *it = &mb->items[i];
    char k[600];
    size_t kl = ref_key(k, mb->no, i);
    const uint8_t *s = hmap_get(&bl->status, k, kl);
    if (s) {
        *id = xstrdup(it->key ? it->key : "");
        *st = *s;
        hmap_del(&bl->status, k, kl);
        return 0;
    }
    /* Recorded by an earlier life of the master. */
    kl = earlier_key(k, sizeof k, queue ? it->msg_id : NULL, it->line_no);
    batchlog_prev *p = hmap_get(&bl->earlier, k, kl);
    if (!p && queue) {
        /* A message recorded before batches_scan: its batch was complete
         * then, so an earlier line lists it; it came back only because
         * its acknowledgement did not reach the queue. */
        *id = NULL;
        return 1;
    }
    if (!p) {
        bl->n_unknown++;
        LOG_WARN("batches.unknown_item",
                 "batch %" PRIu64 " item %u (%.80s): its record was not "
                 "found; written as unknown",
                 mb->no, i, it->key ? it->key : "?");
        *id = xstrdup(it->key ? it->key : "");
        *st = STATUS_UNKNOWN;
        return 0;
    }
    int omit = p->written;
    /* p's slot holds its id while p is in the map (prev_ids is freed only
     * once the map is empty). */
    *id = bl->prev_ids ? bl->prev_ids[p->slot] : NULL;
    if (!*id)
        *id = xstrdup(it->key ? it->key : "");
    else
        bl->prev_ids[p->slot] = NULL;
    *st = p->status;
    hmap_del(&bl->earlier, k, kl);
    if (!hmap_len(&bl->earlier)) {
        /* All used: the array goes too. */
        FO_FREE(&bl->prev_ids);
        bl->nprev = 0;
    }
    return omit;
}

void batchlog_add_batch(batchlog *bl, const mbatch *mb, int queue)
{
    json_t *o = json_object();
    json_object_set_new(o, "batch", json_integer((json_int_t)mb->no));
    json_t *msgs = queue ? json_array() : NULL;
    if (queue) {
        json_object_set_new(o, "messages", msgs);
    } else if (mb->n) {
        json_object_set_new(o, "first_line",
                            json_integer(mb->items[0].line_no));
        json_object_set_new(o, "last_line",
                            json_integer(mb->items[mb->n - 1].line_no));
    }
    json_t *items = json_object();
    for (uint32_t i = 0; i < mb->n; i++) {
        char *id;
        int st;
        if (take_item(bl, mb, i, queue, &id, &st) == 0) {
            const char *name = st == STATUS_UNKNOWN
                                   ? "unknown"
                                   : item_status_name((item_status)st);
            json_object_set_new(items, id, json_string(name));
            if (msgs && mb->items[i].msg_id)
                json_array_append_new(msgs, json_string(mb->items[i].msg_id));
        }
        free(id);
    }
    json_object_set_new(o, "items", items);
    hmap_del(&bl->first_off, (const char *)&mb->no, sizeof mb->no);
    size_t len;
    char *line = record_json_line(o, JSON_COMPACT | JSON_PRESERVE_ORDER, &len);
    json_decref(o);
    if (buf_append(&bl->wbuf, line, len) != FO_OK)
        bl->overflow = 1; /* two GiB of lines in one commit */
    free(line);
}

/* Marks the remembered messages listed in one line of the file; returns 1
 * when the line's batch is below every remembered record's (stop). */
static int mark_line(batchlog *bl, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    json_t *bj = json_object_get(o, "batch");
    int stop =
        json_is_integer(bj) && (uint64_t)json_integer_value(bj) < bl->min_batch;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(o, "messages"), i, m)
    {
        const char *id = json_string_value(m);
        char k[600];
        size_t kl = id ? earlier_key(k, sizeof k, id, 0) : 0;
        batchlog_prev *p = kl ? hmap_get(&bl->earlier, k, kl) : NULL;
        if (p)
            p->written = 1;
    }
    json_decref(o);
    return stop;
}

fo_err batchlog_mark_written(batchlog *bl, int64_t size, char *err,
                             size_t errlen)
{
    if (!hmap_len(&bl->earlier) || bl->min_batch == UINT64_MAX)
        return FO_OK;
    /* Lines are in batch order: read back from the end until a batch
     * below every remembered record's. tail holds [pos, pos + tlen) of
     * the file, whose lines from the first whole one on are still to do. */
    char *tail = NULL;
    size_t tlen = 0;
    int64_t pos = size;
    fo_err rc = FO_OK;
    int stop = 0;
    while (!stop && pos > 0) {
        size_t chunk = pos > 65536 ? 65536 : (size_t)pos;
        pos -= (int64_t)chunk;
        char *nb = xmalloc(chunk + tlen);
        if (pread(bl->fd, nb, chunk, (off_t)pos) != (ssize_t)chunk) {
            snprintf(err, errlen, "reading %s: %s", bl->path, strerror(errno));
            free(nb);
            rc = FO_EIO;
            break;
        }
        if (tlen)
            memcpy(nb + chunk, tail, tlen);
        free(tail);
        tail = nb;
        tlen += chunk;
        /* Whole lines end at end; one starts after a newline, or at the
         * file's start. */
        size_t end = tlen;
        while (end > 0 && !stop) {
            size_t nl = end - 1; /* the line's own newline */
            while (nl > 0 && tail[nl - 1] != '\n')
                nl--;
            if (nl == 0 && pos > 0)
                break; /* its start is in the next chunk back */
            stop = mark_line(bl, tail + nl, end - 1 - nl);
            end = nl;
        }
        tlen = end;
    }
    free(tail);
    return rc;
}

static void min_first(const batchlog *bl, const mbatch *mb, int64_t *min)
{
    const int64_t *off =
        hmap_get(&bl->first_off, (const char *)&mb->no, sizeof mb->no);
    if (off && *off < *min)
        *min = *off;
}

int64_t batchlog_scan_from(const batchlog *bl, const batches *b, size_t popped,
                           int64_t end)
{
    int64_t min = end;
    /* Earlier records still to be used start where the last scan did. */
    if (hmap_len(&bl->earlier) && bl->scan_from >= 0 && bl->scan_from < min)
        min = bl->scan_from;
    for (size_t i = popped; i < batches_len(b); i++)
        min_first(bl, batches_at(b, i), &min);
    min_first(bl, &b->bld, &min);
    return min;
}

fo_err batchlog_write(batchlog *bl, int64_t *size, char *err, size_t errlen)
{
    if (bl->overflow) {
        snprintf(err, errlen, "%s: one commit's lines are over %zu bytes",
                 bl->path, bl->wbuf.max);
        return FO_EIO;
    }
    size_t off = 0;
    while (off < bl->wbuf.len) {
        ssize_t w = pwrite(bl->fd, bl->wbuf.data + off, bl->wbuf.len - off,
                           (off_t)(*size + (int64_t)off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen,
                     "writing %s: %s; nothing past the last commit is "
                     "lost: re-run the same command when fixed",
                     bl->path, w < 0 ? strerror(errno) : "no space written");
            return FO_EIO;
        }
        off += (size_t)w;
    }
    if (bl->wbuf.len && fdatasync(bl->fd) != 0) {
        snprintf(err, errlen, "fsync %s: %s", bl->path, strerror(errno));
        return FO_EIO;
    }
    *size += (int64_t)bl->wbuf.len;
    buf_reset(&bl->wbuf);
    return FO_OK;
}
