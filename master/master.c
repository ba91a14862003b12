/*
 * master.c - fanout-master's event loop; see master.h.
 *
 * One thread and one zmq_poll over the control ROUTER, the result PULL, the
 * work PUSH (while items wait and the last send would have blocked) and the
 * input when it is a pipe. Each turn: handle control messages and results,
 * read more input while fewer items than the window are outstanding, push
 * items, grant tokens, commit results that have waited a few milliseconds,
 * and on a 100 ms tick expire leases, heartbeat and draw progress.
 *
 * Items live in batches, in a ring ordered by batch number. The lowest
 * batch not yet complete is the resume point: when it completes, the
 * cursor (byte offset, line, batch) moves past it in the same transaction
 * that commits its last record, and its memory and rows go away. So memory
 * and state are O(items in flight), whatever the backlog.
 *
 * results.jsonl is written before the transaction that counts it commits,
 * and fsynced: after a crash the state store says how many bytes are good,
 * and anything past that is cut off on the next start.
 */
#include "fmacros.h"
#include "master.h"
#include "adaptive.h"
#include "budget.h"
#include "httpd.h"
#include "clock.h"
#include "jsonl.h"
#include "keys.h"
#include "log.h"
#include "progress.h"
#include "proto.h"
#include "queue.h"
#include "record.h"
#include "ring.h"
#include "source.h"
#include "spawn.h"
#include "store.h"
#include "template.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define TICK_NS (100 * FO_NS_PER_MS)
#define COMMIT_DELAY_NS (2 * FO_NS_PER_MS)
#define COMMIT_MAX_ROWS 2000
#define GRANT_HORIZON_NS (250 * FO_NS_PER_MS)
#define WINDOW_MAX 100000
#define RATE_BUCKETS 50 /* 100 ms buckets: a 5 s window */

enum { IT_PENDING = 0, IT_SENT = 1, IT_COMMITTING = 2, IT_DONE = 3 };
enum { ST_OK = 0, ST_FAILED = 1, ST_INVALID = 2 };

typedef struct mitem {
    uint8_t state;       /* IT_* */
    uint32_t dispatches; /* times pushed */
    int64_t deadline_ns; /* lease end while IT_SENT */
    int64_t sent_ns;     /* when last pushed */
    int32_t holder;      /* worker slot that listed it, or -1 */
    uint32_t holder_gen; /* that slot's generation */
    int64_t line_no;     /* input line */
    char *key;           /* id */
    char *url;           /* rendered URL */
    char *body;          /* rendered body or NULL */
    size_t body_len;     /* its length */
    char *msg_id;        /* queue message id, or NULL */
    uint64_t qhandle;    /* what acknowledges it (source_ack) */
} mitem;

typedef struct mbatch {
    uint64_t no;        /* batch number */
    uint32_t n;         /* items */
    uint32_t done;      /* items committed */
    int64_t end_offset; /* input offset after its last line */
    int64_t next_line;  /* line number after its last line */
    int acked;          /* queue: acknowledged (complete) */
    mitem *items;       /* n items */
} mbatch;

typedef struct pending {
    proto_ref ref;     /* which item */
    int status;        /* ST_* */
    int64_t attempts;  /* attempts behind it */
    int64_t throttled; /* throttled attempts */
    char *line;        /* the results.jsonl line */
    size_t len;        /* its length */
} pending;

typedef struct master {
    const master_config *cfg;       /* options */
    store *st;                      /* durable state */
    store_state state;              /* working copy of the committed state */
    budget *bud;                    /* tokens and workers */
    void *zctx, *ctl, *push, *pull; /* ZeroMQ */
    char ctl_ep[300], work_ep[300], result_ep[300]; /* bound endpoints */
    int work_port, result_port;                     /* for the JOB */
    char *job_json;           /* the JOB sent to workers */
    template *url_t, *body_t; /* request templates */
    int body_whole_item;      /* POST/PUT without --body: the item */
    uint64_t idem_seed;       /* from the job identity */
    source *src;              /* input */
    int queue;                /* it is a queue */
    char input_shown[1024];   /* --input without credentials */
    json_t *open_ids;         /* queue: open items by Idempotency-Key */
    ring orphans;             /* queue: results for items not pulled yet */
    json_t *orphan_ix;        /* the same, by Idempotency-Key */
    size_t orphan_bytes;      /* their response bytes */
    char **forget;            /* queue: ids acknowledged, to forget */
    size_t nforget;           /* their count */
    int src_eof;              /* input exhausted */
    int64_t in_size;          /* regular file size, or -1 */
    int64_t total_items;      /* counted up front, or -1 */
    ring batches;             /* open batches (mbatch), oldest first */
    mbatch bld;               /* batch being read */
    size_t bld_cap;           /* its items allocated */
    uint32_t bld_queued;      /* of its items, those already queued */
    ring dq;                  /* items to push (proto_ref) */
    int push_blocked;         /* last push would block */
    store_row *prev;          /* rows committed by an earlier run */
    size_t nprev;             /* their count */
    pending *cb;              /* commit buffer */
    size_t cb_len, cb_cap;    /* its state */
    int64_t cb_first_ns;      /* when its oldest entry arrived */
    int64_t outstanding;      /* items read and not committed */
    int results_fd;           /* results.jsonl */
    fo_buf scratch;           /* encode buffer */
    fo_buf wbuf;              /* results write buffer */
    spawn_set spawned;        /* local workers */
    progress_mode pmode;      /* progress display */
    int64_t run_start_ns;     /* this run's start */
    int64_t active_base_ms;   /* active time of earlier runs */
    int64_t next_tick_ns;     /* next housekeeping */
    int64_t next_hb_ns;       /* next heartbeat to workers */
    int64_t next_lease_ns;    /* next lease scan */
    int stopping;             /* a signal asked us to stop */
    int64_t stop_deadline_ns; /* drain deadline */
    int64_t drained_ns;       /* when permits reached zero */
    uint64_t rate_bucket[RATE_BUCKETS]; /* tokens per 100 ms */
    int64_t rate_bucket_t;              /* index time of the newest bucket */
    uint64_t n_bad_frames, n_dup, n_stale, n_redispatch, n_blank;
    uint64_t n_dup_msgs; /* queue messages delivered while held */
    uint64_t n_orphans_used, n_orphans_dropped;
    uint64_t n_redelivered; /* queue messages found recorded already */
    uint64_t n_acked;       /* queue acknowledgements confirmed */
    uint64_t n_throttle_reports;
    int64_t paused_logged_until;      /* last pause we logged */
    int fatal;                        /* a fatal error happened */
    char limit_text[128];             /* "20/s+1000/min", "" without limits */
    int64_t dispatch_after_ns;        /* resume grace: no dispatch before */
    int first_dispatch_logged;        /* dispatch.first was logged */
    void *zap;                        /* ZAP handler (Curve) or NULL */
    keys_pair server_key;             /* our Curve key pair */
    uint8_t (*allowed)[32];           /* admitted worker keys, binary */
    size_t nallowed;                  /* their count */
    uint64_t n_denied;                /* handshakes refused */
    httpd *http;                      /* /metrics and /status, or NULL */
    uint64_t commit_hist[12];         /* group commit durations, by bucket */
    double commit_sum_s;              /* their sum */
    uint64_t commit_count;            /* their count */
    uint32_t ok_bucket[100];          /* successful calls per 10 ms, last 1 s */
    int64_t ok_bucket_t;              /* index time of the newest bucket */
    adaptive ad;                      /* adaptive rate */
    double applied_scale;             /* scale last given to the limiter */
    gcra_rate rates[GCRA_MAX_LIMITS]; /* limits in force (fanout-ctl) */
    size_t nrates;                    /* their count */
    uint64_t n_quota_pauses;          /* pauses from RateLimit remaining=0 */
} master;

/* After a restart, workers reconnect within half a second (their reconnect
 * interval is capped there), report the items they still hold and flush
 * results meant for the old master. Dispatching before that would call the
 * API again for items whose results are on their way. */
#define RESUME_GRACE_NS (800 * FO_NS_PER_MS)

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t reload_signal;

static void on_hup(int sig)
{
    (void)sig;
    reload_signal = 1;
}

static void on_signal(int sig)
{
    /* A second signal means "now": restore the default and let it kill. */
    if (stop_signal)
        signal(sig, SIG_DFL);
    stop_signal = sig;
}

/* ---- small helpers --------------------------------------------------- */

static mbatch *batch_at(master *m, size_t i)
{
    return ring_at(&m->batches, i);
}

static mbatch *find_batch(master *m, uint64_t no)
{
    /* The batch being read: a pipe's items go out before it is full. */
    if (m->bld.n && no == m->bld.no)
        return &m->bld;
    if (m->batches.len == 0)
        return NULL;
    uint64_t base = batch_at(m, 0)->no;
    if (no < base || no - base >= m->batches.len)
        return NULL;
    mbatch *b = batch_at(m, (size_t)(no - base));
    return b->no == no ? b : NULL;
}

static mitem *find_item(master *m, proto_ref ref)
{
    mbatch *b = find_batch(m, ref.batch);
    if (!b || ref.idx >= b->n)
        return NULL;
    return &b->items[ref.idx];
}

static void dq_push(master *m, proto_ref ref)
{
    *(proto_ref *)ring_push(&m->dq) = ref;
}

static void item_release(mitem *it)
{
    FO_FREE(&it->url);
    FO_FREE(&it->body);
}

/* The item's Idempotency-Key: the same for every attempt, re-dispatch and
 * restart, derived from the job's identity, the line and the id (for a
 * queue, the message id). */
static void idem_key(const master *m, const mitem *it, char out[48])
{
    char h[17];
    const char *k = it->msg_id ? it->msg_id : it->key;
    util_hash_hex(
        k, strlen(k),
        m->idem_seed ^ ((uint64_t)it->line_no * 0x9E3779B97F4A7C15ULL), h);
    snprintf(out, 48, "fo-%016" PRIx64 "-%s", m->idem_seed, h);
}

/* Frees everything an item holds (its batch is going away). */
static void item_free(master *m, mitem *it)
{
    item_release(it);
    FO_FREE(&it->key);
    if (it->msg_id) {
        char idem[48];
        idem_key(m, it, idem);
        json_object_del(m->open_ids, idem);
        FO_FREE(&it->msg_id);
    }
}

/* Queue: a complete batch's messages are acknowledged, in any order. */
static void ack_batch(master *m, mbatch *b)
{
    if (!m->queue || b->acked || b->done != b->n)
        return;
    uint64_t *h = xcalloc(b->n ? b->n : 1, sizeof *h);
    for (uint32_t i = 0; i < b->n; i++)
        h[i] = b->items[i].qhandle;
    source_ack(m->src, h, b->n);
    free(h);
    b->acked = 1;
}

static void rate_add(master *m, int64_t now, uint64_t n)
{
    int64_t t = now / (100 * FO_NS_PER_MS);
    if (t != m->rate_bucket_t) {
        int64_t steps = t - m->rate_bucket_t;
        for (int64_t i = 1; i <= steps && i <= RATE_BUCKETS; i++)
            m->rate_bucket[(m->rate_bucket_t + i) % RATE_BUCKETS] = 0;
        m->rate_bucket_t = t;
    }
    m->rate_bucket[t % RATE_BUCKETS] += n;
}

static double rate_now(master *m, int64_t now)
{
    rate_add(m, now, 0);
    uint64_t sum = 0;
    for (int i = 0; i < RATE_BUCKETS; i++)
        sum += m->rate_bucket[i];
    double window_s = RATE_BUCKETS / 10.0;
    double since_start = (double)(now - m->run_start_ns) / 1e9;
    if (since_start < window_s && since_start > 0.5)
        window_s = since_start;
    return (double)sum / window_s;
}

/* ---- sending to workers ---------------------------------------------- */

static void send_to(master *m, const budget_worker *w, const proto_msg *msg)
{
    buf_reset(&m->scratch);
    if (proto_encode(msg, &m->scratch) != FO_OK)
        return;
    if (zmq_send(m->ctl, w->rid, w->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    zmq_send(m->ctl, m->scratch.data, m->scratch.len, ZMQ_DONTWAIT);
}

static void send_raw_to(master *m, const void *rid, size_t rid_len,
                        const proto_msg *msg)
{
    buf_reset(&m->scratch);
    if (proto_encode(msg, &m->scratch) != FO_OK)
        return;
    if (zmq_send(m->ctl, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    zmq_send(m->ctl, m->scratch.data, m->scratch.len, ZMQ_DONTWAIT);
}

static void send_grant(void *ctx, budget_worker *w, const uint32_t *offs,
                       uint32_t n)
{
    master *m = ctx;
    proto_msg msg = {.type = PROTO_TOKEN_GRANT, .epoch = store_epoch(m->st)};
    msg.u.token_grant.total = w->granted;
    msg.u.token_grant.sent_wall_us = (uint64_t)clock_wall_us();
    msg.u.token_grant.n = n;
    msg.u.token_grant.offset_us = (uint32_t *)offs;
    send_to(m, w, &msg);
    rate_add(m, clock_now_ns(), n);
}

static void broadcast(master *m, int type)
{
    proto_msg msg = {.type = type, .epoch = store_epoch(m->st)};
    for (size_t i = 0; i < budget_capacity(m->bud); i++) {
        budget_worker *w = budget_at(m->bud, i);
        if (w->used)
            send_to(m, w, &msg);
    }
}

/* ---- rate control ---------------------------------------------------- */

static void ok_add(master *m, int64_t now, uint32_t n)
{
    int64_t t = now / (10 * FO_NS_PER_MS);
    if (t != m->ok_bucket_t) {
        for (int64_t i = 1; i <= t - m->ok_bucket_t && i <= 100; i++)
            m->ok_bucket[(m->ok_bucket_t + i) % 100] = 0;
        m->ok_bucket_t = t;
    }
    m->ok_bucket[t % 100] += n;
}

/* Successful calls over the last second, as a share of the configured
 * rate. When an API that counts calls per window pushes back, its window is
 * full: what it let through in the last second is its limit, pauses or not
 * (for longer windows this is an upper bound and does no harm). 0 when not
 * yet meaningful. */
static double observed_scale(master *m, int64_t now, double base)
{
    if (base <= 0 || now - m->run_start_ns < 2 * FO_NS_PER_S)
        return 0;
    ok_add(m, now, 0);
    uint64_t sum = 0;
    for (int i = 0; i < 100; i++)
        sum += m->ok_bucket[i];
    return (double)sum / base;
}

static double base_rate(const master *m)
{
    double best = 0;
    for (size_t i = 0; i < m->nrates; i++) {
        double r =
            (double)m->rates[i].count * 1e9 / (double)m->rates[i].period_ns;
        if (best == 0 || r < best)
            best = r;
    }
    return best;
}

static void apply_scale(master *m)
{
    double sc = adaptive_scale(&m->ad);
    if (sc == m->applied_scale)
        return;
    m->applied_scale = sc;
    gcra_set_scale(budget_limiter(m->bud), sc);
    if (m->nrates)
        LOG_INFO("rate.adjusted", "effective rate now %.2f/s (%.0f%% of %s)",
                 gcra_rate_per_s(budget_limiter(m->bud)), sc * 100,
                 m->limit_text);
}

/* Stops all grants until now + ms and tells every worker to drop the
 * tokens it holds, so nothing reaches the API inside the pause. */
static void pause_all(master *m, int64_t now, int64_t ms)
{
    int64_t until = now + ms * FO_NS_PER_MS;
    if (until <= budget_paused_until(m->bud))
        return;
    budget_pause(m->bud, until);
    proto_msg p = {.type = PROTO_PAUSE, .epoch = store_epoch(m->st)};
    p.u.pause.pause_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    for (size_t i = 0; i < budget_capacity(m->bud); i++) {
        budget_worker *w = budget_at(m->bud, i);
        if (w->used)
            send_to(m, w, &p);
    }
}

/* Replaces the limits in force; returns 0 or -1 (too many). */
static int set_limits(master *m, const gcra_rate *rates, size_t n)
{
    gcra *lim = budget_limiter(m->bud);
    gcra_clear(lim);
    m->nrates = 0;
    m->limit_text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (gcra_add(lim, rates[i], m->cfg->burst,
                     m->cfg->rate_margin_ms * FO_NS_PER_MS) != FO_OK)
            return -1;
        m->rates[m->nrates++] = rates[i];
        char r[48];
        size_t used = strlen(m->limit_text);
        gcra_format_rate(rates[i], r, sizeof r);
        snprintf(m->limit_text + used, sizeof m->limit_text - used, "%s%s",
                 i ? "+" : "", r);
    }
    return 0;
}

/* ---- results and commits --------------------------------------------- */

static void add_pending(master *m, proto_ref ref, int status, int64_t attempts,
                        int64_t throttled, char *line, size_t len, int64_t now)
{
    if (m->cb_len == m->cb_cap) {
        m->cb_cap = m->cb_cap ? m->cb_cap * 2 : 256;
        m->cb = xrealloc(m->cb, m->cb_cap * sizeof *m->cb);
    }
    if (m->cb_len == 0)
        m->cb_first_ns = now;
    m->cb[m->cb_len++] = (pending){ref, status, attempts, throttled, line, len};
}

static void record_invalid(master *m, mbatch *b, uint32_t idx, const char *id,
                           const char *why, int64_t now)
{
    mitem *it = &b->items[idx];
    record r = {.id = id,
                .status = RECORD_INVALID,
                .batch = b->no,
                .line = it->line_no,
                .latency_ms = -1,
                .error = why,
                .msg_id = it->msg_id};
    size_t len;
    char *line = record_format(&r, &len);
    it->state = IT_COMMITTING;
    add_pending(m, (proto_ref){b->no, idx}, ST_INVALID, 0, 0, line, len, now);
}

static int fatal(master *m, const char *event, const char *fmt, ...)
    FO_PRINTF(3, 4);
static int fatal(master *m, const char *event, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    LOG_ERROR(event, "%s", msg);
    m->fatal = 1;
    return -1;
}

/* Upper bounds of the commit latency histogram, seconds (+Inf last). */
static const double commit_bounds[11] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};

static void observe_commit(master *m, double secs)
{
    int b = 0;
    while (b < 11 && secs > commit_bounds[b])
        b++;
    m->commit_hist[b]++;
    m->commit_sum_s += secs;
    m->commit_count++;
}

/* Writes the commit buffer to results.jsonl, fsyncs it, then commits rows,
 * cursor and totals in one transaction. Returns 0 or -1 (fatal). */
static int flush_commit(master *m, int64_t now)
{
    int head_complete =
        m->batches.len > 0 && batch_at(m, 0)->done == batch_at(m, 0)->n;
    if (m->cb_len == 0 && !head_complete && m->nforget == 0)
        return 0;
    int64_t t_start = clock_now_ns();
    store_state ns = m->state;
    buf_reset(&m->wbuf);
    store_row *rows = m->cb_len ? xcalloc(m->cb_len, sizeof *rows) : NULL;
    for (size_t i = 0; i < m->cb_len; i++) {
        pending *p = &m->cb[i];
        if (buf_append(&m->wbuf, p->line, p->len) != FO_OK) {
            free(rows);
            return fatal(m, "results.write_failed",
                         "results batch over %zu bytes", m->wbuf.max);
        }
        mitem *it = find_item(m, p->ref);
        rows[i] = (store_row){p->ref.batch, p->ref.idx, p->status,
                              it ? it->msg_id : NULL};
        ns.totals.items++;
        if (p->status == ST_OK)
            ns.totals.ok++;
        else if (p->status == ST_FAILED)
            ns.totals.failed++;
        else
            ns.totals.invalid++;
        ns.totals.attempts += p->attempts;
        ns.totals.throttled += p->throttled;
    }
    if (m->wbuf.len) {
        size_t off = 0;
        while (off < m->wbuf.len) {
            ssize_t w =
                pwrite(m->results_fd, m->wbuf.data + off, m->wbuf.len - off,
                       (off_t)(ns.results_size + (int64_t)off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                free(rows);
                return fatal(m, "results.write_failed",
                             "writing %s/results.jsonl: %s; nothing past "
                             "the last commit is lost: re-run the same "
                             "command when fixed",
                             m->cfg->out, strerror(errno));
            }
            off += (size_t)w;
        }
        if (fdatasync(m->results_fd) != 0) {
            free(rows);
            return fatal(m, "results.write_failed",
                         "fsync %s/results.jsonl: %s", m->cfg->out,
                         strerror(errno));
        }
        ns.results_size += (int64_t)m->wbuf.len;
    }
    /* Mark items committed, then move the cursor past complete batches. */
    for (size_t i = 0; i < m->cb_len; i++) {
        mbatch *b = find_batch(m, m->cb[i].ref.batch);
        if (b && m->cb[i].ref.idx < b->n) {
            b->items[m->cb[i].ref.idx].state = IT_DONE;
            b->done++;
        }
    }
    size_t pop = 0;
    while (pop < m->batches.len &&
           batch_at(m, pop)->done == batch_at(m, pop)->n) {
        mbatch *b = batch_at(m, pop);
        if (!m->queue) {
            ns.cursor.offset = b->end_offset;
            ns.cursor.line_no = b->next_line;
            ns.cursor.batch = b->no + 1;
        }
        pop++;
    }
    /* A queue has no resume point; the batch numbers it used do not come
     * back (see open_source). */
    if (m->queue)
        ns.cursor.batch = m->bld.no;
    ns.totals.active_ms =
        m->active_base_ms + (now - m->run_start_ns) / FO_NS_PER_MS;
    ns.finished = m->src_eof && pop == m->batches.len && m->bld.n == 0;
    char err[512];
    if (store_commit(m->st, rows, m->cb_len, (const char *const *)m->forget,
                     m->nforget, &ns, err, sizeof err)) {
        free(rows);
        return fatal(m, "store.commit_failed",
                     "%s (in %s); nothing committed is lost: re-run the "
                     "same command when fixed",
                     err, m->cfg->out);
    }
    free(rows);
    observe_commit(m, (double)(clock_now_ns() - t_start) / 1e9);
    m->state = ns;
    for (size_t i = 0; i < m->nforget; i++)
        free(m->forget[i]);
    FO_FREE(&m->forget);
    m->nforget = 0;
    /* Only now, with their records durable, may messages be acked. */
    for (size_t i = 0; m->queue && i < m->cb_len; i++) {
        mbatch *b = find_batch(m, m->cb[i].ref.batch);
        if (b)
            ack_batch(m, b);
    }
    m->outstanding -= (int64_t)m->cb_len;
    for (size_t i = 0; i < m->cb_len; i++)
        free(m->cb[i].line);
    if (m->cb_len)
        LOG_DEBUG("batch.committed", "%zu records, cursor at batch %" PRIu64,
                  m->cb_len, ns.cursor.batch);
    m->cb_len = 0;
    for (size_t i = 0; i < pop; i++) {
        mbatch *b = batch_at(m, 0);
        for (uint32_t k = 0; k < b->n; k++)
            item_free(m, &b->items[k]);
        free(b->items);
        ring_pop(&m->batches);
    }
    return 0;
}

/* ---- results of a previous run (queues) ------------------------------
 *
 * A worker resends the results of calls that were in flight when the
 * master died. For a file the restarted master reads the same lines into
 * the same batches and takes them; a queue's messages come back in another
 * order (Redis at once, Azure when their leases end), so such a result is
 * matched by its Idempotency-Key, derived from the message id: it waits
 * here, bounded in count, bytes and time, until its message is pulled
 * again, and is recorded instead of calling the API a second time. */

#define ORPHANS_MAX 10000
#define ORPHAN_BYTES_MAX ((size_t)64 << 20)
#define ORPHAN_TTL_NS (300 * FO_NS_PER_S)

typedef struct orphan {
    proto_msg r;  /* the RESULT */
    int64_t t_ns; /* when it arrived */
    int used;     /* taken (r is empty) */
} orphan;

static orphan *orphan_at(master *m, size_t i)
{
    return *(orphan **)ring_at(&m->orphans, i);
}

static void orphan_pop(master *m)
{
    orphan *o = orphan_at(m, 0);
    if (!o->used) {
        m->n_orphans_dropped++;
        json_object_del(m->orphan_ix, o->r.u.result.idem_key);
        m->orphan_bytes -= o->r.u.result.response_len;
        proto_msg_fini(&o->r);
    }
    free(o);
    ring_pop(&m->orphans);
}

static void expire_orphans(master *m, int64_t now)
{
    while (m->orphans.len && (orphan_at(m, 0)->used ||
                              now - orphan_at(m, 0)->t_ns > ORPHAN_TTL_NS))
        orphan_pop(m);
}

/* Keeps r (moved out: r is left empty) until its message comes back. */
static void stash_orphan(master *m, proto_msg *r, int64_t now)
{
    expire_orphans(m, now);
    if (json_object_get(m->orphan_ix, r->u.result.idem_key)) {
        m->n_stale++;
        return;
    }
    while (m->orphans.len &&
           (m->orphans.len >= ORPHANS_MAX ||
            m->orphan_bytes + r->u.result.response_len > ORPHAN_BYTES_MAX))
        orphan_pop(m);
    orphan *o = xcalloc(1, sizeof *o);
    o->r = *r;
    memset(r, 0, sizeof *r);
    o->t_ns = now;
    *(orphan **)ring_push(&m->orphans) = o;
    json_object_set_new(m->orphan_ix, o->r.u.result.idem_key,
                        json_integer((json_int_t)(intptr_t)o));
    m->orphan_bytes += o->r.u.result.response_len;
    LOG_DEBUG("result.orphan",
              "result for id %s of an earlier run kept until its message "
              "comes back",
              o->r.u.result.key);
}

static void on_result(master *m, proto_msg *r, int64_t now);

/* A new queue item whose result an earlier run's call already produced:
 * record that result. */
static void take_orphan(master *m, mbatch *b, uint32_t idx, int64_t now)
{
    char idem[48];
    idem_key(m, &b->items[idx], idem);
    json_t *v = json_object_get(m->orphan_ix, idem);
    if (!v)
        return;
    orphan *o = (orphan *)(intptr_t)json_integer_value(v);
    json_object_del(m->orphan_ix, idem);
    o->used = 1;
    m->orphan_bytes -= o->r.u.result.response_len;
    o->r.u.result.ref = (proto_ref){b->no, idx};
    m->n_orphans_used++;
    LOG_DEBUG("result.recovered",
              "id %s: recorded the result an earlier run's call produced",
              b->items[idx].key);
    on_result(m, &o->r, now);
    proto_msg_fini(&o->r);
}

static void on_result(master *m, proto_msg *r, int64_t now)
{
    mitem *it = find_item(m, r->u.result.ref);
    if (m->queue && r->u.result.idem_key &&
        (!it || strcmp(it->key, r->u.result.key) != 0)) {
        json_t *v = json_object_get(m->open_ids, r->u.result.idem_key);
        uint64_t packed = v ? (uint64_t)json_integer_value(v) : 0;
        it = v ? find_item(
                     m, (proto_ref){packed >> 20, (uint32_t)(packed & 0xfffff)})
               : NULL;
        if (!it) {
            stash_orphan(m, r, now);
            return;
        }
        r->u.result.ref =
            (proto_ref){packed >> 20, (uint32_t)(packed & 0xfffff)};
    }
    if (!it) {
        m->n_stale++;
        LOG_DEBUG("result.stale",
                  "result for batch %" PRIu64 " item %u is "
                  "not open (already committed?)",
                  r->u.result.ref.batch, r->u.result.ref.idx);
        return;
    }
    if (it->state == IT_COMMITTING || it->state == IT_DONE) {
        m->n_dup++;
        LOG_DEBUG("result.duplicate", "second result for id %s ignored",
                  it->key);
        return;
    }
    if (strcmp(it->key, r->u.result.key) != 0) {
        m->n_stale++;
        LOG_WARN("result.mismatch",
                 "result for batch %" PRIu64 " item %u "
                 "has id '%.80s', expected '%.80s'; ignored",
                 r->u.result.ref.batch, r->u.result.ref.idx, r->u.result.key,
                 it->key);
        return;
    }
    int ok = r->u.result.status == PROTO_STATUS_OK;
    if (ok)
        ok_add(m, now, 1);
    /* Results travel on the PULL socket, which has no routing ids: match
     * the worker by the id it signs results with. */
    for (size_t i = 0; i < budget_capacity(m->bud); i++) {
        budget_worker *w = budget_at(m->bud, i);
        if (w->used && r->u.result.worker &&
            !strcmp(w->name, r->u.result.worker)) {
            w->results++;
            break;
        }
    }
    record rec = {.id = it->key,
                  .status = ok ? RECORD_OK : RECORD_FAILED,
                  .http_status = (int)r->u.result.http_status,
                  .attempts = (int)r->u.result.attempts,
                  .throttled = (int)r->u.result.throttled,
                  .batch = r->u.result.ref.batch,
                  .line = it->line_no,
                  .latency_ms = r->u.result.latency_ms,
                  .error = r->u.result.error,
                  .response = r->u.result.response,
                  .response_len = r->u.result.response_len,
                  .worker = r->u.result.worker,
                  .msg_id = it->msg_id};
    size_t len;
    char *line = record_format(&rec, &len);
    it->state = IT_COMMITTING;
    item_release(it);
    add_pending(m, r->u.result.ref, ok ? ST_OK : ST_FAILED,
                r->u.result.attempts, r->u.result.throttled, line, len, now);
    if (!ok)
        LOG_DEBUG("item.failed", "id %s: %s", it->key,
                  r->u.result.error ? r->u.result.error : "failed");
}

static void handle_results(master *m, int64_t now)
{
    for (int turn = 0; turn < 5000; turn++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, m->pull, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        proto_msg r;
        char err[256];
        fo_err rc = proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &r,
                                 err, sizeof err);
        zmq_msg_close(&msg);
        if (rc || r.type != PROTO_RESULT) {
            m->n_bad_frames++;
            if (m->n_bad_frames <= 10 || m->n_bad_frames % 1000 == 0)
                LOG_WARN(rc == FO_EVERSION ? "proto.bad_version"
                                           : "proto.bad_frame",
                         "dropped a frame on the result socket (%" PRIu64
                         " so far): %s",
                         m->n_bad_frames, rc ? err : "not a RESULT");
            proto_msg_fini(&r);
            continue;
        }
        on_result(m, &r, now);
        proto_msg_fini(&r);
    }
}

/* ---- workers --------------------------------------------------------- */

static void requeue(master *m, proto_ref ref, const char *why)
{
    mitem *it = find_item(m, ref);
    if (!it || it->state != IT_SENT)
        return;
    it->state = IT_PENDING;
    it->holder = -1;
    m->n_redispatch++;
    dq_push(m, ref);
    LOG_DEBUG("lease.expired", "id %s back in the queue: %s", it->key, why);
}

static void on_heartbeat(master *m, budget_worker *w, proto_msg *msg,
                         int64_t now)
{
    w->inflight = msg->u.heartbeat.inflight;
    w->held = msg->u.heartbeat.nheld;
    int32_t slot = (int32_t)(w - budget_at(m->bud, 0));
    for (uint32_t i = 0; i < msg->u.heartbeat.nheld; i++) {
        mitem *it = find_item(m, msg->u.heartbeat.held[i]);
        if (!it)
            continue;
        if (it->state == IT_PENDING && it->url) {
            /* Its lease ran out but the worker still has it: keep it
             * there rather than call the API twice. */
            it->state = IT_SENT;
        }
        if (it->state == IT_SENT) {
            it->deadline_ns = now + m->cfg->lease_ms * FO_NS_PER_MS;
            it->holder = slot;
            it->holder_gen = w->gen;
        }
    }
}

static void expire_worker(master *m, budget_worker *w, const char *why)
{
    int32_t slot = (int32_t)(w - budget_at(m->bud, 0));
    size_t n = 0;
    for (size_t i = 0; i < m->batches.len; i++) {
        mbatch *b = batch_at(m, i);
        for (uint32_t k = 0; k < b->n; k++) {
            mitem *it = &b->items[k];
            if (it->state == IT_SENT && it->holder == slot &&
                it->holder_gen == w->gen) {
                requeue(m, (proto_ref){b->no, k}, why);
                n++;
            }
        }
    }
    LOG_WARN("worker.lost",
             "worker %s (host %s, pid %" PRId64 ") %s; %zu "
             "items re-dispatched, %" PRId64 " permits returned",
             w->name, w->host, w->pid, why, n, w->permits);
    budget_remove(m->bud, w);
}

static json_t *status_json(master *m, int64_t now)
{
    const store_totals *t = &m->state.totals;
    json_t *o = json_object();
    json_object_set_new(o, "epoch",
                        json_integer((json_int_t)store_epoch(m->st)));
    json_object_set_new(o, "items", json_integer(t->items));
    json_object_set_new(o, "total", json_integer(m->total_items));
    json_object_set_new(o, "source", json_string(m->input_shown));
    json_object_set_new(o, "items_ok", json_integer(t->ok));
    json_object_set_new(o, "items_failed", json_integer(t->failed));
    json_object_set_new(o, "items_invalid", json_integer(t->invalid));
    json_object_set_new(o, "attempts", json_integer(t->attempts));
    json_object_set_new(o, "throttled",
                        json_integer((json_int_t)m->n_throttle_reports));
    json_object_set_new(o, "rate", json_string(m->limit_text));
    json_object_set_new(o, "effective_per_s",
                        json_real(gcra_rate_per_s(budget_limiter(m->bud))));
    json_object_set_new(o, "calls_per_s", json_real(rate_now(m, now)));
    json_object_set_new(o, "max_in_flight",
                        json_integer(budget_max_in_flight(m->bud)));
    json_object_set_new(o, "in_flight",
                        json_integer(budget_permits_in_use(m->bud)));
    int64_t pause = budget_paused_until(m->bud) - now;
    json_object_set_new(o, "paused_ms",
                        json_integer(pause > 0 ? pause / FO_NS_PER_MS : 0));
    json_t *ws = json_array();
    for (size_t i = 0; i < budget_capacity(m->bud); i++) {
        budget_worker *w = budget_at(m->bud, i);
        if (!w->used)
            continue;
        json_t *wj = json_object();
        json_object_set_new(wj, "id", json_string(w->name));
        json_object_set_new(wj, "host", json_string(w->host));
        json_object_set_new(wj, "pid", json_integer(w->pid));
        json_object_set_new(wj, "concurrency", json_integer(w->concurrency));
        json_object_set_new(wj, "held", json_integer(w->held));
        json_object_set_new(wj, "in_flight", json_integer(w->inflight));
        json_object_set_new(
            wj, "last_heartbeat_ms",
            json_integer((now - w->last_seen_ns) / FO_NS_PER_MS));
        json_object_set_new(wj, "results",
                            json_integer((json_int_t)w->results));
        double up = (double)(now - w->joined_ns) / 1e9;
        json_object_set_new(wj, "results_per_s",
                            json_real(up > 0 ? (double)w->results / up : 0));
        json_object_set_new(wj, "leaving", json_boolean(w->leaving));
        json_array_append_new(ws, wj);
    }
    json_object_set_new(o, "workers", ws);
    return o;
}

static void metric(fo_buf *b, const char *name, const char *type,
                   const char *help, double v)
{
    if (buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help,
                   name, type, name, v))
        return;
}

static char *render_metrics(master *m, int64_t now)
{
    const store_totals *t = &m->state.totals;
    fo_buf b;
    buf_init(&b, 1 << 20);
    if (buf_printf(&b,
                   "# HELP fanout_items_total Items recorded, by final "
                   "status.\n# TYPE fanout_items_total counter\n"
                   "fanout_items_total{status=\"ok\"} %" PRId64 "\n"
                   "fanout_items_total{status=\"failed\"} %" PRId64 "\n"
                   "fanout_items_total{status=\"invalid\"} %" PRId64 "\n",
                   t->ok, t->failed, t->invalid))
        return buf_take(&b);
    metric(&b, "fanout_items_expected", "gauge",
           "Items in the input (-1 when not known up front).",
           (double)m->total_items);
    metric(&b, "fanout_attempts_total", "counter",
           "HTTP attempts behind recorded items, retries included.",
           (double)t->attempts);
    metric(&b, "fanout_throttled_total", "counter",
           "Responses that pushed back (429, or 503 with Retry-After).",
           (double)m->n_throttle_reports);
    metric(&b, "fanout_tokens_granted_total", "counter",
           "Tokens granted to workers (one per HTTP attempt).",
           (double)budget_tokens_granted(m->bud));
    metric(&b, "fanout_rate_limit_per_second", "gauge",
           "Configured rate limit (the lowest of --rate), 0 for none.",
           base_rate(m));
    metric(&b, "fanout_effective_rate_per_second", "gauge",
           "Rate granted now, after adaptive lowering and API headers.",
           gcra_rate_per_s(budget_limiter(m->bud)));
    metric(&b, "fanout_calls_per_second", "gauge",
           "Tokens granted per second over the last 5 s.", rate_now(m, now));
    metric(&b, "fanout_calls_in_flight", "gauge",
           "Calls in flight across the cluster (permits held).",
           (double)budget_permits_in_use(m->bud));
    metric(&b, "fanout_max_in_flight", "gauge",
           "Cluster-wide cap on calls in flight, 0 for none.",
           (double)budget_max_in_flight(m->bud));
    metric(&b, "fanout_workers", "gauge", "Workers connected.",
           (double)budget_live(m->bud, NULL));
    metric(&b, "fanout_paused", "gauge",
           "1 while all calls are paused after API push-back.",
           budget_paused_until(m->bud) > now ? 1 : 0);
    metric(&b, "fanout_items_outstanding", "gauge",
           "Items read from the source and not yet committed.",
           (double)m->outstanding);
    metric(&b, "fanout_source_lag_bytes", "gauge",
           "Input bytes not yet acknowledged (-1 for a stream).",
           m->in_size >= 0 ? (double)(m->in_size - m->state.cursor.offset)
                           : -1);
    metric(&b, "fanout_source_acks_total", "counter",
           "Queue messages whose acknowledgement the queue confirmed.",
           (double)m->n_acked);
    metric(&b, "fanout_source_redelivered_total", "counter",
           "Queue messages delivered again although already recorded "
           "(acknowledged, not run).",
           (double)m->n_redelivered);
    metric(&b, "fanout_source_duplicate_deliveries_total", "counter",
           "Queue messages delivered again while still being worked on.",
           (double)m->n_dup_msgs);
    metric(&b, "fanout_recovered_results_total", "counter",
           "Results of calls in flight at an earlier run's end, recorded "
           "without calling again (queue sources).",
           (double)m->n_orphans_used);
    metric(&b, "fanout_redispatched_total", "counter",
           "Items sent again after a lease expired or a worker left.",
           (double)m->n_redispatch);
    metric(&b, "fanout_duplicate_results_total", "counter",
           "Late results for items already recorded (ignored).",
           (double)m->n_dup);
    metric(&b, "fanout_bad_frames_total", "counter",
           "Malformed or unknown messages dropped.", (double)m->n_bad_frames);
    metric(&b, "fanout_curve_denied_total", "counter",
           "Connections refused by the Curve allow-list.", (double)m->n_denied);
    if (buf_puts(&b, "# HELP fanout_batch_commit_seconds Duration of a group "
                     "commit (results fsync + state transaction).\n"
                     "# TYPE fanout_batch_commit_seconds histogram\n"))
        return buf_take(&b);
    uint64_t cum = 0;
    for (int i = 0; i < 12; i++) {
        cum += m->commit_hist[i];
        char le[32];
        if (i < 11)
            snprintf(le, sizeof le, "%g", commit_bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        if (buf_printf(&b,
                       "fanout_batch_commit_seconds_bucket{le=\"%s\"} %" PRIu64
                       "\n",
                       le, cum))
            return buf_take(&b);
    }
    if (buf_printf(&b,
                   "fanout_batch_commit_seconds_sum %.9g\n"
                   "fanout_batch_commit_seconds_count %" PRIu64 "\n",
                   m->commit_sum_s, m->commit_count))
        return buf_take(&b);
    return buf_take(&b);
}

static char *http_handler(void *ctx, const char *path, int *status,
                          const char **content_type)
{
    master *m = ctx;
    int64_t now = clock_now_ns();
    *status = 200;
    if (!strcmp(path, "/metrics")) {
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        return render_metrics(m, now);
    }
    if (!strcmp(path, "/status")) {
        *content_type = "application/json";
        json_t *st = status_json(m, now);
        json_object_set_new(st, "ok", json_true());
        double frac = m->total_items > 0 ? (double)m->state.totals.items /
                                               (double)m->total_items
                                         : -1;
        json_object_set_new(st, "progress", json_real(frac));
        double rate = rate_now(m, now);
        json_object_set_new(
            st, "eta_s",
            m->total_items >= 0 && rate > 0
                ? json_real((double)(m->total_items - m->state.totals.items) /
                            rate)
                : json_null());
        char *s =
            record_json_line(st, JSON_COMPACT | JSON_REAL_PRECISION(6), NULL);
        json_decref(st);
        return s;
    }
    *status = 404;
    return xstrdup("not found: try /metrics or /status\n");
}

/* Applies {"cmd":"set","rate":[...]|"none","max_in_flight":N}. Returns 0,
 * or -1 with a message naming the bad field. Settings are stored so that a
 * restarted master keeps them. */
static int ctl_set(master *m, json_t *req, char *err, size_t errlen)
{
    json_t *rate = json_object_get(req, "rate");
    json_t *mif = json_object_get(req, "max_in_flight");
    gcra_rate rates[GCRA_MAX_LIMITS];
    size_t n = 0;
    if (rate) {
        if (json_is_string(rate) && !strcmp(json_string_value(rate), "none"))
            rate = json_array();
        else
            json_incref(rate);
        if (!json_is_array(rate)) {
            snprintf(err, errlen, "rate: expected a list of N/UNIT");
            json_decref(rate);
            return -1;
        }
        size_t i;
        json_t *r;
        json_array_foreach(rate, i, r)
        {
            char e[256];
            if (n == GCRA_MAX_LIMITS || !json_is_string(r) ||
                gcra_parse_rate(json_string_value(r), &rates[n], e, sizeof e)) {
                snprintf(err, errlen, "--rate: %s",
                         n == GCRA_MAX_LIMITS ? "too many limits"
                         : json_is_string(r)  ? e
                                              : "not a string");
                json_decref(rate);
                return -1;
            }
            n++;
        }
        json_decref(rate);
    }
    if (mif && (!json_is_integer(mif) || json_integer_value(mif) < 0 ||
                json_integer_value(mif) > 1000000)) {
        snprintf(err, errlen, "--max-in-flight: expected 0 to 1000000");
        return -1;
    }
    if (rate) {
        if (set_limits(m, rates, n) < 0) {
            snprintf(err, errlen, "--rate: too many limits");
            return -1;
        }
        /* A new configured ceiling: adaptive state starts over. */
        adaptive_init(&m->ad, m->cfg->adaptive);
        m->applied_scale = 0;
        apply_scale(m);
        if (store_set_setting(m->st, "rate",
                              m->limit_text[0] ? m->limit_text : "none"))
            LOG_ERROR("store.setting_failed", "could not store the rate");
        LOG_INFO("ctl.rate", "rate set to %s by fanout-ctl",
                 m->limit_text[0] ? m->limit_text : "none");
    }
    if (mif) {
        budget_set_max_in_flight(m->bud, json_integer_value(mif));
        char v[32];
        snprintf(v, sizeof v, "%" JSON_INTEGER_FORMAT, json_integer_value(mif));
        if (store_set_setting(m->st, "max_in_flight", v))
            LOG_ERROR("store.setting_failed", "could not store max-in-flight");
        LOG_INFO("ctl.max_in_flight", "max-in-flight set to %s by fanout-ctl",
                 v);
    }
    return 0;
}

static void handle_ctl(master *m, const void *rid, size_t rid_len,
                       const char *text, int64_t now)
{
    json_error_t jerr;
    json_t *req = json_loads(text, 0, &jerr);
    json_t *rep;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    char err[300] = "";
    if (!cmd) {
        rep = json_pack("{s:b,s:s}", "ok", 0, "error",
                        "expected {\"cmd\": \"status\"|\"set\", ...}");
    } else if (!strcmp(cmd, "status")) {
        rep = status_json(m, now);
        json_object_set_new(rep, "ok", json_true());
    } else if (!strcmp(cmd, "set")) {
        if (ctl_set(m, req, err, sizeof err) == 0) {
            rep = status_json(m, now);
            json_object_set_new(rep, "ok", json_true());
        } else {
            rep = json_pack("{s:b,s:s}", "ok", 0, "error", err);
        }
    } else {
        snprintf(err, sizeof err, "unknown command '%.40s'", cmd);
        rep = json_pack("{s:b,s:s}", "ok", 0, "error", err);
    }
    json_decref(req);
    char *out = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(rep);
    proto_msg reply = {.type = PROTO_CTL_REPLY, .epoch = store_epoch(m->st)};
    reply.u.ctl.json = out;
    send_raw_to(m, rid, rid_len, &reply);
    free(out);
}

static void handle_control(master *m, int64_t now)
{
    for (int turn = 0; turn < 5000; turn++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, m->ctl, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        int more = zmq_msg_more(&rid);
        int got = more ? zmq_msg_recv(&body, m->ctl, ZMQ_DONTWAIT) >= 0 : 0;
        /* Drain any further frames of a malformed multipart message. */
        while (got && zmq_msg_more(&body)) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            zmq_msg_recv(&extra, m->ctl, ZMQ_DONTWAIT);
            int again = zmq_msg_more(&extra);
            zmq_msg_close(&extra);
            got = 2;
            if (!again)
                break;
        }
        proto_msg msg;
        char err[256] = "multipart frame";
        fo_err rc = got == 1
                        ? proto_decode(zmq_msg_data(&body), zmq_msg_size(&body),
                                       &msg, err, sizeof err)
                        : FO_EPROTO;
        zmq_msg_close(&body);
        const void *id = zmq_msg_data(&rid);
        size_t idlen = zmq_msg_size(&rid);
        if (rc) {
            m->n_bad_frames++;
            if (m->n_bad_frames <= 10 || m->n_bad_frames % 1000 == 0)
                LOG_WARN(rc == FO_EVERSION ? "proto.bad_version"
                                           : "proto.bad_frame",
                         "dropped a control frame (%" PRIu64 " so far): %s",
                         m->n_bad_frames, err);
            zmq_msg_close(&rid);
            continue;
        }
        budget_worker *w = budget_find(m->bud, id, idlen);
        if (msg.type == PROTO_CTL) {
            handle_ctl(m, id, idlen, msg.u.ctl.json, now);
        } else if (msg.type == PROTO_HELLO) {
            /* HELLOs a worker queued while it could not reach us arrive
             * together: the first one joins it, the others rejoin. */
            int known = w != NULL;
            w = budget_join(m->bud, id, idlen, now);
            if (!w) {
                LOG_WARN("worker.refused",
                         "worker %s refused: %d workers "
                         "already",
                         msg.u.hello.worker_id, BUDGET_MAX_WORKERS);
            } else {
                snprintf(w->name, sizeof w->name, "%s", msg.u.hello.worker_id);
                snprintf(w->host, sizeof w->host, "%s", msg.u.hello.host);
                w->pid = msg.u.hello.pid;
                w->concurrency =
                    msg.u.hello.concurrency ? msg.u.hello.concurrency : 1;
                proto_msg job = {.type = PROTO_JOB,
                                 .epoch = store_epoch(m->st)};
                job.u.job.job_json = m->job_json;
                send_to(m, w, &job);
                LOG_AT(known ? LOG_LVL_DEBUG : LOG_LVL_INFO,
                       known ? "worker.rejoined" : "worker.joined",
                       "worker %s (host %s, pid %" PRId64 ", concurrency %u)",
                       w->name, w->host, w->pid, w->concurrency);
            }
        } else if (!w) {
            proto_msg reset = {.type = PROTO_RESET,
                               .epoch = store_epoch(m->st)};
            send_raw_to(m, id, idlen, &reset);
        } else {
            w->last_seen_ns = now;
            switch (msg.type) {
            case PROTO_HEARTBEAT:
                on_heartbeat(m, w, &msg, now);
                break;
            case PROTO_TOKEN_REQ:
                budget_request(m->bud, w, msg.u.token_req.want,
                               msg.u.token_req.seen, msg.u.token_req.released);
                break;
            case PROTO_THROTTLED: {
                m->n_throttle_reports++;
                int64_t ra = msg.u.throttled.retry_after_ms
                                 ? msg.u.throttled.retry_after_ms
                                 : 1000;
                int64_t until = now + ra * FO_NS_PER_MS;
                pause_all(m, now, ra);
                if (adaptive_on_throttle(&m->ad, now,
                                         observed_scale(m, now, base_rate(m))))
                    apply_scale(m);
                if (until > m->paused_logged_until + FO_NS_PER_S) {
                    LOG_WARN("api.throttled",
                             "HTTP %u from the API (via %s): all calls "
                             "paused for %" PRId64 " ms",
                             msg.u.throttled.http_status, w->name, ra);
                    m->paused_logged_until = until;
                }
                break;
            }
            case PROTO_RATEINFO: {
                const proto_msg *ri = &msg;
                if (ri->u.rateinfo.limit > 0 && ri->u.rateinfo.window_ms > 0 &&
                    m->nrates) {
                    double before = adaptive_scale(&m->ad);
                    adaptive_on_policy(&m->ad,
                                       (double)ri->u.rateinfo.limit * 1000.0 /
                                           (double)ri->u.rateinfo.window_ms,
                                       base_rate(m));
                    if (adaptive_scale(&m->ad) < before)
                        LOG_INFO("api.policy",
                                 "the API announces %" PRId64 " per %" PRId64
                                 " ms; staying under it",
                                 ri->u.rateinfo.limit,
                                 ri->u.rateinfo.window_ms);
                    apply_scale(m);
                }
                if (ri->u.rateinfo.remaining == 0 &&
                    ri->u.rateinfo.reset_ms > 0) {
                    int64_t ms = ri->u.rateinfo.reset_ms > 3600000
                                     ? 3600000
                                     : ri->u.rateinfo.reset_ms;
                    if (now + ms * FO_NS_PER_MS > budget_paused_until(m->bud)) {
                        m->n_quota_pauses++;
                        LOG_INFO("api.quota_used",
                                 "the API reports no requests left in its "
                                 "window: pausing %" PRId64 " ms",
                                 ms);
                    }
                    pause_all(m, now, ms);
                }
                break;
            }
            case PROTO_BYE:
                for (uint32_t i = 0; i < msg.u.bye.nheld; i++)
                    requeue(m, msg.u.bye.held[i],
                            "handed back by a worker "
                            "that is leaving");
                w->leaving = 1;
                LOG_INFO("worker.leaving",
                         "worker %s leaves; %u items "
                         "handed back",
                         w->name, msg.u.bye.nheld);
                break;
            default:
                m->n_bad_frames++;
                LOG_WARN("proto.unexpected", "unexpected %s from worker %s",
                         proto_type_name(msg.type), w->name);
                break;
            }
        }
        proto_msg_fini(&msg);
        zmq_msg_close(&rid);
    }
}

/* ---- input ----------------------------------------------------------- */

static int is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

static int prev_committed(master *m, uint64_t batch, uint32_t idx)
{
    size_t lo = 0, hi = m->nprev;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const store_row *r = &m->prev[mid];
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
static int render(master *m, const json_t *obj, mitem *it, const char *where,
                  char *why, size_t cap)
{
    char err[300];
    fo_buf b;
    buf_init(&b, (size_t)m->cfg->max_line_bytes + 65536);
    if (template_render(m->url_t, obj, TEMPLATE_URL, &b, err, sizeof err)) {
        snprintf(why, cap, "%s: --url: %s", where, err);
        buf_fini(&b);
        return -1;
    }
    it->url = buf_take(&b);
    if (m->body_t) {
        buf_init(&b, (size_t)m->cfg->max_line_bytes * 2 + 65536);
        if (template_render(m->body_t, obj, TEMPLATE_JSON, &b, err,
                            sizeof err)) {
            snprintf(why, cap, "%s: --body: %s", where, err);
            buf_fini(&b);
            FO_FREE(&it->url);
            return -1;
        }
        it->body_len = b.len;
        it->body = buf_take(&b);
    } else if (m->body_whole_item) {
        it->body = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        it->body_len = strlen(it->body);
    }
    return 0;
}

/* Closes the batch being built: it joins the ring and its items the queue. */
static void close_batch(master *m, int64_t now)
{
    mbatch *b = &m->bld;
    if (b->n == 0)
        return;
    *(mbatch *)ring_push(&m->batches) = *b;
    mbatch *rb = batch_at(m, m->batches.len - 1);
    for (uint32_t i = 0; m->orphans.len && i < rb->n; i++)
        if (rb->items[i].state == IT_PENDING && rb->items[i].msg_id)
            take_orphan(m, rb, i, now);
    for (uint32_t i = m->bld_queued; i < rb->n; i++)
        if (rb->items[i].state == IT_PENDING)
            dq_push(m, (proto_ref){rb->no, i});
    m->bld_queued = 0;
    memset(b, 0, sizeof *b);
    m->bld_cap = 0;
    b->no = rb->no + 1;
    /* Queue messages whose records an earlier run committed. */
    ack_batch(m, rb);
}

static void add_line(master *m, const source_item *ln, int64_t now)
{
    fo_err rc = ln->rc;
    char idem[48] = "";
    if (ln->msg_id) {
        mitem probe = {.msg_id = (char *)ln->msg_id, .line_no = ln->line_no};
        idem_key(m, &probe, idem);
    }
    if (ln->msg_id && json_object_get(m->open_ids, idem)) {
        /* Delivered again while we still hold it (its lease ran out). */
        m->n_dup_msgs++;
        source_release(m->src, ln->handle);
        return;
    }
    mbatch *b = &m->bld;
    if (b->n == m->bld_cap) {
        m->bld_cap = m->bld_cap ? m->bld_cap * 2 : 16;
        b->items = xrealloc(b->items, m->bld_cap * sizeof *b->items);
    }
    uint32_t idx = b->n++;
    mitem *it = &b->items[idx];
    memset(it, 0, sizeof *it);
    it->holder = -1;
    it->line_no = ln->line_no;
    b->end_offset = ln->end_offset;
    b->next_line = ln->line_no + 1;
    char where[200], line_key[160];
    if (ln->msg_id) {
        it->msg_id = xstrdup(ln->msg_id);
        it->qhandle = ln->handle;
        json_object_set_new(
            m->open_ids, idem,
            json_integer((json_int_t)((b->no << 20) | (uint64_t)idx)));
        snprintf(where, sizeof where, "message %.150s", ln->msg_id);
        snprintf(line_key, sizeof line_key, "%.150s", ln->msg_id);
    } else {
        snprintf(where, sizeof where, "line %" PRId64, ln->line_no);
        snprintf(line_key, sizeof line_key, "%" PRId64, ln->line_no);
    }

    if (ln->msg_id
            ? !ln->first && store_message_done(m->st, ln->msg_id)
            : (prev_committed(m, b->no, idx) ||
               (store_repairing(m->st) && store_present(m->st, ln->line_no)))) {
        it->state = IT_DONE;
        b->done++;
        it->key = xstrdup(line_key);
        m->n_redelivered += ln->msg_id != NULL;
        if (ln->msg_id)
            LOG_DEBUG("source.redelivered",
                      "%s is recorded already; acknowledging it", where);
        return;
    }
    m->outstanding++;
    char why[600];
    if (rc == FO_EINVAL) {
        snprintf(why, sizeof why, "%s: %s", where, ln->bad);
        it->key = xstrdup(line_key);
        record_invalid(m, b, idx, line_key, why, now);
        return;
    }
    if (rc == FO_ETOOBIG) {
        snprintf(why, sizeof why,
                 "%s is longer than --max-line-bytes (%" PRId64 " bytes)",
                 where, m->cfg->max_line_bytes);
        it->key = xstrdup(line_key);
        record_invalid(m, b, idx, line_key, why, now);
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
        it->key = item_key(obj, m->cfg->key, line_key, &bad);
        if (bad)
            snprintf(why, sizeof why,
                     "%s: field '%s' (the item id, --key) is not a string "
                     "or integer",
                     where, m->cfg->key);
        else if (render(m, obj, it, where, why, sizeof why) == 0) {
            json_decref(obj);
            it->state = IT_PENDING;
            return;
        }
    }
    json_decref(obj);
    if (!it->key)
        it->key = xstrdup(line_key);
    record_invalid(m, b, idx, it->key, why, now);
}

static int64_t window(master *m)
{
    if (m->cfg->window > 0)
        return m->cfg->window;
    /* An item holds its place until its record is committed, a few ms
     * after its call ended: with a fast API much of the window waits on
     * the commit, so it is several times the calls that fit in flight. */
    int64_t conc;
    budget_live(m->bud, &conc);
    int64_t w = conc ? 4 * conc + 256 : 0;
    if (w < 2 * m->cfg->batch_size)
        w = 2 * m->cfg->batch_size;
    return w > WINDOW_MAX ? WINDOW_MAX : w;
}

static int read_input(master *m, int64_t now)
{
    int64_t win = window(m);
    while (!m->src_eof && m->outstanding < win) {
        source_item ln;
        int rc = source_next(m->src, win - m->outstanding, &ln, now);
        if (rc == SOURCE_AGAIN) {
            /* A queue's batch is what is there, up to --batch-size. A
             * file's batches are always whole (but the last): the rows of
             * an earlier run are keyed by batch and index. */
            if (m->queue) {
                close_batch(m, now);
            } else {
                /* A pipe that has nothing more now: send what the batch
                 * holds so far without closing it. */
                for (uint32_t i = m->bld_queued; i < m->bld.n; i++)
                    if (m->bld.items[i].state == IT_PENDING)
                        dq_push(m, (proto_ref){m->bld.no, i});
                m->bld_queued = m->bld.n;
            }
            return 0;
        }
        if (rc == SOURCE_EOF) {
            m->src_eof = 1;
            close_batch(m, now);
            LOG_INFO("source.eof", "end of input %s", m->input_shown);
            return 0;
        }
        if (rc == SOURCE_ERROR)
            return fatal(m, "source.read_failed", "reading --input %s: %s",
                         m->input_shown, source_error(m->src));
        if (ln.rc == FO_OK && !ln.msg_id && is_blank(ln.data, ln.len)) {
            m->n_blank++;
            continue;
        }
        add_line(m, &ln, now);
        if (m->bld.n >= (uint32_t)m->cfg->batch_size)
            close_batch(m, now);
    }
    return 0;
}

/* ---- dispatch and housekeeping -------------------------------------- */

static void dispatch(master *m, int64_t now)
{
    m->push_blocked = 0;
    if (budget_live(m->bud, NULL) == 0 || now < m->dispatch_after_ns)
        return;
    while (m->dq.len > 0) {
        proto_ref ref = *(proto_ref *)ring_at(&m->dq, 0);
        mitem *it = find_item(m, ref);
        if (it && it->state == IT_PENDING && it->url) {
            proto_msg w = {.type = PROTO_WORK, .epoch = store_epoch(m->st)};
            char idem_full[48];
            idem_key(m, it, idem_full);
            w.u.work.ref = ref;
            w.u.work.key = it->key;
            w.u.work.url = it->url;
            w.u.work.body = it->body;
            w.u.work.body_len = it->body_len;
            w.u.work.idem_key = idem_full;
            buf_reset(&m->scratch);
            if (proto_encode(&w, &m->scratch) != FO_OK) {
                LOG_ERROR("proto.encode_failed", "item %s too large", it->key);
            } else if (zmq_send(m->push, m->scratch.data, m->scratch.len,
                                ZMQ_DONTWAIT) < 0) {
                m->push_blocked = 1;
                return;
            }
            if (!m->first_dispatch_logged) {
                m->first_dispatch_logged = 1;
                LOG_INFO("dispatch.first",
                         "first item dispatched %.3f s "
                         "after start",
                         (double)(clock_now_ns() - m->run_start_ns) / 1e9);
            }
            it->state = IT_SENT;
            it->sent_ns = now;
            it->holder = -1;
            it->dispatches++;
            it->deadline_ns = now + m->cfg->lease_ms * FO_NS_PER_MS;
        }
        ring_pop(&m->dq);
    }
}

/* An item goes back to the queue when its lease runs out, or sooner when
 * no worker has ever listed it: workers read their work socket on every
 * turn and list every item they hold in each heartbeat, so an item nobody
 * claimed within a few heartbeats was lost in the pipe of a worker that
 * left or died, and waiting out the whole lease would only stall. */
static void scan_leases(master *m, int64_t now)
{
    int64_t unclaimed_ns = m->cfg->heartbeat_ms * FO_NS_PER_MS * 5 / 2;
    for (size_t i = 0; i <= m->batches.len; i++) {
        mbatch *b = i < m->batches.len ? batch_at(m, i) : &m->bld;
        for (uint32_t k = 0; k < b->n; k++) {
            mitem *it = &b->items[k];
            if (it->state != IT_SENT)
                continue;
            if (it->deadline_ns < now) {
                LOG_INFO("lease.expired",
                         "id %s: no worker reported it for %" PRId64
                         " ms; re-dispatching",
                         it->key, m->cfg->lease_ms);
                requeue(m, (proto_ref){b->no, k}, "lease expired");
            } else if (it->holder < 0 && now - it->sent_ns > unclaimed_ns &&
                       budget_live(m->bud, NULL) > 0) {
                LOG_DEBUG("lease.unclaimed",
                          "id %s: no worker has listed it; re-dispatching",
                          it->key);
                requeue(m, (proto_ref){b->no, k}, "never claimed");
            }
        }
    }
}

/* Queue: ids whose acknowledgement the queue confirmed are forgotten in
 * the store with the next commit. */
static void take_acked(master *m, int64_t now)
{
    source_tick(m->src, now, m->batches.len > 0 || m->bld.n > 0);
    size_t n;
    char **ids = source_take_acked(m->src, &n);
    if (!n) {
        free(ids);
        return;
    }
    m->n_acked += n;
    m->forget = xrealloc(m->forget, (m->nforget + n) * sizeof *m->forget);
    memcpy(m->forget + m->nforget, ids, n * sizeof *ids);
    m->nforget += n;
    free(ids);
}

static void tick(master *m, int64_t now)
{
    expire_orphans(m, now);
    int64_t lease_ns = m->cfg->lease_ms * FO_NS_PER_MS;
    for (size_t i = 0; i < budget_capacity(m->bud); i++) {
        budget_worker *w = budget_at(m->bud, i);
        if (w->used && now - w->last_seen_ns > lease_ns)
            expire_worker(m, w, w->leaving ? "left" : "went silent");
    }
    if (now >= m->next_lease_ns) {
        scan_leases(m, now);
        m->next_lease_ns = now + 250 * FO_NS_PER_MS;
    }
    if (now >= m->next_hb_ns) {
        broadcast(m, PROTO_HEARTBEAT);
        m->next_hb_ns = now + m->cfg->heartbeat_ms * FO_NS_PER_MS;
    }
    if (m->spawned.n)
        spawn_reap(&m->spawned);
    if (adaptive_tick(&m->ad, now))
        apply_scale(m);
}

static void show_progress(master *m, int64_t now, int force)
{
    progress_snapshot p;
    memset(&p, 0, sizeof p);
    const store_totals *t = &m->state.totals;
    p.done = t->items;
    p.total = m->total_items;
    p.fraction = -1;
    if (m->total_items < 0 && m->in_size > 0)
        p.fraction = (double)m->state.cursor.offset / (double)m->in_size;
    p.rate_per_s = rate_now(m, now);
    p.limit = m->limit_text;
    p.effective_per_s = gcra_rate_per_s(budget_limiter(m->bud));
    p.scale = adaptive_scale(&m->ad);
    p.ok = t->ok;
    p.failed = t->failed;
    p.invalid = t->invalid;
    p.retries = t->attempts - (t->ok + t->failed);
    if (p.retries < 0)
        p.retries = 0;
    p.throttled = (int64_t)m->n_throttle_reports;
    p.workers = (int64_t)budget_live(m->bud, NULL);
    p.inflight = budget_permits_in_use(m->bud);
    p.paused = budget_paused_until(m->bud) > now;
    progress_show(m->pmode, &p, now, force);
}

/* ---- setup ----------------------------------------------------------- */

static int write_file_atomic(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (util_write_all(fd, data, len) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int endpoint_port(void *sock, char *ep, size_t cap)
{
    size_t len = cap;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len) != 0)
        return -1;
    const char *colon = strrchr(ep, ':');
    int64_t port;
    if (!colon || util_parse_i64(colon + 1, 1, 65535, &port) < 0)
        return -1;
    return (int)port;
}

static void *make_socket(master *m, int type, int64_t maxmsg)
{
    void *s = zmq_socket(m->zctx, type);
    int linger = 0, hb = 1000, hbt = 3000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hbt, sizeof hbt);
    if (maxmsg > 0)
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    return s;
}

/* The ZAP handler must exist before the first Curve socket binds: without
 * one, libzmq admits every client that knows the server's public key. */
static int start_curve(master *m)
{
    const master_config *c = m->cfg;
    char err[600];
    if (keys_read(c->curve_secret, 1, &m->server_key, err, sizeof err)) {
        fprintf(stderr, "fanout-master: --curve-secret %s\n", err);
        return EXIT_USAGE;
    }
    keys_pair *pubs;
    size_t n;
    if (keys_read_dir(c->curve_allow, &pubs, &n, err, sizeof err)) {
        fprintf(stderr, "fanout-master: --curve-allow %s\n", err);
        return EXIT_USAGE;
    }
    m->allowed = xcalloc(n, sizeof *m->allowed);
    for (size_t i = 0; i < n; i++)
        zmq_z85_decode(m->allowed[i], pubs[i].public_key);
    m->nallowed = n;
    free(pubs);
    m->zap = zmq_socket(m->zctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(m->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(m->zap, "inproc://zeromq.zap.01") != 0) {
        fprintf(stderr,
                "fanout-master: cannot start the Curve "
                "authentication handler: %s\n",
                zmq_strerror(errno));
        return EXIT_FATAL;
    }
    LOG_INFO("curve.enabled",
             "all sockets encrypted; %zu worker keys "
             "admitted from %s",
             n, c->curve_allow);
    return 0;
}

/* SIGHUP: read --curve-allow again, so a new worker host can join without a
 * restart. Connections already admitted stay: ZAP runs at the handshake. */
static void reload_allow(master *m)
{
    keys_pair *pubs;
    size_t n;
    char err[600];
    if (keys_read_dir(m->cfg->curve_allow, &pubs, &n, err, sizeof err)) {
        LOG_ERROR("curve.reload_failed",
                  "--curve-allow %s; still admitting "
                  "the %zu keys from before",
                  err, m->nallowed);
        return;
    }
    free(m->allowed);
    m->allowed = xcalloc(n, sizeof *m->allowed);
    for (size_t i = 0; i < n; i++)
        zmq_z85_decode(m->allowed[i], pubs[i].public_key);
    m->nallowed = n;
    free(pubs);
    LOG_INFO("curve.reloaded", "%zu worker keys admitted from %s", n,
             m->cfg->curve_allow);
}

/* Answers ZAP requests: admit a CURVE client whose key is listed. */
static void handle_zap(master *m)
{
    for (int turn = 0; turn < 100; turn++) {
        zmq_msg_t f[8];
        int nf = 0, more = 1;
        while (more && nf < 8) {
            zmq_msg_init(&f[nf]);
            if (zmq_msg_recv(&f[nf], m->zap, nf ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&f[nf]);
                if (nf == 0)
                    return;
                break;
            }
            more = zmq_msg_more(&f[nf]);
            nf++;
        }
        while (more) { /* more frames than a ZAP request has: drain */
            zmq_msg_t x;
            zmq_msg_init(&x);
            zmq_msg_recv(&x, m->zap, 0);
            more = zmq_msg_more(&x);
            zmq_msg_close(&x);
        }
        int ok = 0;
        char addr[64] = "?", keytxt[41] = "?";
        if (nf == 7 && zmq_msg_size(&f[5]) == 5 &&
            !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
            zmq_msg_size(&f[6]) == 32) {
            const uint8_t *key = zmq_msg_data(&f[6]);
            for (size_t i = 0; i < m->nallowed && !ok; i++)
                ok = !memcmp(m->allowed[i], key, 32);
            zmq_z85_encode(keytxt, key, 32);
            snprintf(addr, sizeof addr, "%.*s",
                     (int)(zmq_msg_size(&f[3]) < 63 ? zmq_msg_size(&f[3]) : 63),
                     (const char *)zmq_msg_data(&f[3]));
        }
        const char *rid = nf > 1 ? zmq_msg_data(&f[1]) : "";
        size_t rid_len = nf > 1 ? zmq_msg_size(&f[1]) : 0;
        zmq_send(m->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(m->zap, rid, rid_len, ZMQ_SNDMORE);
        zmq_send(m->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(m->zap, ok ? "OK" : "key not admitted", ok ? 2 : 16,
                 ZMQ_SNDMORE);
        zmq_send(m->zap, "", 0, ZMQ_SNDMORE);
        zmq_send(m->zap, "", 0, 0);
        if (!ok) {
            m->n_denied++;
            if (m->n_denied <= 20 || m->n_denied % 1000 == 0)
                LOG_WARN("curve.denied",
                         "refused a connection from %s with "
                         "key %s: not in --curve-allow (%" PRIu64 " so far)",
                         addr, keytxt, m->n_denied);
        }
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
    }
}

static int bind_sockets(master *m, const char *host, int64_t port)
{
    m->ctl = make_socket(m, ZMQ_ROUTER, PROTO_MAX_CONTROL_BYTES);
    m->push = make_socket(m, ZMQ_PUSH, 0);
    m->pull = make_socket(m, ZMQ_PULL,
                          PROTO_MAX_CONTROL_BYTES + PROTO_MAX_BODY_BYTES);
    int hwm = 1000;
    zmq_setsockopt(m->push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    int handover = 1;
    zmq_setsockopt(m->ctl, ZMQ_ROUTER_HANDOVER, &handover, sizeof handover);
    void *socks[3] = {m->ctl, m->push, m->pull};
    char *eps[3] = {m->ctl_ep, m->work_ep, m->result_ep};
    if (m->zap) {
        int server = 1;
        for (int i = 0; i < 3; i++) {
            zmq_setsockopt(socks[i], ZMQ_CURVE_SERVER, &server, sizeof server);
            zmq_setsockopt(socks[i], ZMQ_CURVE_SECRETKEY,
                           m->server_key.secret_key, KEYS_Z85_LEN + 1);
            zmq_setsockopt(socks[i], ZMQ_ZAP_DOMAIN, "fanout", 6);
        }
    }
    int ports[3];
    for (int i = 0; i < 3; i++) {
        char ep[300];
        if (port == 0)
            snprintf(ep, sizeof ep, "tcp://%s:*", host);
        else
            snprintf(ep, sizeof ep, "tcp://%s:%" PRId64, host, port + i);
        if (zmq_bind(socks[i], ep) != 0) {
            fprintf(stderr,
                    "fanout-master: --bind: cannot listen on %s: %s"
                    "\n",
                    ep, zmq_strerror(errno));
            return -1;
        }
        ports[i] = endpoint_port(socks[i], eps[i], 300);
        if (ports[i] < 0) {
            fprintf(stderr,
                    "fanout-master: cannot read back the endpoint "
                    "of %s\n",
                    ep);
            return -1;
        }
    }
    m->work_port = ports[1];
    m->result_port = ports[2];
    return 0;
}

static char *build_job_json(master *m)
{
    const master_config *c = m->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(c->method));
    json_t *hs = json_array();
    int has_ct = 0;
    for (size_t i = 0; i < c->nheaders; i++) {
        json_array_append_new(hs, json_string(c->headers[i]));
        if (strncasecmp(c->headers[i], "content-type:", 13) == 0)
            has_ct = 1;
    }
    if ((m->body_t || m->body_whole_item) && !has_ct)
        json_array_append_new(hs, json_string("Content-Type: "
                                              "application/json"));
    json_object_set_new(o, "headers", hs);
    json_object_set_new(o, "timeout_ms", json_integer(c->timeout_ms));
    json_object_set_new(o, "connect_timeout_ms",
                        json_integer(c->connect_timeout_ms));
    json_object_set_new(o, "max_attempts", json_integer(c->max_attempts));
    json_object_set_new(o, "max_throttled", json_integer(c->max_throttled));
    json_object_set_new(o, "backoff_base_ms", json_integer(c->backoff_base_ms));
    json_object_set_new(o, "backoff_max_ms", json_integer(c->backoff_max_ms));
    json_object_set_new(o, "max_response_bytes",
                        json_integer(c->max_response_bytes));
    json_object_set_new(o, "work_port", json_integer(m->work_port));
    json_object_set_new(o, "result_port", json_integer(m->result_port));
    json_object_set_new(o, "heartbeat_ms", json_integer(c->heartbeat_ms));
    json_object_set_new(o, "lease_ms", json_integer(c->lease_ms));
    json_object_set_new(o, "rate_limited", json_integer(c->nrates > 0));
    json_object_set_new(
        o, "token_slack_ms",
        json_integer(c->rate_margin_ms / 2 > 0 ? c->rate_margin_ms / 2 : 1));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *build_identity(const master_config *c)
{
    json_t *o = json_object();
    char abs[4096];
    const char *in = c->input;
    if (queue_is_url(in)) {
        /* Without credentials or tunables (lease= may change between
         * runs). */
        queue_url_public(in, abs, sizeof abs);
        in = abs;
    } else if (strcmp(in, "-") != 0 && realpath(in, abs)) {
        in = abs;
    }
    json_object_set_new(o, "input", json_string(in));
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
    master *m = ctx;
    if ((m->nprev & (m->nprev + 1)) == 0)
        m->prev = xrealloc(m->prev, (m->nprev * 2 + 1) * sizeof *m->prev);
    m->prev[m->nprev++] = *row;
}

static int open_source(master *m)
{
    const master_config *c = m->cfg;
    const store_cursor *cur = &m->state.cursor;
    source_cfg sc = {.input = c->input,
                     .max_line_bytes = c->max_line_bytes,
                     .follow = c->follow,
                     .idle_grace_ms = c->idle_grace_ms,
                     .timeout_ms = 10000,
                     .zctx = m->zctx,
                     .st = m->st};
    char err[1024];
    int code = EXIT_FATAL;
    m->src = source_open(&sc, cur, err, sizeof err, &code);
    if (!m->src) {
        fprintf(stderr, "fanout-master: %s\n", err);
        return code;
    }
    m->queue = source_is_queue(m->src);
    if (m->queue)
        queue_url_public(c->input, m->input_shown, sizeof m->input_shown);
    else
        snprintf(m->input_shown, sizeof m->input_shown, "%s", c->input);
    m->in_size = source_size(m->src);
    m->total_items = -1;
    int64_t rest = source_count_rest(m->src);
    /* Records already made for lines past the cursor (open batches, or
     * every present line of a repair) are in both counts. */
    if (rest >= 0)
        m->total_items =
            rest + (store_repairing(m->st) ? 0 : m->state.totals.items);
    m->bld.no = cur->batch;
    /* A queue has no resume point, and an earlier run may have used batch
     * numbers past the last commit: start beyond any of them, so that a
     * late result of that run never matches a new item. */
    if (m->queue)
        m->bld.no = cur->batch + WINDOW_MAX + 1;
    return 0;
}

/* Rewrites results.jsonl from a scan of itself, keeping every whole,
 * parseable record once (and, with --redrive, dropping failed ones), then
 * restarts the job from the first input line in repair mode: lines whose
 * record is present are skipped, the rest run. Used when the file is
 * shorter than what was committed (cut short or replaced outside fanout)
 * and for --redrive. Memory stays O(1): the present set lives in the
 * store. */
static int repair_results(master *m, int redrive)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/results.jsonl", m->cfg->out);
    snprintf(tmp, sizeof tmp, "%s/results.jsonl.repair", m->cfg->out);
    char err[512];
    int in = open(path, O_RDONLY | O_CLOEXEC);
    int outfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in < 0 || outfd < 0) {
        fprintf(stderr, "fanout-master: repairing %s: %s\n", path,
                strerror(errno));
        if (in >= 0)
            close(in);
        if (outfd >= 0)
            close(outfd);
        return EXIT_FATAL;
    }
    size_t cap = (size_t)m->cfg->max_response_bytes * 8 + (1 << 20);
    jsonl *r = jsonl_new(in, cap, 0, 1);
    store_state ns = m->state;
    memset(&ns.totals, 0, sizeof ns.totals);
    ns.totals.active_ms = m->state.totals.active_ms;
    ns.cursor = (store_cursor){0, 1, 0};
    ns.finished = 0;
    int64_t kept = 0, dropped = 0, redriven = 0, size = 0;
    int rc = EXIT_FATAL;
    if (store_repair_begin(m->st, err, sizeof err)) {
        fprintf(stderr, "fanout-master: %s\n", err);
        goto out;
    }
    for (;;) {
        jsonl_line ln;
        fo_err e = jsonl_next(r, &ln);
        if (e == FO_EEOF)
            break;
        if (e == FO_EIO) {
            fprintf(stderr, "fanout-master: reading %s: %s\n", path,
                    strerror(errno));
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
            store_present(m->st, json_integer_value(lj))) {
            json_decref(o);
            dropped++;
            continue;
        }
        if (redrive && !strcmp(st, RECORD_FAILED)) {
            json_decref(o);
            redriven++;
            continue;
        }
        ns.totals.items++;
        if (!strcmp(st, RECORD_OK))
            ns.totals.ok++;
        else if (!strcmp(st, RECORD_FAILED))
            ns.totals.failed++;
        else
            ns.totals.invalid++;
        ns.totals.attempts +=
            json_integer_value(json_object_get(o, "attempts"));
        ns.totals.throttled +=
            json_integer_value(json_object_get(o, "throttled"));
        fo_err ae = store_repair_add(m->st, json_integer_value(lj));
        json_decref(o);
        if (ae) {
            fprintf(stderr, "fanout-master: %s/state.db: repair failed\n",
                    m->cfg->out);
            goto out;
        }
        size_t len = ln.len + 1; /* the line and its newline */
        if (util_write_all(outfd, ln.data, len) != 0) {
            fprintf(stderr, "fanout-master: writing %s: %s\n", tmp,
                    strerror(errno));
            goto out;
        }
        size += (int64_t)len;
        kept++;
    }
    if (fsync(outfd) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "fanout-master: replacing %s: %s\n", path,
                strerror(errno));
        goto out;
    }
    int dfd = open(m->cfg->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    ns.results_size = size;
    if (store_repair_commit(m->st, &ns, err, sizeof err)) {
        fprintf(stderr, "fanout-master: %s\n", err);
        goto out;
    }
    m->state = ns;
    m->nprev = 0;
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
    rc = 0;
out:
    jsonl_destroy(&r);
    close(in);
    close(outfd);
    unlink(tmp);
    return rc;
}

static int open_results(master *m)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/results.jsonl", m->cfg->out);
    m->results_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (m->results_fd < 0) {
        fprintf(stderr, "fanout-master: --out: cannot open %s: %s\n", path,
                strerror(errno));
        return EXIT_USAGE;
    }
    struct stat sb;
    if (fstat(m->results_fd, &sb) != 0)
        return EXIT_FATAL;
    int64_t good = m->state.results_size;
    if (sb.st_size < good && queue_is_url(m->cfg->input)) {
        fprintf(stderr,
                "fanout-master: %s is %lld bytes but %lld were committed "
                "(cut short or replaced outside fanout); the queue's "
                "messages are acknowledged and cannot be read again: "
                "restore the file, or use a new --out\n",
                path, (long long)sb.st_size, (long long)good);
        return EXIT_FATAL;
    }
    if (sb.st_size < good || m->cfg->redrive) {
        if (!m->cfg->redrive)
            LOG_WARN("results.short",
                     "%s is %lld bytes but %lld were "
                     "committed (cut short or replaced outside fanout); "
                     "repairing",
                     path, (long long)sb.st_size, (long long)good);
        else if (m->state.totals.failed == 0) {
            LOG_INFO("results.redrive", "no failed items to redrive");
            return 0;
        }
        close(m->results_fd);
        m->results_fd = -1;
        int rc = repair_results(m, m->cfg->redrive);
        if (rc)
            return rc;
        m->results_fd = open(path, O_RDWR | O_CLOEXEC);
        if (m->results_fd < 0) {
            fprintf(stderr, "fanout-master: %s: %s\n", path, strerror(errno));
            return EXIT_FATAL;
        }
        return 0;
    }
    if (sb.st_size > good) {
        LOG_WARN("results.repaired",
                 "%s: cut %lld bytes written after the "
                 "last commit (a crash mid-write); those items run again",
                 path, (long long)(sb.st_size - good));
        if (ftruncate(m->results_fd, good) != 0 || fsync(m->results_fd) != 0) {
            fprintf(stderr, "fanout-master: %s: truncate: %s\n", path,
                    strerror(errno));
            return EXIT_FATAL;
        }
    }
    return 0;
}

static int exit_status(const store_totals *t)
{
    return (t->failed || t->invalid) ? EXIT_SOME_FAILED : EXIT_ALL_OK;
}

static void write_summary(master *m, int finished, int64_t now)
{
    const store_totals *t = &m->state.totals;
    json_t *o = json_object();
    json_object_set_new(o, "finished", json_boolean(finished));
    json_object_set_new(o, "exit_status",
                        json_integer(finished ? exit_status(t) : EXIT_FATAL));
    json_object_set_new(o, "items", json_integer(t->items));
    json_object_set_new(o, "ok", json_integer(t->ok));
    json_object_set_new(o, "failed", json_integer(t->failed));
    json_object_set_new(o, "invalid", json_integer(t->invalid));
    json_object_set_new(o, "attempts", json_integer(t->attempts));
    int64_t retries = t->attempts - (t->ok + t->failed);
    json_object_set_new(o, "retries", json_integer(retries > 0 ? retries : 0));
    json_object_set_new(o, "throttled", json_integer(t->throttled));
    double active_s = (double)t->active_ms / 1000.0;
    json_object_set_new(o, "elapsed_s", json_real(active_s));
    json_object_set_new(
        o, "calls_per_s",
        json_real(active_s > 0 ? (double)t->attempts / active_s : 0));
    json_t *rates = json_array();
    for (size_t i = 0; i < m->nrates; i++) {
        char r[48];
        gcra_format_rate(m->rates[i], r, sizeof r);
        json_array_append_new(rates, json_string(r));
    }
    json_object_set_new(o, "rate_limits", rates);
    json_object_set_new(o, "limit_per_s", json_real(base_rate(m)));
    json_object_set_new(o, "effective_limit_per_s",
                        json_real(gcra_rate_per_s(budget_limiter(m->bud))));
    json_object_set_new(o, "throttle_events",
                        json_integer((json_int_t)m->n_throttle_reports));
    json_object_set_new(o, "rate_decreases",
                        json_integer((json_int_t)m->ad.throttles));
    json_object_set_new(o, "quota_pauses",
                        json_integer((json_int_t)m->n_quota_pauses));
    json_object_set_new(o, "results", json_string("results.jsonl"));
    json_object_set_new(o, "epoch",
                        json_integer((json_int_t)store_epoch(m->st)));
    json_object_set_new(o, "redispatched",
                        json_integer((json_int_t)m->n_redispatch));
    json_object_set_new(o, "duplicate_results",
                        json_integer((json_int_t)m->n_dup));
    json_object_set_new(o, "bad_frames",
                        json_integer((json_int_t)m->n_bad_frames));
    json_object_set_new(o, "blank_lines", json_integer((json_int_t)m->n_blank));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                JSON_REAL_PRECISION(6));
    json_decref(o);
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", m->cfg->out);
    fo_buf b;
    buf_init(&b, 1 << 20);
    if (buf_puts(&b, s) || buf_puts(&b, "\n") ||
        write_file_atomic(path, b.data, b.len) != 0)
        LOG_ERROR("summary.write_failed", "%s: %s", path, strerror(errno));
    buf_fini(&b);
    free(s);
    (void)now;
}

static void print_summary(master *m, int finished)
{
    const store_totals *t = &m->state.totals;
    double s = (double)t->active_ms / 1000.0;
    char limit[160] = "no limit", eff[80] = "";
    if (m->limit_text[0])
        snprintf(limit, sizeof limit, "limit %s", m->limit_text);
    if (m->nrates && adaptive_scale(&m->ad) < 0.999)
        snprintf(eff, sizeof eff, ", rate lowered to %.2f/s after push-back",
                 gcra_rate_per_s(budget_limiter(m->bud)));
    fprintf(stderr,
            "%s: %" PRId64 " items (%" PRId64 " ok, %" PRId64
            " failed, %" PRId64 " invalid), %" PRId64
            " calls in %.1f s, %.2f calls/s (%s),"
            " %" PRId64 " throttled%s\nresults: %s/results.jsonl  summary: "
            "%s/summary.json\n",
            finished ? "done" : "stopped", t->items, t->ok, t->failed,
            t->invalid, t->attempts, s, s > 0 ? (double)t->attempts / s : 0,
            limit, t->throttled, eff, m->cfg->out, m->cfg->out);
    if (!finished)
        fprintf(stderr, "re-run the same command to resume\n");
}

/* ---- the loop -------------------------------------------------------- */

static int run_loop(master *m)
{
    zmq_pollitem_t pi[48];
    for (;;) {
        int64_t now = clock_now_ns();
        if (stop_signal && !m->stopping) {
            m->stopping = 1;
            m->stop_deadline_ns = now + m->cfg->drain_timeout_ms * FO_NS_PER_MS;
            LOG_INFO("master.stopping",
                     "signal %d: no new calls; waiting up "
                     "to %" PRId64 " ms for %" PRId64 " calls in flight",
                     (int)stop_signal, m->cfg->drain_timeout_ms,
                     budget_permits_in_use(m->bud));
        }
        if (!m->stopping) {
            if (read_input(m, now) < 0)
                return EXIT_FATAL;
            dispatch(m, now);
            /* Offsets are relative to the moment of sending: a stale "now"
             * would shift every token of this grant later. */
            budget_grant(m->bud, clock_now_ns(), send_grant, m);
        }
        if (m->cb_len &&
            (m->cb_len >= COMMIT_MAX_ROWS ||
             now - m->cb_first_ns >= COMMIT_DELAY_NS || m->stopping)) {
            if (flush_commit(m, now) < 0)
                return EXIT_FATAL;
        } else if (!m->cb_len && m->batches.len &&
                   batch_at(m, 0)->done == batch_at(m, 0)->n) {
            if (flush_commit(m, now) < 0)
                return EXIT_FATAL;
        }
        if (m->src_eof && m->batches.len == 0 && m->bld.n == 0 &&
            m->cb_len == 0) {
            if (!m->state.finished) {
                /* Empty input, or resumed with nothing left. */
                store_state ns = m->state;
                ns.finished = 1;
                char err[512];
                if (store_commit(m->st, NULL, 0, NULL, 0, &ns, err,
                                 sizeof err)) {
                    LOG_ERROR("store.commit_failed", "%s", err);
                    return EXIT_FATAL;
                }
                m->state = ns;
            }
            return EXIT_ALL_OK;
        }
        if (now >= m->next_tick_ns) {
            tick(m, now);
            if (m->nforget && !m->cb_len && flush_commit(m, now) < 0)
                return EXIT_FATAL;
            show_progress(m, now, 0);
            m->next_tick_ns = now + TICK_NS;
        }
        if (m->stopping) {
            int64_t inflight = budget_permits_in_use(m->bud);
            if (inflight == 0 && !m->drained_ns)
                m->drained_ns = now;
            /* Results travel on another socket than the permit releases:
             * give them a moment to land after the last release. */
            if ((m->drained_ns && now - m->drained_ns > 300 * FO_NS_PER_MS) ||
                now >= m->stop_deadline_ns || budget_live(m->bud, NULL) == 0)
                return -1;
        }

        int64_t deadline = m->next_tick_ns;
        if (m->cb_len && m->cb_first_ns + COMMIT_DELAY_NS < deadline)
            deadline = m->cb_first_ns + COMMIT_DELAY_NS;
        if (!m->stopping) {
            int64_t g = budget_next_wake(m->bud, now);
            if (g < deadline)
                deadline = g;
            if (m->dispatch_after_ns > now && m->dispatch_after_ns < deadline)
                deadline = m->dispatch_after_ns;
        }
        long timeout =
            (long)((deadline - now + FO_NS_PER_MS - 1) / FO_NS_PER_MS);
        void *psock = NULL;
        int pfd = -1;
        int pollable = source_pollable(m->src, &psock, &pfd);
        /* A commit just made room in the window, or items wait for a free
         * push: go round again at once rather than sleep until the next
         * event. Each of these runs dry in one turn, so this never spins. */
        if (!m->stopping && budget_live(m->bud, NULL) > 0 &&
            now >= m->dispatch_after_ns &&
            ((!m->src_eof && !pollable && m->outstanding < window(m)) ||
             (m->dq.len && !m->push_blocked)))
            timeout = 0;
        if (timeout < 0)
            timeout = 0;
        int n = 0;
        pi[n++] = (zmq_pollitem_t){m->ctl, 0, ZMQ_POLLIN, 0};
        pi[n++] = (zmq_pollitem_t){m->pull, 0, ZMQ_POLLIN, 0};
        if (m->push_blocked && m->dq.len && !m->stopping)
            pi[n++] = (zmq_pollitem_t){m->push, 0, ZMQ_POLLOUT, 0};
        if (m->zap)
            pi[n++] = (zmq_pollitem_t){m->zap, 0, ZMQ_POLLIN, 0};
        /* A queue's thread also reports acknowledgements: poll it always. */
        if (pollable && !m->stopping &&
            (m->queue || (!m->src_eof && m->outstanding < window(m))))
            pi[n++] = (zmq_pollitem_t){psock, pfd, ZMQ_POLLIN, 0};
        int http_first = n;
        if (m->http)
            n += (int)httpd_pollitems(m->http, pi + n, 48 - (size_t)n);
        if (zmq_poll(pi, n, timeout) < 0 && errno != EINTR) {
            LOG_ERROR("master.poll_failed", "zmq_poll: %s",
                      zmq_strerror(errno));
            return EXIT_FATAL;
        }
        now = clock_now_ns();
        if (reload_signal) {
            reload_signal = 0;
            if (m->zap)
                reload_allow(m);
        }
        if (m->zap)
            handle_zap(m);
        if (m->http)
            httpd_dispatch(m->http, pi + http_first, (size_t)(n - http_first),
                           now);
        handle_control(m, now);
        handle_results(m, now);
        if (m->queue)
            take_acked(m, now);
    }
}

int master_run(const master_config *cfg)
{
    master ms;
    master *m = &ms;
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->results_fd = -1;
    m->open_ids = json_object();
    m->orphan_ix = json_object();
    ring_init(&m->orphans, sizeof(orphan *));
    m->run_start_ns = clock_now_ns();
    ring_init(&m->batches, sizeof(mbatch));
    ring_init(&m->dq, sizeof(proto_ref));
    buf_init(&m->scratch, PROTO_MAX_CONTROL_BYTES + PROTO_MAX_BODY_BYTES);
    buf_init(&m->wbuf, (size_t)1 << 31);
    int rc = EXIT_FATAL;
    char err[1024];

    if (progress_parse(cfg->progress, &m->pmode) < 0) {
        fprintf(stderr,
                "fanout-master: --progress: '%s' is not one of "
                "auto, tty, plain, off\n",
                cfg->progress);
        rc = EXIT_USAGE;
        goto out;
    }
    if (template_parse(cfg->url, &m->url_t, err, sizeof err)) {
        fprintf(stderr, "fanout-master: --url: %s in '%s'\n", err, cfg->url);
        rc = EXIT_USAGE;
        goto out;
    }
    if (cfg->body && template_parse(cfg->body, &m->body_t, err, sizeof err)) {
        fprintf(stderr, "fanout-master: --body: %s in '%s'\n", err, cfg->body);
        rc = EXIT_USAGE;
        goto out;
    }
    m->body_whole_item = !cfg->body && (!strcmp(cfg->method, "POST") ||
                                        !strcmp(cfg->method, "PUT") ||
                                        !strcmp(cfg->method, "PATCH"));

    if (mkdir(cfg->out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fanout-master: --out %s: %s\n", cfg->out,
                strerror(errno));
        rc = EXIT_USAGE;
        goto out;
    }
    if (access(cfg->out, W_OK) != 0) {
        fprintf(stderr, "fanout-master: --out %s is not writable: %s\n",
                cfg->out, strerror(errno));
        rc = EXIT_USAGE;
        goto out;
    }
    char *identity = build_identity(cfg);
    util_hash_hex(identity, strlen(identity), 0, err);
    m->idem_seed = strtoull(err, NULL, 16);
    fo_err src = store_open(cfg->out, identity, &m->st, err, sizeof err);
    free(identity);
    if (src) {
        fprintf(stderr, "fanout-master: --out %s: %s%s\n", cfg->out, err,
                src == FO_EMISMATCH ? "; use another --out, or delete this "
                                      "one to start over"
                                    : "");
        rc = src == FO_EMISMATCH ? EXIT_USAGE : EXIT_FATAL;
        goto out;
    }
    m->state = *store_get_state(m->st);
    m->active_base_ms = m->state.totals.active_ms;

    m->bud = budget_new(gcra_new(), cfg->max_in_flight, GRANT_HORIZON_NS);
    adaptive_init(&m->ad, cfg->adaptive);
    m->applied_scale = 1.0;
    gcra_rate rates[GCRA_MAX_LIMITS];
    size_t nrates = cfg->nrates;
    memcpy(rates, cfg->rates, sizeof rates);
    /* Limits changed at run time by fanout-ctl outlive a restart. */
    char *stored = store_get_setting(m->st, "rate");
    if (stored) {
        nrates = 0;
        char *save = NULL;
        for (char *tok = strtok_r(stored, "+", &save);
             tok && nrates < GCRA_MAX_LIMITS; tok = strtok_r(NULL, "+", &save))
            if (strcmp(tok, "none") != 0 &&
                gcra_parse_rate(tok, &rates[nrates], err, sizeof err) == FO_OK)
                nrates++;
        LOG_INFO("ctl.rate",
                 "using the rate set by fanout-ctl (%s), not "
                 "--rate",
                 stored);
        free(stored);
    }
    if (set_limits(m, rates, nrates) < 0) {
        fprintf(stderr, "fanout-master: --rate: too many limits (at most %d)\n",
                GCRA_MAX_LIMITS);
        rc = EXIT_USAGE;
        goto out;
    }
    stored = store_get_setting(m->st, "max_in_flight");
    if (stored) {
        int64_t v;
        if (util_parse_i64(stored, 0, 1000000, &v) == 0) {
            budget_set_max_in_flight(m->bud, v);
            LOG_INFO("ctl.max_in_flight",
                     "using max-in-flight %s set by "
                     "fanout-ctl, not --max-in-flight",
                     stored);
        }
        free(stored);
    }

    if ((rc = open_results(m)) != 0)
        goto out;
    /* A queue's job is never over: a new run reads what came since. */
    if (m->state.finished && queue_is_url(cfg->input))
        m->state.finished = 0;
    if (m->state.finished) {
        LOG_INFO("job.finished",
                 "the job in %s is already complete; "
                 "nothing to do",
                 cfg->out);
        print_summary(m, 1);
        rc = exit_status(&m->state.totals);
        goto out;
    }
    m->zctx = zmq_ctx_new();
    if ((rc = open_source(m)) != 0)
        goto out;
    rc = EXIT_FATAL;
    if (store_each_row(m->st, collect_row, m) != FO_OK) {
        fprintf(stderr,
                "fanout-master: %s/state.db: cannot read committed "
                "items\n",
                cfg->out);
        goto out;
    }
    if (m->total_items >= 0 && !store_repairing(m->st))
        m->total_items -= (int64_t)m->nprev;

    /* Sockets. */
    const char *hp = cfg->bind + 6;
    const char *colon = strrchr(hp, ':');
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    int64_t port = 0;
    util_parse_i64(colon + 1, 0, 65533, &port);
    if (cfg->curve_secret && (rc = start_curve(m)) != 0)
        goto out;
    rc = EXIT_FATAL;
    if (bind_sockets(m, host, port) < 0) {
        rc = EXIT_USAGE;
        goto out;
    }
    m->job_json = build_job_json(m);
    char metrics_url[300] = "";
    if (cfg->metrics) {
        m->http = httpd_new(cfg->metrics, http_handler, m, err, sizeof err);
        if (!m->http) {
            fprintf(stderr, "fanout-master: --metrics: %s\n", err);
            rc = EXIT_USAGE;
            goto out;
        }
        /* Where a scraper on this host reaches it. */
        const char *mc = strrchr(cfg->metrics, ':');
        char mhost[256];
        snprintf(mhost, sizeof mhost, "%.*s", (int)(mc - cfg->metrics),
                 cfg->metrics);
        if (!mhost[0] || !strcmp(mhost, "0.0.0.0") || !strcmp(mhost, "*"))
            snprintf(mhost, sizeof mhost, "127.0.0.1");
        snprintf(metrics_url, sizeof metrics_url, "http://%s:%d", mhost,
                 httpd_port(m->http));
        LOG_INFO("metrics.listening", "serving %s/metrics and %s/status",
                 metrics_url, metrics_url);
    }
    if (cfg->ready_file) {
        char ready[1600];
        int n = snprintf(
            ready, sizeof ready,
            "{\"control\":\"%s\",\"work\":\"%s\",\"result\":"
            "\"%s\",\"metrics\":\"%s\",\"pid\":%d,\"epoch\":%" PRIu64 "}\n",
            m->ctl_ep, m->work_ep, m->result_ep, metrics_url, (int)getpid(),
            store_epoch(m->st));
        if (write_file_atomic(cfg->ready_file, ready, (size_t)n) != 0) {
            fprintf(stderr, "fanout-master: --ready-file %s: %s\n",
                    cfg->ready_file, strerror(errno));
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (store_epoch(m->st) > 1 && (m->state.totals.items > 0 || m->nprev > 0))
        m->dispatch_after_ns = clock_now_ns() + RESUME_GRACE_NS;
    char resume[64] = "";
    if (!m->queue)
        snprintf(resume, sizeof resume, " at line %" PRId64,
                 m->state.cursor.line_no);
    LOG_INFO("master.started",
             "epoch %" PRIu64 ", control %s, work %s, "
             "results %s; resuming%s (%" PRId64 " items already recorded)",
             store_epoch(m->st), m->ctl_ep, m->work_ep, m->result_ep, resume,
             m->state.totals.items);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg->spawn_workers > 0) {
        char ep[320];
        const char *whost = host;
        if (!strcmp(host, "*") || !strcmp(host, "0.0.0.0"))
            whost = "127.0.0.1";
        const char *cp = strrchr(m->ctl_ep, ':');
        snprintf(ep, sizeof ep, "tcp://%s:%s", whost, cp + 1);
        if (spawn_start(&m->spawned, (size_t)cfg->spawn_workers, ep,
                        cfg->worker_concurrency, cfg->log_level, err,
                        sizeof err) < 0) {
            fprintf(stderr, "fanout-master: %s\n", err);
            goto out;
        }
    }

    int loop = run_loop(m);
    int64_t now = clock_now_ns();
    if (m->cb_len && !m->fatal)
        (void)flush_commit(m, now);
    if (m->n_orphans_used)
        LOG_INFO("result.recovered",
                 "%" PRIu64 " calls in flight when an earlier run stopped "
                 "were recorded from their results, not made again",
                 m->n_orphans_used);
    if (m->queue && !m->fatal) {
        /* Wait for the last acknowledgements, and forget them. */
        source_drain(m->src, 10000);
        take_acked(m, now);
        if (m->nforget)
            (void)flush_commit(m, now);
    }
    show_progress(m, now, 1);
    progress_finish(m->pmode);
    if (loop == EXIT_ALL_OK) {
        broadcast(m, PROTO_DONE);
        write_summary(m, 1, now);
        print_summary(m, 1);
        rc = exit_status(&m->state.totals);
    } else {
        write_summary(m, 0, now);
        if (loop < 0)
            print_summary(m, 0);
        rc = EXIT_FATAL;
        /* Following a queue has no end but a signal. */
        if (loop < 0 && cfg->follow && !m->fatal)
            rc = exit_status(&m->state.totals);
    }
out:
    if (m->spawned.n)
        spawn_stop(&m->spawned, 5000);
    for (size_t i = 0; i < m->batches.len; i++) {
        mbatch *b = batch_at(m, i);
        for (uint32_t k = 0; k < b->n; k++)
            item_free(m, &b->items[k]);
        free(b->items);
    }
    for (uint32_t k = 0; k < m->bld.n; k++)
        item_free(m, &m->bld.items[k]);
    free(m->bld.items);
    for (size_t i = 0; i < m->cb_len; i++)
        free(m->cb[i].line);
    free(m->cb);
    ring_fini(&m->batches);
    ring_fini(&m->dq);
    free(m->prev);
    free(m->job_json);
    source_close(&m->src, 0);
    json_decref(m->open_ids);
    while (m->orphans.len)
        orphan_pop(m);
    ring_fini(&m->orphans);
    json_decref(m->orphan_ix);
    for (size_t i = 0; i < m->nforget; i++)
        free(m->forget[i]);
    free(m->forget);
    if (m->results_fd >= 0)
        close(m->results_fd);
    template_destroy(&m->url_t);
    template_destroy(&m->body_t);
    budget_destroy(&m->bud);
    store_close(&m->st);
    buf_fini(&m->scratch);
    buf_fini(&m->wbuf);
    if (m->ctl)
        zmq_close(m->ctl);
    if (m->push)
        zmq_close(m->push);
    if (m->pull)
        zmq_close(m->pull);
    if (m->zap)
        zmq_close(m->zap);
    httpd_destroy(&m->http);
    free(m->allowed);
    if (m->zctx)
        zmq_ctx_term(m->zctx);
    return rc;
}
