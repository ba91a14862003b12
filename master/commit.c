/*
 * commit.c - group commit and results.jsonl; see commit.h.
 *
 * results.jsonl is written before the transaction that counts it commits,
 * and fsynced: after a crash the state store says how many bytes are good,
 * and anything past that is cut off on the next start.
 */
#include "fmacros.h"
#include "commit.h"
#include "clock.h"
#include "jsonl.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const double commit_hist_bounds[COMMIT_HIST_BUCKETS - 1] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};

void commit_init(commit *c, store *st, const char *out, int64_t now)
{
    memset(c, 0, sizeof *c);
    c->st = st;
    c->out = out;
    c->state = *store_get_state(st);
    c->active_base_ms = c->state.totals.active_ms;
    c->run_start_ns = now;
    c->results_fd = -1;
    batchlog_init(&c->bl, NULL);
    /* One flush writes at most COMMIT_MAX_ROWS records plus what arrived
     * in the same turn; records are capped by the response cap. */
    buf_init(&c->wbuf, (size_t)1 << 31);
}

void commit_fini(commit *c)
{
    for (size_t i = 0; i < c->len; i++)
        free(c->cb[i].line);
    FO_FREE(&c->cb);
    c->len = c->cap = 0;
    for (size_t i = 0; i < c->nforget; i++)
        free(c->forget[i]);
    FO_FREE(&c->forget);
    c->nforget = 0;
    if (c->results_fd >= 0)
        close(c->results_fd);
    c->results_fd = -1;
    buf_fini(&c->wbuf);
    batchlog_fini(&c->bl);
}

void commit_set_batches(commit *c, const char *path)
{
    batchlog_fini(&c->bl);
    batchlog_init(&c->bl, path);
}

void commit_set_source(commit *c, source *src, int queue)
{
    c->src = src;
    c->queue = queue;
}

/* ---- results.jsonl at start ----------------------------------------- */

/* Rewrites results.jsonl from a scan of itself, keeping every whole,
 * parseable record once (and, with redrive, dropping failed ones), then
 * restarts the job from the first input line in repair mode: lines whose
 * record is present are skipped, the rest run. Used when the file is
 * shorter than what was committed (cut short or replaced outside fanout)
 * and for --redrive. Memory stays O(1): the present set lives in the
 * store. */
static fo_err repair_results(commit *c, int redrive, size_t line_cap, char *err,
                             size_t errlen)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/results.jsonl", c->out);
    snprintf(tmp, sizeof tmp, "%s/results.jsonl.repair", c->out);
    int in = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int outfd =
        open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (in < 0 || outfd < 0) {
        snprintf(err, errlen, "repairing %s: %s", path, strerror(errno));
        if (in >= 0)
            close(in);
        if (outfd >= 0)
            close(outfd);
        return FO_EIO;
    }
    jsonl *r = jsonl_new(in, line_cap, 0, 1);
    store_state ns = c->state;
    memset(&ns.totals, 0, sizeof ns.totals);
    ns.totals.active_ms = c->state.totals.active_ms;
    ns.cursor = (store_cursor){0, 1, 0, 0};
    ns.finished = 0;
    int64_t kept = 0, dropped = 0, redriven = 0, size = 0;
    fo_err rc = FO_EIO;
    if (store_repair_begin(c->st, err, errlen)) {
        rc = FO_ESTORE;
        goto out;
    }
    for (;;) {
        jsonl_line ln;
        fo_err e = jsonl_next(r, &ln);
        if (e == FO_EEOF)
            break;
        if (e == FO_EIO) {
            snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
            goto out;
        }
        /* Torn (no newline), overlong or unparseable: its item runs again. */
        if (e != FO_OK || ln.end_offset - ln.offset == (int64_t)ln.len) {
            dropped++;
            continue;
        }
        json_t *o = json_loadb(ln.data, ln.len, 0, NULL);
        json_t *lj = json_object_get(o, "line");
        const char *st = json_string_value(json_object_get(o, "status"));
        if (!json_is_integer(lj) || !st ||
            store_present(c->st, json_integer_value(lj))) {
            json_decref(o);
            dropped++;
            continue;
        }
        int failed = !strcmp(st, item_status_name(ITEM_FAILED));
        int cancelled = !strcmp(st, item_status_name(ITEM_CANCELLED));
        if (redrive && (failed || cancelled)) {
            json_decref(o);
            redriven++;
            continue;
        }
        ns.totals.items++;
        if (!strcmp(st, item_status_name(ITEM_OK)))
            ns.totals.ok++;
        else if (failed)
            ns.totals.failed++;
        else if (cancelled)
            ns.totals.cancelled++;
        else
            ns.totals.invalid++;
        ns.totals.attempts +=
            json_integer_value(json_object_get(o, "attempts"));
        ns.totals.throttled +=
            json_integer_value(json_object_get(o, "throttled"));
        fo_err ae = store_repair_add(c->st, json_integer_value(lj));
        /* The batch file starts over too; its maps need these. */
        if (batchlog_on(&c->bl))
            batchlog_remember(&c->bl, o);
        json_decref(o);
        if (ae) {
            snprintf(err, errlen, "%s/state.db: repair failed", c->out);
            rc = FO_ESTORE;
            goto out;
        }
        size_t len = ln.len + 1; /* the line and its newline */
        if (util_write_all(outfd, ln.data, len) != 0) {
            snprintf(err, errlen, "writing %s: %s", tmp, strerror(errno));
            goto out;
        }
        size += (int64_t)len;
        kept++;
    }
    if (fsync(outfd) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errlen, "replacing %s: %s", path, strerror(errno));
        goto out;
    }
    int dfd = open(c->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    ns.results_size = size;
    ns.batches_size = 0;
    ns.batches_scan = 0;
    batchlog_set_scan_from(&c->bl, 0);
    if (store_repair_commit(c->st, &ns, err, errlen)) {
        rc = FO_ESTORE;
        goto out;
    }
    c->state = ns;
    if (redrive)
        LOG_INFO("results.redrive",
                 "%" PRId64 " failed items will run "
                 "again; %" PRId64 " records kept",
                 redriven, kept);
    if (dropped || !redrive)
        LOG_WARN("results.repaired",
                 "%s: kept %" PRId64 " records, dropped "
                 "%" PRId64 " torn or unreadable lines; every item without "
                 "a record runs again",
                 path, kept, dropped);
    rc = FO_OK;
out:
    jsonl_destroy(&r);
    close(in);
    close(outfd);
    unlink(tmp);
    return rc;
}

/* Opens results.jsonl and brings it in line with the store; *repaired
 * says it was rewritten from a scan. */
static fo_err open_results(commit *c, int queue, int redrive, size_t line_cap,
                           int *repaired, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/results.jsonl", c->out);
    c->results_fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (c->results_fd < 0) {
        snprintf(err, errlen, "--out: cannot open %s: %s", path,
                 strerror(errno));
        return FO_EUSAGE;
    }
    struct stat sb;
    if (fstat(c->results_fd, &sb) != 0) {
        snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
        return FO_EIO;
    }
    int64_t good = c->state.results_size;
    if (sb.st_size < good && queue) {
        snprintf(err, errlen,
                 "%s is %lld bytes but %lld were committed "
                 "(cut short or replaced outside fanout); the queue's "
                 "messages are acknowledged and cannot be read again: "
                 "restore the file, or use a new --out",
                 path, (long long)sb.st_size, (long long)good);
        return FO_EIO;
    }
    if (sb.st_size < good || redrive) {
        if (!redrive)
            LOG_WARN("results.short",
                     "%s is %lld bytes but %lld were "
                     "committed (cut short or replaced outside fanout); "
                     "repairing",
                     path, (long long)sb.st_size, (long long)good);
        else if (c->state.totals.failed == 0 &&
                 c->state.totals.cancelled == 0) {
            LOG_INFO("results.redrive",
                     "no failed or cancelled items to redrive");
            return FO_OK;
        }
        close(c->results_fd);
        c->results_fd = -1;
        fo_err rc = repair_results(c, redrive, line_cap, err, errlen);
        if (rc)
            return rc;
        *repaired = 1;
        c->results_fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (c->results_fd < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return FO_EIO;
        }
        return FO_OK;
    }
    if (sb.st_size > good) {
        LOG_WARN("results.repaired",
                 "%s: cut %lld bytes written after the "
                 "last commit (a crash mid-write); those items run again",
                 path, (long long)(sb.st_size - good));
        if (ftruncate(c->results_fd, good) != 0 || fsync(c->results_fd) != 0) {
            snprintf(err, errlen, "%s: truncate: %s", path, strerror(errno));
            return FO_EIO;
        }
    }
    return FO_OK;
}

/* Reads the records from the state's batches_scan to the committed
 * end and remembers those an item of an open batch may need: on a file,
 * records of batches not yet past the cursor; on a queue, records of
 * messages committed and not yet forgotten (they come back). */
static fo_err scan_earlier(commit *c, size_t line_cap, char *err, size_t errlen)
{
    int64_t from = c->state.batches_scan;
    if (from < 0 || from >= c->state.results_size)
        return FO_OK;
    char path[4200];
    snprintf(path, sizeof path, "%s/results.jsonl", c->out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || lseek(fd, (off_t)from, SEEK_SET) < 0) {
        snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return FO_EIO;
    }
    jsonl *r = jsonl_new(fd, line_cap, from, 1);
    fo_err rc = FO_OK;
    int64_t kept = 0;
    for (;;) {
        jsonl_line ln;
        fo_err e = jsonl_next(r, &ln);
        if (e == FO_EEOF || (e == FO_OK && ln.offset >= c->state.results_size))
            break;
        if (e == FO_EIO) {
            snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
            rc = FO_EIO;
            break;
        }
        if (e != FO_OK)
            continue;
        json_t *o = json_loadb(ln.data, ln.len, 0, NULL);
        const char *mid = json_string_value(json_object_get(o, "message_id"));
        json_t *bj = json_object_get(o, "batch");
        int want =
            mid ? store_message_done(c->st, mid)
                : json_is_integer(bj) &&
                      (uint64_t)json_integer_value(bj) >= c->state.cursor.batch;
        if (want) {
            batchlog_remember(&c->bl, o);
            kept++;
        }
        json_decref(o);
    }
    jsonl_destroy(&r);
    close(fd);
    if (kept)
        LOG_INFO("batches.resumed",
                 "%" PRId64 " records of open batches read back from "
                 "results.jsonl (from byte %" PRId64 ")",
                 kept, from);
    return rc;
}

fo_err commit_open_results(commit *c, int queue, int redrive, size_t line_cap,
                           char *err, size_t errlen)
{
    int repaired = 0;
    fo_err rc =
        open_results(c, queue, redrive, line_cap, &repaired, err, errlen);
    if (rc || !batchlog_on(&c->bl))
        return rc;
    int64_t good = c->state.batches_size;
    if ((rc = batchlog_open(&c->bl, &good, repaired, err, errlen)))
        return rc;
    c->state.batches_size = good;
    if (repaired)
        return FO_OK; /* the repair's scan remembered every record */
    batchlog_set_scan_from(&c->bl, c->state.batches_scan);
    if ((rc = scan_earlier(c, line_cap, err, errlen)))
        return rc;
    return queue ? batchlog_mark_written(&c->bl, good, err, errlen) : FO_OK;
}

/* ---- the commit buffer ---------------------------------------------- */

fo_err commit_add(commit *c, batches *b, proto_ref ref, item_status status,
                  int64_t attempts, int64_t throttled, char *line, size_t len,
                  int64_t now)
{
    mitem *it = batches_item(b, ref);
    if (!it || it->state == MI_COMMITTING || it->state == MI_DONE)
        return FO_EINVAL;
    if (c->len == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->cb = xrealloc(c->cb, c->cap * sizeof *c->cb);
    }
    if (c->len == 0)
        c->first_ns = now;
    c->cb[c->len++] =
        (commit_pending){ref, status, attempts, throttled, line, len};
    /* The record replaces the request in the window's bytes; the caller
     * frees the request after this (batches_release). */
    c->held_bytes += (int64_t)len - (int64_t)batches_item_bytes(it);
    it->state = MI_COMMITTING;
    batchlog_note(&c->bl, ref, status);
    return FO_OK;
}

int commit_due(const commit *c, const batches *b, int64_t now, int stopping)
{
    if (!outfull_may_try(&c->full, now))
        return 0;
    if (c->len)
        return c->len >= COMMIT_MAX_ROWS ||
               now - c->first_ns >= COMMIT_DELAY_NS || stopping;
    /* Queue ids to forget wait for the tick (commit_flush with nothing
     * buffered), so acknowledgements do not cost a transaction each. */
    return batches_head_complete(b);
}

int64_t commit_deadline(const commit *c)
{
    if (c->full.active)
        return c->full.next_try_ns;
    return c->len ? c->first_ns + COMMIT_DELAY_NS : INT64_MAX;
}

void commit_forget(commit *c, char **ids, size_t n)
{
    if (!n)
        return;
    c->forget = xrealloc(c->forget, (c->nforget + n) * sizeof *c->forget);
    memcpy(c->forget + c->nforget, ids, n * sizeof *ids);
    c->nforget += n;
}

void commit_ack_batch(commit *c, mbatch *mb)
{
    if (!c->queue || !c->src || mb->acked || mb->done != mb->n)
        return;
    uint64_t *h = xcalloc(mb->n ? mb->n : 1, sizeof *h);
    for (uint32_t i = 0; i < mb->n; i++)
        h[i] = mb->items[i].qhandle;
    source_ack(c->src, h, mb->n);
    free(h);
    mb->acked = 1;
}

static void observe(commit *c, double secs)
{
    int i = 0;
    while (i < COMMIT_HIST_BUCKETS - 1 && secs > commit_hist_bounds[i])
        i++;
    c->hist[i]++;
    c->sum_s += secs;
    c->count++;
}

/* Appends the buffered lines at the committed size and fsyncs them. */
static fo_err write_results(commit *c, store_state *ns, char *err,
                            size_t errlen)
{
    size_t off = 0;
    while (off < c->wbuf.len) {
        ssize_t w = pwrite(c->results_fd, c->wbuf.data + off, c->wbuf.len - off,
                           (off_t)(ns->results_size + (int64_t)off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            c->space_err = w == 0 || outfull_errno_is_full(errno);
            snprintf(err, errlen,
                     "writing %s/results.jsonl: %s; nothing past "
                     "the last commit is lost: re-run the same "
                     "command when fixed",
                     c->out, w < 0 ? strerror(errno) : "no space written");
            return FO_EIO;
        }
        off += (size_t)w;
    }
    if (fdatasync(c->results_fd) != 0) {
        c->space_err = outfull_errno_is_full(errno);
        snprintf(err, errlen, "fsync %s/results.jsonl: %s", c->out,
                 strerror(errno));
        return FO_EIO;
    }
    ns->results_size += (int64_t)c->wbuf.len;
    return FO_OK;
}

/* A flush failed: undo its marks, so that the next one starts over. Out
 * of space (and no --batches file, whose lines are not undone) is ridden
 * out: FO_OK, the records stay buffered and are tried again later. */
static fo_err flush_failed(commit *c, batches *b, int marked, fo_err rc,
                           int64_t now, const char *err)
{
    for (size_t i = 0; marked && i < c->len; i++) {
        mbatch *mb = batches_find(b, c->cb[i].ref.batch);
        if (mb && c->cb[i].ref.idx < mb->n) {
            mb->items[c->cb[i].ref.idx].state = MI_COMMITTING;
            mb->done--;
        }
    }
    if (!c->space_err || batchlog_on(&c->bl))
        return rc;
    if (outfull_failed(&c->full, now))
        LOG_WARN("out.full",
                 "%s: no space left (%s); holding %zu records in memory, "
                 "taking no new items, and trying again every %d s at most "
                 "until there is room",
                 c->out, err, c->len, (int)(OUTFULL_MAX_NS / 1000000000));
    return FO_OK;
}

fo_err commit_flush(commit *c, batches *b, int src_eof, int64_t now, char *err,
                    size_t errlen)
{
    if (c->len == 0 && !batches_head_complete(b) && c->nforget == 0)
        return FO_OK;
    if (!outfull_may_try(&c->full, now))
        return FO_OK;
    c->space_err = 0;
    int marked = 0;
    int64_t t_start = clock_now_ns();
    store_state ns = c->state;
    buf_reset(&c->wbuf);
    store_row *rows = c->len ? xcalloc(c->len, sizeof *rows) : NULL;
    fo_err rc = FO_OK;
    for (size_t i = 0; i < c->len; i++) {
        commit_pending *p = &c->cb[i];
        batchlog_note_offset(&c->bl, p->ref.batch,
                             ns.results_size + (int64_t)c->wbuf.len);
        if (buf_append(&c->wbuf, p->line, p->len) != FO_OK) {
            snprintf(err, errlen, "results batch over %zu bytes", c->wbuf.max);
            rc = FO_EIO;
            goto out;
        }
        mitem *it = batches_item(b, p->ref);
        rows[i] = (store_row){p->ref.batch, p->ref.idx, p->status,
                              it ? it->msg_id : NULL};
        ns.totals.items++;
        if (p->status == ITEM_OK)
            ns.totals.ok++;
        else if (p->status == ITEM_FAILED)
            ns.totals.failed++;
        else if (p->status == ITEM_CANCELLED)
            ns.totals.cancelled++;
        else
            ns.totals.invalid++;
        ns.totals.attempts += p->attempts;
        ns.totals.throttled += p->throttled;
    }
    if (c->wbuf.len && (rc = write_results(c, &ns, err, errlen)) != FO_OK)
        goto out;
    /* Mark items committed, then move the cursor past complete batches. */
    marked = 1;
    for (size_t i = 0; i < c->len; i++) {
        mbatch *mb = batches_find(b, c->cb[i].ref.batch);
        if (mb && c->cb[i].ref.idx < mb->n) {
            mb->items[c->cb[i].ref.idx].state = MI_DONE;
            mb->done++;
        }
    }
    size_t pop = 0;
    while (pop < batches_len(b) &&
           batches_at(b, pop)->done == batches_at(b, pop)->n) {
        mbatch *mb = batches_at(b, pop);
        if (!c->queue) {
            ns.cursor.offset = mb->end_offset;
            ns.cursor.hash = mb->end_hash;
            ns.cursor.line_no = mb->next_line;
            ns.cursor.batch = mb->no + 1;
        }
        pop++;
    }
    /* --batches: one line per popped batch, durable before the transaction
     * that pops it counts its bytes. */
    if (batchlog_on(&c->bl)) {
        for (size_t i = 0; i < pop; i++)
            batchlog_add_batch(&c->bl, batches_at(b, i), c->queue);
        if ((rc = batchlog_write(&c->bl, &ns.batches_size, err, errlen)))
            goto out;
        ns.batches_scan = batchlog_scan_from(&c->bl, b, pop, ns.results_size);
    }
    /* A queue has no resume point; the batch numbers it used do not come
     * back (see intake_open). */
    if (c->queue)
        ns.cursor.batch = b->bld.no;
    ns.totals.active_ms =
        c->active_base_ms + (now - c->run_start_ns) / FO_NS_PER_MS;
    ns.finished = src_eof && pop == batches_len(b) && b->bld.n == 0;
    char serr[512];
    if (store_commit(c->st, rows, c->len, (const char *const *)c->forget,
                     c->nforget, &ns, serr, sizeof serr)) {
        snprintf(err, errlen,
                 "%s (in %s); nothing committed is lost: re-run the "
                 "same command when fixed",
                 serr, c->out);
        c->space_err = store_full(c->st);
        rc = FO_ESTORE;
        goto out;
    }
    observe(c, (double)(clock_now_ns() - t_start) / 1e9);
    c->state = ns;
    for (size_t i = 0; i < c->nforget; i++) {
        batchlog_forget(&c->bl, c->forget[i]);
        free(c->forget[i]);
    }
    FO_FREE(&c->forget);
    c->nforget = 0;
    /* Only now, with their records durable, may messages be acked. */
    for (size_t i = 0; c->queue && i < c->len; i++) {
        mbatch *mb = batches_find(b, c->cb[i].ref.batch);
        if (mb)
            commit_ack_batch(c, mb);
    }
    c->outstanding -= (int64_t)c->len;
    for (size_t i = 0; i < c->len; i++) {
        c->held_bytes -= (int64_t)c->cb[i].len;
        free(c->cb[i].line);
    }
    if (c->len)
        LOG_DEBUG("batch.committed", "%zu records, cursor at batch %" PRIu64,
                  c->len, ns.cursor.batch);
    c->len = 0;
    for (size_t i = 0; i < pop; i++)
        batches_pop_head(b);
    if (outfull_ok(&c->full, now))
        LOG_INFO("out.writable",
                 "%s: writing again after %.1f s without space; the records "
                 "held meanwhile are committed, taking new items again",
                 c->out, (double)outfull_episode_ns(&c->full, now) / 1e9);
out:
    free(rows);
    if (rc != FO_OK)
        rc = flush_failed(c, b, marked, rc, now, err);
    return rc;
}

fo_err commit_finish(commit *c, char *err, size_t errlen)
{
    if (c->state.finished)
        return FO_OK;
    store_state ns = c->state;
    ns.finished = 1;
    if (store_commit(c->st, NULL, 0, NULL, 0, &ns, err, errlen))
        return FO_ESTORE;
    c->state = ns;
    return FO_OK;
}
