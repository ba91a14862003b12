/*
 * queue_redis.c - Redis Streams as a source, through a consumer group.
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM?group=G
 *          [&consumer=NAME][&field=NAME]
 *
 * The group is created (MKSTREAM, from the stream's start) when missing.
 * Pulling reads, in this order: the entries our consumer was given and
 * never acknowledged (a previous run of this master died holding them;
 * XREADGROUP from id 0), entries other consumers have left pending for
 * longer than the lease (a dead master under another name; XAUTOCLAIM), then
 * new entries (XREADGROUP >). Acknowledging is XACK; renewing a lease is
 * XCLAIM of our own entry, which resets its idle time so that nobody's
 * XAUTOCLAIM takes it while we work on it.
 *
 * The item is the entry's fields as a JSON object of strings, or with
 * field=NAME the JSON text of that one field.
 */
#include "fmacros.h"
#include "queue.h"
#include "clock.h"
#include "util.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARG_MAX_IDS 1000 /* ids per XACK/XCLAIM command */

typedef struct redis_q {
    queue base; /* must stay first: the API hands us &base */
    redisContext *c;
    char host[256];
    int port;
    char *user, *password;
    char stream[512], group[256], consumer[256], field[256];
    queue_opts o;
    int recovering;        /* still reading our own pending entries */
    char pel_cursor[64];   /* last pending id read back */
    int64_t next_claim_ms; /* next XAUTOCLAIM sweep */
    char claim_cursor[64]; /* where the sweep goes on */
    char desc[1400];
} redis_q;

static void drop_conn(redis_q *q)
{
    if (q->c)
        redisFree(q->c);
    q->c = NULL;
}

static void reply_err(redis_q *q, const redisReply *r, const char *what,
                      char *err, size_t errlen)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        snprintf(err, errlen, "redis %s:%d: %s: %s", q->host, q->port, what,
                 r->str);
    else if (!r && q->c)
        snprintf(err, errlen, "redis %s:%d: %s: %s", q->host, q->port, what,
                 q->c->errstr[0] ? q->c->errstr : "no reply");
    else
        snprintf(err, errlen, "redis %s:%d: %s: unexpected reply", q->host,
                 q->port, what);
}

/* Runs a command given as argv; a failed connection is dropped so that the
 * next call reconnects. Returns the reply or NULL with err. */
static redisReply *cmd(redis_q *q, int argc, const char **argv,
                       const size_t *lens, const char *what, char *err,
                       size_t errlen)
{
    redisReply *r = redisCommandArgv(q->c, argc, argv, lens);
    if (!r) {
        reply_err(q, NULL, what, err, errlen);
        drop_conn(q);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        reply_err(q, r, what, err, errlen);
        /* The stream or group was deleted under us: reconnecting creates
         * them again (the entries it held are gone with it). */
        if (!strncmp(r->str, "NOGROUP", 7))
            drop_conn(q);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int connect_q(redis_q *q, char *err, size_t errlen)
{
    if (q->c)
        return 0;
    struct timeval tv = {(time_t)(q->o.timeout_ms / 1000),
                         (suseconds_t)(q->o.timeout_ms % 1000 * 1000)};
    q->c = redisConnectWithTimeout(q->host, q->port, tv);
    if (!q->c || q->c->err) {
        snprintf(err, errlen, "redis %s:%d: cannot connect: %s", q->host,
                 q->port, q->c ? q->c->errstr : "out of memory");
        drop_conn(q);
        return -1;
    }
    redisSetTimeout(q->c, tv);
    redisReply *r;
    if (q->password) {
        const char *a[3] = {"AUTH", q->user ? q->user : q->password,
                            q->password};
        r = cmd(q, q->user ? 3 : 2, a, NULL, "AUTH", err, errlen);
        if (!r) {
            drop_conn(q);
            return -1;
        }
        freeReplyObject(r);
    }
    const char *g[6] = {"XGROUP", "CREATE", q->stream,
                        q->group, "0",      "MKSTREAM"};
    r = redisCommandArgv(q->c, 6, g, NULL);
    if (!r) {
        reply_err(q, NULL, "XGROUP CREATE", err, errlen);
        drop_conn(q);
        return -1;
    }
    int busy = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "BUSYGROUP", 9);
    if (r->type == REDIS_REPLY_ERROR && !busy) {
        reply_err(q, r, "XGROUP CREATE", err, errlen);
        freeReplyObject(r);
        drop_conn(q);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

/* Fills m from one entry reply: [id, [field, value, ...]]. Returns 0, or -1
 * when the entry was deleted from the stream (nil fields). */
static int take_entry(redis_q *q, const redisReply *e, queue_msg *m)
{
    memset(m, 0, sizeof *m);
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    const redisReply *f = e->element[1];
    if (f->type != REDIS_REPLY_ARRAY)
        return -1;
    m->id = xstrndup(e->element[0]->str, e->element[0]->len);
    if (q->field[0]) {
        for (size_t i = 0; i + 1 < f->elements; i += 2) {
            const redisReply *k = f->element[i], *v = f->element[i + 1];
            if (k->type == REDIS_REPLY_STRING &&
                v->type == REDIS_REPLY_STRING && !strcmp(k->str, q->field)) {
                queue_set_body(m, v->str, v->len, "none", q->o.max_item_bytes);
                return 0;
            }
        }
        char why[400];
        snprintf(why, sizeof why, "entry has no field '%s' (field=)", q->field);
        m->bad = xstrdup(why);
        return 0;
    }
    json_t *o = json_object();
    size_t total = 0;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        total += k->len + v->len;
        json_t *s = json_stringn(v->str, v->len);
        if (!s) {
            char why[300];
            snprintf(why, sizeof why, "field '%.100s' is not UTF-8 text",
                     k->str);
            m->bad = xstrdup(why);
            json_decref(o);
            return 0;
        }
        json_object_setn_new(o, k->str, k->len, s);
    }
    if (total > q->o.max_item_bytes) {
        m->too_big = 1;
    } else {
        m->body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        m->len = m->body ? strlen(m->body) : 0;
        if (!m->body)
            m->bad = xstrdup("fields do not make a JSON object");
    }
    json_decref(o);
    return 0;
}

/* XACKs ids the reply showed as deleted, so they leave our pending list. */
static void ack_ids(redis_q *q, const char *const *ids, size_t n)
{
    if (n == 0 || !q->c)
        return;
    const char **a = xcalloc(n + 3, sizeof *a);
    a[0] = "XACK";
    a[1] = q->stream;
    a[2] = q->group;
    for (size_t i = 0; i < n; i++)
        a[3 + i] = ids[i];
    redisReply *r = redisCommandArgv(q->c, (int)(n + 3), a, NULL);
    if (r)
        freeReplyObject(r);
    free(a);
}

/* Appends the entries of an entry list to out; first: they are new
 * entries (XREADGROUP >), delivered for the first time. */
static void take_entries(redis_q *q, const redisReply *list, queue_msg *out,
                         size_t *n, size_t max, char *last_id, size_t idcap,
                         int first)
{
    const char *gone[64];
    size_t ngone = 0;
    for (size_t i = 0; list && i < list->elements && *n < max; i++) {
        const redisReply *e = list->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING && last_id)
            snprintf(last_id, idcap, "%s", e->element[0]->str);
        if (take_entry(q, e, &out[*n]) == 0) {
            out[*n].deliveries = first;
            (*n)++;
        } else {
            queue_msg_fini(&out[*n]);
            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
                e->element[0]->type == REDIS_REPLY_STRING && ngone < 64)
                gone[ngone++] = e->element[0]->str;
        }
    }
    ack_ids(q, gone, ngone);
}

/* XREADGROUP ... STREAMS stream id; the entry list of our stream. */
static int read_group(redis_q *q, const char *id, size_t max, queue_msg *out,
                      size_t *n, size_t *got, char *err, size_t errlen)
{
    char count[32];
    snprintf(count, sizeof count, "%zu", max - *n);
    const char *a[] = {"XREADGROUP", "GROUP",   q->group,  q->consumer, "COUNT",
                       count,        "STREAMS", q->stream, id};
    redisReply *r = cmd(q, 9, a, NULL, "XREADGROUP", err, errlen);
    if (!r)
        return -1;
    size_t before = *n;
    /* [[stream, [entries...]]], or nil when nothing is there. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements >= 2) {
        const redisReply *list = r->element[0]->element[1];
        *got = list->elements;
        int fresh = !strcmp(id, ">");
        take_entries(q, list, out, n, max, fresh ? NULL : q->pel_cursor,
                     sizeof q->pel_cursor, fresh);
    } else {
        *got = 0;
    }
    (void)before;
    freeReplyObject(r);
    return 0;
}

static int claim_sweep(redis_q *q, size_t max, queue_msg *out, size_t *n,
                       char *err, size_t errlen)
{
    char idle[32], count[32];
    snprintf(idle, sizeof idle, "%lld", (long long)q->o.lease_ms);
    snprintf(count, sizeof count, "%zu", max - *n);
    const char *a[] = {"XAUTOCLAIM", q->stream,       q->group, q->consumer,
                       idle,         q->claim_cursor, "COUNT",  count};
    redisReply *r = cmd(q, 8, a, NULL, "XAUTOCLAIM", err, errlen);
    if (!r)
        return -1;
    /* [next-start, [entries], (deleted ids)] */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(q->claim_cursor, sizeof q->claim_cursor, "%s",
                 r->element[0]->str);
        take_entries(q, r->element[1], out, n, max, NULL, 0, 0);
    }
    freeReplyObject(r);
    if (!strcmp(q->claim_cursor, "0-0"))
        q->next_claim_ms = clock_wall_ms() + q->o.lease_ms / 2;
    return 0;
}

static int r_pull(queue *d, size_t max, queue_msg *out, size_t *n, char *err,
                  size_t errlen)
{
    redis_q *q = (redis_q *)d;
    *n = 0;
    if (connect_q(q, err, errlen))
        return -1;
    while (q->recovering && *n < max) {
        size_t got = 0;
        if (read_group(q, q->pel_cursor, max, out, n, &got, err, errlen))
            return -1;
        if (got == 0)
            q->recovering = 0;
    }
    if (*n < max && clock_wall_ms() >= q->next_claim_ms &&
        claim_sweep(q, max, out, n, err, errlen))
        return -1;
    if (*n < max) {
        size_t got = 0;
        if (read_group(q, ">", max, out, n, &got, err, errlen))
            return -1;
    }
    return 0;
}

/* XACK or XCLAIM ... JUSTID over msgs, ARG_MAX_IDS at a time. */
static int r_ids_cmd(redis_q *q, int claim, queue_msg *msgs, size_t n,
                     int *outcome, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        outcome[i] = QUEUE_RETRY;
    if (connect_q(q, err, errlen))
        return -1;
    for (size_t at = 0; at < n; at += ARG_MAX_IDS) {
        size_t k = n - at < ARG_MAX_IDS ? n - at : ARG_MAX_IDS;
        const char **a = xcalloc(k + 6, sizeof *a);
        int argc = 0;
        a[argc++] = claim ? "XCLAIM" : "XACK";
        a[argc++] = q->stream;
        a[argc++] = q->group;
        if (claim) {
            a[argc++] = q->consumer;
            a[argc++] = "0";
        }
        for (size_t i = 0; i < k; i++)
            a[argc++] = msgs[at + i].id;
        if (claim)
            a[argc++] = "JUSTID";
        redisReply *r =
            cmd(q, argc, a, NULL, claim ? "XCLAIM" : "XACK", err, errlen);
        free(a);
        if (!r)
            return at ? 0 : -1;
        if (!claim) {
            /* An id no longer pending is acknowledged already. */
            for (size_t i = 0; i < k; i++)
                outcome[at + i] = QUEUE_DONE;
        } else {
            for (size_t i = 0; i < k; i++)
                outcome[at + i] = QUEUE_STALE;
            for (size_t j = 0; r->type == REDIS_REPLY_ARRAY && j < r->elements;
                 j++) {
                const redisReply *e = r->element[j];
                if (e->type != REDIS_REPLY_STRING)
                    continue;
                for (size_t i = 0; i < k; i++)
                    if (!strcmp(msgs[at + i].id, e->str))
                        outcome[at + i] = QUEUE_DONE;
            }
        }
        freeReplyObject(r);
    }
    return 0;
}

static int r_ack(queue *d, queue_msg *msgs, size_t n, int *outcome, char *err,
                 size_t errlen)
{
    return r_ids_cmd((redis_q *)d, 0, msgs, n, outcome, err, errlen);
}

static int r_renew(queue *d, queue_msg *msgs, size_t n, int *outcome, char *err,
                   size_t errlen)
{
    return r_ids_cmd((redis_q *)d, 1, msgs, n, outcome, err, errlen);
}

static const char *r_describe(queue *d)
{
    return ((redis_q *)d)->desc;
}

static void r_destroy(queue *d)
{
    redis_q *q = (redis_q *)d;
    if (!q)
        return;
    drop_conn(q);
    if (q->password)
        memset(q->password, 0, strlen(q->password));
    free(q->user);
    free(q->password);
    free(q);
}

static queue *r_open(const char *url, const queue_opts *o, char *err,
                     size_t errlen)
{
    redis_q *q = xcalloc(1, sizeof *q);
    q->base.driver = &queue_redis_driver;
    q->o = *o;
    q->recovering = 1;
    snprintf(q->pel_cursor, sizeof q->pel_cursor, "0");
    snprintf(q->claim_cursor, sizeof q->claim_cursor, "0-0");
    /* Messages name the URL without its password. */
    char shown[256];
    util_redact_url(url, shown, sizeof shown);
    const char *p = url + strlen("redis://");
    size_t auth_len = strcspn(p, "@/?");
    if (p[auth_len] == '@') {
        const char *colon = memchr(p, ':', auth_len);
        if (colon) {
            if (colon > p)
                q->user = queue_pct_decode(p, (size_t)(colon - p), 0, NULL);
            q->password = queue_pct_decode(
                colon + 1, auth_len - (size_t)(colon - p) - 1, 0, NULL);
        } else {
            q->password = queue_pct_decode(p, auth_len, 0, NULL);
        }
        p += auth_len + 1;
    }
    size_t hl = strcspn(p, ":/?");
    if (hl == 0 || hl >= sizeof q->host) {
        snprintf(err, errlen,
                 "--input %.200s: no host (redis://HOST:PORT/"
                 "STREAM?group=G)",
                 shown);
        goto bad;
    }
    memcpy(q->host, p, hl);
    p += hl;
    q->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535) {
            snprintf(err, errlen, "--input: bad port in %.200s", shown);
            goto bad;
        }
        q->port = (int)port;
        p = end;
    }
    size_t sl = *p == '/' ? strcspn(p + 1, "?") : 0;
    if (sl == 0 || sl >= sizeof q->stream) {
        snprintf(err, errlen,
                 "--input %.200s: no stream name "
                 "(redis://HOST:PORT/STREAM?group=G)",
                 shown);
        goto bad;
    }
    char *stream = queue_pct_decode(p + 1, sl, 0, NULL);
    snprintf(q->stream, sizeof q->stream, "%s", stream);
    free(stream);
    if (queue_url_param(url, "group", q->group, sizeof q->group) != 1 ||
        !q->group[0]) {
        snprintf(err, errlen,
                 "--input %.200s: the consumer group is missing "
                 "(add ?group=NAME)",
                 shown);
        goto bad;
    }
    int rc = queue_url_param(url, "consumer", q->consumer, sizeof q->consumer);
    if (rc == 0 || !q->consumer[0])
        snprintf(q->consumer, sizeof q->consumer, "%s",
                 o->consumer ? o->consumer : "fanout-master");
    if (queue_url_param(url, "field", q->field, sizeof q->field) < 0 ||
        rc < 0) {
        snprintf(err, errlen, "--input: a parameter is too long in %.200s",
                 shown);
        goto bad;
    }
    snprintf(q->desc, sizeof q->desc,
             "redis %s:%d stream %s group %s consumer %s", q->host, q->port,
             q->stream, q->group, q->consumer);
    return &q->base;
bad:
    r_destroy(&q->base);
    return NULL;
}

/* A restarted master reads its own pending entries back at once, and takes
 * over a dead consumer's with XAUTOCLAIM after the lease: no restart wait. */
const queue_driver queue_redis_driver = {
    .scheme = "redis",
    .caps = QUEUE_CAP_RENEW,
    .open = r_open,
    .pull = r_pull,
    .ack = r_ack,
    .renew = r_renew,
    .describe = r_describe,
    .destroy = r_destroy,
};
