/*
 * intake.c - reading, rendering and batching items; see intake.h.
 */
#include "fmacros.h"
#include "intake.h"
#include "log.h"
#include "queue.h"
#include "record.h"
#include "util.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fo_err intake_init(intake *in, const intake_cfg *cfg, char *err, size_t errlen)
{
    memset(in, 0, sizeof *in);
    in->cfg = *cfg;
    in->in_size = -1;
    in->total_items = -1;
    char e[300];
    if (template_parse(cfg->url, &in->url_t, e, sizeof e)) {
        char shown[1024];
        snprintf(err, errlen, "--url: %s in '%s'", e,
                 util_redact_url(cfg->url, shown, sizeof shown));
        return FO_EUSAGE;
    }
    if (cfg->body && template_parse(cfg->body, &in->body_t, e, sizeof e)) {
        snprintf(err, errlen, "--body: %s in '%s'", e, cfg->body);
        return FO_EUSAGE;
    }
    if (cfg->rate_key &&
        template_parse(cfg->rate_key, &in->rkey_t, e, sizeof e)) {
        snprintf(err, errlen, "--rate-key: %s in '%s'", e, cfg->rate_key);
        return FO_EUSAGE;
    }
    in->body_whole_item = !cfg->body && (!strcmp(cfg->method, "POST") ||
                                         !strcmp(cfg->method, "PUT") ||
                                         !strcmp(cfg->method, "PATCH"));
    return FO_OK;
}

void intake_fini(intake *in)
{
    source_close(&in->src, 0);
    template_destroy(&in->url_t);
    template_destroy(&in->body_t);
    template_destroy(&in->rkey_t);
    FO_FREE(&in->prev);
    in->nprev = 0;
}

char *intake_identity(const intake_cfg *c)
{
    json_t *o = json_object();
    char abs[4096];
    const char *input = c->input;
    if (queue_is_url(input)) {
        /* Without credentials or tunables (lease= may change between
         * runs). */
        queue_url_public(input, abs, sizeof abs);
        input = abs;
    } else if (strcmp(input, "-") != 0 && realpath(input, abs)) {
        input = abs;
    }
    json_object_set_new(o, "input", json_string(input));
    json_object_set_new(o, "url", json_string(c->url));
    json_object_set_new(o, "method", json_string(c->method));
    json_object_set_new(o, "body",
                        c->body ? json_string(c->body) : json_null());
    json_object_set_new(o, "key", json_string(c->key));
    json_object_set_new(o, "batch_size", json_integer(c->batch_size));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static void collect_row(void *ctx, const store_row *row)
{
    intake *in = ctx;
    if ((in->nprev & (in->nprev + 1)) == 0)
        in->prev = xrealloc(in->prev, (in->nprev * 2 + 1) * sizeof *in->prev);
    in->prev[in->nprev++] = *row;
}

fo_err intake_open(intake *in, store *st, const store_state *state, void *zctx,
                   batches *bt, commit *cm, fanin *fi, char *err, size_t errlen)
{
    in->st = st;
    in->bt = bt;
    in->cm = cm;
    in->fi = fi;
    const store_cursor *cur = &state->cursor;
    source_cfg sc = {.input = in->cfg.input,
                     .max_line_bytes = in->cfg.max_line_bytes,
                     .follow = in->cfg.follow,
                     .idle_grace_ms = in->cfg.idle_grace_ms,
                     .timeout_ms = 10000,
                     .zctx = zctx,
                     .st = st,
                     .expect_end = state->finished};
    int code = 3;
    in->src = source_open(&sc, cur, err, errlen, &code);
    if (!in->src)
        return code == 2 ? FO_EUSAGE : FO_EIO;
    in->queue = source_is_queue(in->src);
    if (in->queue)
        queue_url_public(in->cfg.input, in->shown, sizeof in->shown);
    else
        snprintf(in->shown, sizeof in->shown, "%s", in->cfg.input);
    in->in_size = source_size(in->src);
    in->total_items = -1;
    int64_t rest = source_count_rest(in->src);
    /* Records already made for lines past the cursor (open batches, or
     * every present line of a repair) are in both counts. */
    if (rest >= 0)
        in->total_items =
            rest + (store_repairing(st) ? 0 : state->totals.items);
    /* A queue has no resume point, and an earlier run may have used batch
     * numbers past the last commit: start beyond any of them, so that a
     * late result of that run never matches a new item. */
    bt->bld.no = in->queue ? cur->batch + INTAKE_QUEUE_BATCH_GAP : cur->batch;
    if (store_each_row(st, collect_row, in) != FO_OK) {
        snprintf(err, errlen, "state.db: cannot read committed items");
        return FO_ESTORE;
    }
    if (in->total_items >= 0 && !store_repairing(st))
        in->total_items -= (int64_t)in->nprev;
    return FO_OK;
}

/* ---- one item ------------------------------------------------------- */

static int is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

static int prev_committed(const intake *in, uint64_t batch, uint32_t idx)
{
    size_t lo = 0, hi = in->nprev;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const store_row *r = &in->prev[mid];
        if (r->batch < batch || (r->batch == batch && r->idx < idx))
            lo = mid + 1;
        else if (r->batch == batch && r->idx == idx)
            return 1;
        else
            hi = mid;
    }
    return 0;
}

/* The item's id as a heap string: the --key field when it is a string or
 * an integer, else fallback (the line number, or the message id) with *bad
 * set when the field has another type. Ids are as long as the field. */
static char *item_key(const json_t *obj, const char *field,
                      const char *fallback, int *bad)
{
    const json_t *v = json_object_get(obj, field);
    char num[32];
    *bad = 0;
    if (json_is_string(v))
        return xstrndup(json_string_value(v), json_string_length(v));
    *bad = v && !json_is_null(v) && !json_is_integer(v);
    if (!json_is_integer(v))
        return xstrdup(fallback);
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return xstrdup(num);
}

/* Renders the request for an item; returns 0, or -1 with a reason. */
static int render(intake *in, const json_t *obj, mitem *it, const char *where,
                  char *why, size_t cap)
{
    char err[300];
    fo_buf b;
    buf_init(&b, (size_t)in->cfg.max_line_bytes + 65536);
    if (template_render(in->url_t, obj, TEMPLATE_URL, &b, err, sizeof err)) {
        snprintf(why, cap, "%s: --url: %s", where, err);
        buf_fini(&b);
        return -1;
    }
    it->url = buf_take(&b);
    if (in->rkey_t) {
        /* The key is kept as a string of at most 4 KiB: an item's field
         * far larger than that is not a tenant id. */
        buf_init(&b, 4096);
        if (template_render(in->rkey_t, obj, TEMPLATE_RAW, &b, err,
                            sizeof err)) {
            snprintf(why, cap, "%s: --rate-key: %s", where, err);
            buf_fini(&b);
            FO_FREE(&it->url);
            return -1;
        }
        it->rkey = buf_take(&b);
    }
    if (in->body_t) {
        buf_init(&b, (size_t)in->cfg.max_line_bytes * 2 + 65536);
        if (template_render(in->body_t, obj, TEMPLATE_JSON, &b, err,
                            sizeof err)) {
            snprintf(why, cap, "%s: --body: %s", where, err);
            buf_fini(&b);
            FO_FREE(&it->url);
            FO_FREE(&it->rkey);
            return -1;
        }
        it->body_len = b.len;
        it->body = buf_take(&b);
    } else if (in->body_whole_item) {
        it->body = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        it->body_len = strlen(it->body);
    }
    return 0;
}

static void record_invalid(intake *in, proto_ref ref, const char *id,
                           const char *why, int64_t now)
{
    mitem *it = batches_item(in->bt, ref);
    record r = {.id = id,
                .status = ITEM_INVALID,
                .batch = ref.batch,
                .line = it->line_no,
                .latency_ms = -1,
                .error = why,
                .msg_id = it->msg_id};
    size_t len;
    char *line = record_format(&r, &len);
    if (commit_add(in->cm, in->bt, ref, ITEM_INVALID, 0, 0, line, len, now))
        free(line); /* a new item always takes its record */
}

/* Closes the batch being read: it joins the open ring and its items the
 * dispatch queue. */
static void close_batch(intake *in, int64_t now)
{
    uint32_t from;
    mbatch *rb = batches_close(in->bt, &from);
    if (!rb)
        return;
    for (uint32_t i = 0; orphans_len(in->fi->orph) && i < rb->n; i++)
        if (rb->items[i].state == MI_PENDING && rb->items[i].msg_id)
            fanin_take_orphan(in->fi, rb, i, now);
    batches_enqueue(in->bt, rb, from);
    /* Queue messages whose records an earlier run committed. */
    commit_ack_batch(in->cm, rb);
}

static void add_item(intake *in, const source_item *ln, int64_t now)
{
    char idem[BATCHES_IDEM_BYTES] = "";
    if (ln->msg_id) {
        mitem probe = {.msg_id = (char *)ln->msg_id, .line_no = ln->line_no};
        batches_idem_key(in->bt, &probe, idem);
        if (batches_lookup(in->bt, idem)) {
            /* Delivered again while we still hold it (its lease ran out). */
            in->n_dup_msgs++;
            source_release(in->src, ln->handle);
            return;
        }
    }
    proto_ref ref;
    mitem *it = batches_append(in->bt, ln->line_no, &ref);
    mbatch *b = &in->bt->bld;
    b->end_offset = ln->end_offset;
    b->end_hash = ln->hash;
    b->next_line = ln->line_no + 1;
    char where[200], line_key[160];
    if (ln->msg_id) {
        it->msg_id = xstrdup(ln->msg_id);
        it->qhandle = ln->handle;
        batches_index(in->bt, idem, ref);
        snprintf(where, sizeof where, "message %.150s", ln->msg_id);
        snprintf(line_key, sizeof line_key, "%.150s", ln->msg_id);
    } else {
        snprintf(where, sizeof where, "line %" PRId64, ln->line_no);
        snprintf(line_key, sizeof line_key, "%" PRId64, ln->line_no);
    }

    if (ln->msg_id ? !ln->first && store_message_done(in->st, ln->msg_id)
                   : (prev_committed(in, ref.batch, ref.idx) ||
                      (store_repairing(in->st) &&
                       store_present(in->st, ln->line_no)))) {
        it->state = MI_DONE;
        b->done++;
        it->key = xstrdup(line_key);
        in->n_redelivered += ln->msg_id != NULL;
        if (ln->msg_id)
            LOG_DEBUG("source.redelivered",
                      "%s is recorded already; acknowledging it", where);
        return;
    }
    in->cm->outstanding++;
    char why[600];
    if (ln->rc == FO_EINVAL) {
        snprintf(why, sizeof why, "%s: %s", where, ln->bad);
        it->key = xstrdup(line_key);
        record_invalid(in, ref, line_key, why, now);
        return;
    }
    if (ln->rc == FO_ETOOBIG) {
        snprintf(why, sizeof why,
                 "%s is longer than --max-line-bytes (%" PRId64 " bytes)",
                 where, in->cfg.max_line_bytes);
        it->key = xstrdup(line_key);
        record_invalid(in, ref, line_key, why, now);
        return;
    }
    json_error_t jerr;
    /* Any JSON value parses, so a scalar line is "not an object" rather
     * than a syntax error. */
    json_t *obj = json_loadb(ln->data, ln->len, JSON_DECODE_ANY, &jerr);
    if (!obj) {
        snprintf(why, sizeof why, "%s is not valid JSON: %s (column %d)", where,
                 jerr.text, jerr.column);
    } else if (!json_is_object(obj)) {
        snprintf(why, sizeof why, "%s is not a JSON object", where);
    } else {
        int bad;
        it->key = item_key(obj, in->cfg.key, line_key, &bad);
        if (bad)
            snprintf(why, sizeof why,
                     "%s: field '%s' (the item id, --key) is not a string "
                     "or integer",
                     where, in->cfg.key);
        else if (render(in, obj, it, where, why, sizeof why) == 0) {
            json_decref(obj);
            it->state = MI_PENDING;
            in->cm->held_bytes += (int64_t)batches_item_bytes(it);
            return;
        }
    }
    json_decref(obj);
    if (!it->key)
        it->key = xstrdup(line_key);
    record_invalid(in, ref, it->key, why, now);
}

int intake_has_room(const intake *in, intake_window window)
{
    /* Checked before reading an item, not with its size: an item bigger
     * than the whole byte cap still goes in, and nothing more is read
     * until enough of what is held is committed. Never a deadlock. */
    int64_t out = in->cm->outstanding;
    return !in->eof && out < window.items &&
           (in->cfg.max_window_bytes <= 0 ||
            in->cm->held_bytes < in->cfg.max_window_bytes ||
            out < window.at_once);
}

fo_err intake_read(intake *in, intake_window window, int64_t now, char *err,
                   size_t errlen)
{
    while (intake_has_room(in, window)) {
        source_item ln;
        int rc =
            source_next(in->src, window.items - in->cm->outstanding, &ln, now);
        if (rc == SOURCE_AGAIN) {
            /* A queue's batch is what is there, up to --batch-size. A
             * file's batches are always whole (but the last): the rows of
             * an earlier run are keyed by batch and index. A pipe that has
             * nothing more now sends what the batch holds so far without
             * closing it. */
            if (in->queue)
                close_batch(in, now);
            else
                batches_enqueue_building(in->bt);
            return FO_OK;
        }
        if (rc == SOURCE_EOF) {
            in->eof = 1;
            close_batch(in, now);
            LOG_INFO("source.eof", "end of input %s", in->shown);
            return FO_OK;
        }
        if (rc == SOURCE_ERROR) {
            snprintf(err, errlen, "reading --input %s: %s", in->shown,
                     source_error(in->src));
            return FO_EIO;
        }
        if (ln.rc == FO_OK && !ln.msg_id && is_blank(ln.data, ln.len)) {
            in->n_blank++;
            continue;
        }
        add_item(in, &ln, now);
        if (in->bt->bld.n >= (uint32_t)in->cfg.batch_size)
            close_batch(in, now);
    }
    /* The window is full, perhaps by bytes in the middle of a batch: what
     * the batch holds must go out now, or its calls would wait for room
     * only their records can make. As on SOURCE_AGAIN, a queue's batch
     * is what is there, and a file's stays open. */
    if (!in->eof) {
        if (in->queue)
            close_batch(in, now);
        else
            batches_enqueue_building(in->bt);
    }
    return FO_OK;
}

void intake_tick(intake *in, int64_t now)
{
    if (!in->queue)
        return;
    source_tick(in->src, now, !batches_empty(in->bt));
    size_t n;
    char **ids = source_take_acked(in->src, &n);
    in->n_acked += n;
    commit_forget(in->cm, ids, n);
    free(ids);
}
