/*
 * source_queue.c - a message queue as a source; see source.h.
 *
 * Queue drivers block (queue.h), and the master's loop must not: a thread
 * of its own talks to the queue, and the master talks to the thread over
 * an inproc PAIR socket that its zmq_poll watches with the others. Both
 * sides pass pointers to commands and events, whose ownership moves with
 * them.
 *
 * The thread holds every message it pulled until the master acknowledges
 * it (in slots, in pull order; a message's handle is its slot's sequence
 * number). It renews their leases every third of the lease while the
 * master works on them, and acknowledges them when the master says their
 * records are committed, retrying with backoff while the queue does not
 * answer. Confirmed acknowledgements go back to the master, which then
 * forgets those ids in its store.
 *
 * The source ends when pulls have found the queue empty for the grace
 * period (--idle-grace), unless --follow. Where a dead master's messages
 * come back only when their lease runs out (QUEUE_CAP_LEASE_TIMEOUT_ONLY:
 * Azure), the master keeps the deadline of every lease it holds in its
 * store (queue_lease_until), and a restarted master does not end before
 * it.
 */
#include "fmacros.h"
#include "source_queue.h"
#include "clock.h"
#include "log.h"
#include "ring.h"
#include "util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define PULL_MAX 256           /* messages per pull */
#define CHUNK 256              /* messages per ack/renew call */
#define EMPTY_POLL_MS 250      /* between pulls of an empty queue */
#define RETRY_MAX_MS 30000     /* longest backoff */
#define DEFAULT_LEASE_MS 30000 /* lease= default */
#define LEASE_KEY "queue_lease_until"

enum { CMD_PULL = 1, CMD_ACK, CMD_RELEASE, CMD_STOP };
enum { EVT_MSGS = 1, EVT_EMPTY, EVT_ACKED, EVT_LOG, EVT_STOPPED };
enum { SL_FREE = 0, SL_HELD, SL_ACK };

/* A message on its way to the master. */
typedef struct qdeliv {
    uint64_t handle;
    char *id, *body, *bad;
    size_t len;
    int too_big;
    int first; /* first delivery */
} qdeliv;

typedef struct qcmd {
    int type;
    int64_t n;         /* PULL: how many; STOP: ms to wait */
    uint64_t *handles; /* ACK, RELEASE */
    size_t nh;
} qcmd;

typedef struct qevt {
    int type;
    qdeliv *msgs; /* MSGS */
    char **ids;   /* ACKED */
    size_t n;
    int level;      /* LOG */
    char event[48]; /* LOG */
    char *text;     /* LOG */
} qevt;

typedef struct qslot {
    queue_msg m;
    int state;          /* SL_* */
    int64_t renewed_ms; /* last lease start */
    int64_t retry_ms;   /* SL_ACK: next attempt */
    int tries;          /* SL_ACK: attempts so far */
} qslot;

/* The thread's state; only the thread touches it once started, but for
 * to_thread and to_master. */
typedef struct qthread {
    queue *d;
    void *zctx, *sock;
    char ep[64];
    int64_t lease_ms;
    ring slots;    /* qslot, oldest first */
    uint64_t base; /* handle of slots[0] */
    int64_t want;  /* messages the master asked for */
    int64_t next_pull_ms;
    int pull_fails;
    size_t n_ack;        /* slots in SL_ACK */
    int64_t next_ack_ms; /* earliest SL_ACK attempt */
    int64_t next_renew_ms;
    int stopping;
    int64_t stop_deadline_ms;
    /* The two fields both sides touch. libzmq passes the pointers with
     * its own lock-free synchronisation, which ThreadSanitizer cannot see
     * (the library is not instrumented) and so reports every command and
     * event as a race. Each direction also counts its hand-offs here: the
     * sender increments (release) before sending a pointer, the receiver
     * loads (acquire) after receiving one. One writer each. */
    atomic_uint_fast64_t to_thread; /* commands sent, by the master */
    atomic_uint_fast64_t to_master; /* events sent, by the thread */
} qthread;

struct squeue {
    void *sock;
    pthread_t th;
    int th_started;
    qthread *t;
    queue *d;
    int wait_leases; /* QUEUE_CAP_LEASE_TIMEOUT_ONLY: keep LEASE_KEY */
    qdeliv *buf;     /* delivered, not yet handed out */
    size_t buf_n, buf_at;
    qdeliv cur; /* the item last handed out */
    int pull_pending, empty_seen, eof, stopped;
    int64_t empty_since_ns; /* first empty pull since the last message */
    int follow;
    int64_t grace_ns, lease_ms;
    store *st;
    int64_t lease_until_ms; /* the deadline stored */
    int64_t wait_until_ms;  /* a previous run's leases end here */
    char **acked;
    size_t nacked, acked_cap;
    char err[512];
};

static int64_t mono_ms(void)
{
    return clock_now_ns() / FO_NS_PER_MS;
}

static void deliv_fini(qdeliv *d)
{
    free(d->id);
    free(d->body);
    free(d->bad);
    memset(d, 0, sizeof *d);
}

static void evt_free(qevt *e)
{
    if (!e)
        return;
    for (size_t i = 0; e->msgs && i < e->n; i++)
        deliv_fini(&e->msgs[i]);
    free(e->msgs);
    for (size_t i = 0; e->ids && i < e->n; i++)
        free(e->ids[i]);
    free(e->ids);
    free(e->text);
    free(e);
}

/* Hands p to the other side; seq is this direction's sequence (qthread). */
static void send_ptr(void *sock, atomic_uint_fast64_t *seq, void *p)
{
    atomic_fetch_add_explicit(seq, 1, memory_order_release);
    /* inproc with no high-water mark: never blocks, never drops */
    while (zmq_send(sock, &p, sizeof p, 0) < 0 && zmq_errno() == EINTR)
        ;
}

static void *recv_ptr(void *sock, atomic_uint_fast64_t *seq)
{
    void *p = NULL;
    if (zmq_recv(sock, &p, sizeof p, ZMQ_DONTWAIT) != (int)sizeof p)
        return NULL;
    (void)atomic_load_explicit(seq, memory_order_acquire);
    return p;
}

/* ---- the thread ------------------------------------------------------ */

static void t_log(qthread *t, int level, const char *event, const char *fmt,
                  ...) FO_PRINTF(4, 5);
static void t_log(qthread *t, int level, const char *event, const char *fmt,
                  ...)
{
    qevt *e = xcalloc(1, sizeof *e);
    e->type = EVT_LOG;
    e->level = level;
    snprintf(e->event, sizeof e->event, "%s", event);
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e->text = xstrdup(msg);
    send_ptr(t->sock, &t->to_master, e);
}

static int64_t backoff_ms(int tries)
{
    int64_t ms = 500LL << (tries > 6 ? 6 : tries);
    return ms > RETRY_MAX_MS ? RETRY_MAX_MS : ms;
}

static qslot *slot_of(qthread *t, uint64_t handle)
{
    if (handle < t->base || handle - t->base >= t->slots.len)
        return NULL;
    return ring_at(&t->slots, (size_t)(handle - t->base));
}

static void t_pull(qthread *t, int64_t now)
{
    if (t->want <= 0 || now < t->next_pull_ms)
        return;
    size_t max = t->want > PULL_MAX ? PULL_MAX : (size_t)t->want;
    queue_msg *ms = xcalloc(max, sizeof *ms);
    size_t n = 0;
    char err[1024] = "";
    if (queue_pull(t->d, max, ms, &n, err, sizeof err) != 0) {
        for (size_t i = 0; i < n; i++)
            queue_msg_fini(&ms[i]);
        free(ms);
        int64_t wait = backoff_ms(t->pull_fails++);
        t_log(t, LOG_LVL_WARN, "source.unavailable",
              "%s; trying again in %.1f s", err, (double)wait / 1000);
        t->next_pull_ms = now + wait;
        return;
    }
    if (t->pull_fails)
        t_log(t, LOG_LVL_INFO, "source.available", "%s answers again",
              queue_describe(t->d));
    t->pull_fails = 0;
    if (n == 0) {
        free(ms);
        qevt *e = xcalloc(1, sizeof *e);
        e->type = EVT_EMPTY;
        send_ptr(t->sock, &t->to_master, e);
        t->next_pull_ms = now + EMPTY_POLL_MS;
        return;
    }
    qevt *e = xcalloc(1, sizeof *e);
    e->type = EVT_MSGS;
    e->msgs = xcalloc(n, sizeof *e->msgs);
    e->n = n;
    for (size_t i = 0; i < n; i++) {
        qslot *s = ring_push(&t->slots);
        memset(s, 0, sizeof *s);
        qdeliv *d = &e->msgs[i];
        d->handle = t->base + t->slots.len - 1;
        d->id = xstrdup(ms[i].id);
        d->body = ms[i].body;
        d->len = ms[i].len;
        d->bad = ms[i].bad;
        d->too_big = ms[i].too_big;
        d->first = ms[i].deliveries == 1;
        ms[i].body = ms[i].bad = NULL;
        s->m = ms[i];
        s->state = SL_HELD;
        s->renewed_ms = now;
    }
    free(ms);
    send_ptr(t->sock, &t->to_master, e);
    t->want = 0;
}

static void slot_free(qslot *s)
{
    queue_msg_fini(&s->m);
    s->state = SL_FREE;
}

static void t_acks(qthread *t, int64_t now)
{
    if (t->n_ack == 0 || now < t->next_ack_ms)
        return;
    queue_msg batch[CHUNK];
    qslot *which[CHUNK];
    int outcome[CHUNK];
    int64_t next = INT64_MAX;
    size_t i = 0;
    while (i < t->slots.len) {
        size_t k = 0;
        for (; i < t->slots.len && k < CHUNK; i++) {
            qslot *s = ring_at(&t->slots, i);
            if (s->state != SL_ACK)
                continue;
            if (s->retry_ms > now) {
                next = s->retry_ms < next ? s->retry_ms : next;
                continue;
            }
            which[k] = s;
            batch[k++] = s->m;
        }
        if (k == 0)
            break;
        char err[1024] = "";
        int rc = queue_ack(t->d, batch, k, outcome, err, sizeof err);
        qevt *e = xcalloc(1, sizeof *e);
        e->type = EVT_ACKED;
        e->ids = xcalloc(k, sizeof *e->ids);
        size_t stale = 0, retry = 0;
        for (size_t j = 0; j < k; j++) {
            qslot *s = which[j];
            s->m = batch[j];
            if (outcome[j] == QUEUE_RETRY) {
                s->retry_ms = now + backoff_ms(s->tries++);
                next = s->retry_ms < next ? s->retry_ms : next;
                retry++;
                continue;
            }
            if (outcome[j] == QUEUE_DONE)
                e->ids[e->n++] = xstrdup(s->m.id);
            else
                stale++;
            slot_free(s);
            t->n_ack--;
        }
        if (e->n)
            send_ptr(t->sock, &t->to_master, e);
        else
            evt_free(e);
        if (retry)
            t_log(t, LOG_LVL_WARN, "source.ack_failed",
                  "acknowledging %zu messages failed (%s); trying again", retry,
                  err[0] ? err : "no answer");
        if (stale)
            t_log(t, LOG_LVL_WARN, "source.lease_lost",
                  "%zu messages were handed to another consumer before "
                  "they were acknowledged; their records are kept and they "
                  "will be acknowledged when they come back",
                  stale);
        (void)rc;
    }
    t->next_ack_ms = next;
}

static void t_renew(qthread *t, int64_t now)
{
    if (!queue_has(t->d, QUEUE_CAP_RENEW) || now < t->next_renew_ms)
        return;
    int64_t every = t->lease_ms / 3 > 0 ? t->lease_ms / 3 : 1;
    t->next_renew_ms = now + (every < 1000 ? every : 1000);
    queue_msg batch[CHUNK];
    qslot *which[CHUNK];
    int outcome[CHUNK];
    size_t i = 0, lost = 0;
    char err[1024] = "";
    while (i < t->slots.len) {
        size_t k = 0;
        for (; i < t->slots.len && k < CHUNK; i++) {
            qslot *s = ring_at(&t->slots, i);
            if (s->state == SL_FREE || now - s->renewed_ms < every)
                continue;
            which[k] = s;
            batch[k++] = s->m;
        }
        if (k == 0)
            break;
        queue_renew(t->d, batch, k, outcome, err, sizeof err);
        for (size_t j = 0; j < k; j++) {
            qslot *s = which[j];
            s->m = batch[j];
            if (outcome[j] == QUEUE_RETRY) {
                s->renewed_ms = now - every + 1000; /* again in a second */
                continue;
            }
            s->renewed_ms = now;
            lost += outcome[j] == QUEUE_STALE;
        }
    }
    if (lost)
        t_log(t, LOG_LVL_WARN, "source.lease_lost",
              "the leases of %zu messages ran out before they were renewed "
              "(%s); they may be delivered again, and are recorded once",
              lost, err[0] ? err : "the queue gave them to another consumer");
}

static void t_trim(qthread *t)
{
    while (t->slots.len) {
        qslot *s = ring_at(&t->slots, 0);
        if (s->state != SL_FREE)
            break;
        ring_pop(&t->slots);
        t->base++;
    }
}

static void t_command(qthread *t, qcmd *c, int64_t now)
{
    switch (c->type) {
    case CMD_PULL:
        t->want = c->n;
        break;
    case CMD_ACK:
        for (size_t i = 0; i < c->nh; i++) {
            qslot *s = slot_of(t, c->handles[i]);
            if (s && s->state == SL_HELD) {
                s->state = SL_ACK;
                s->retry_ms = now;
                t->n_ack++;
            }
        }
        t->next_ack_ms = now;
        break;
    case CMD_RELEASE:
        for (size_t i = 0; i < c->nh; i++) {
            qslot *s = slot_of(t, c->handles[i]);
            if (s && s->state == SL_HELD)
                slot_free(s);
        }
        break;
    case CMD_STOP:
        t->stopping = 1;
        t->want = 0;
        t->stop_deadline_ms = now + c->n;
        break;
    }
    free(c->handles);
    free(c);
}

static void *t_main(void *arg)
{
    qthread *t = arg;
    t->sock = zmq_socket(t->zctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(t->sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(t->sock, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_connect(t->sock, t->ep);
    for (;;) {
        int64_t now = mono_ms();
        int64_t wake = now + 100;
        if (t->want > 0 && t->next_pull_ms < wake)
            wake = t->next_pull_ms;
        if (t->n_ack && t->next_ack_ms < wake)
            wake = t->next_ack_ms;
        zmq_pollitem_t pi = {t->sock, 0, ZMQ_POLLIN, 0};
        zmq_poll(&pi, 1, wake > now ? (long)(wake - now) : 0);
        now = mono_ms();
        qcmd *c;
        while ((c = recv_ptr(t->sock, &t->to_thread)) != NULL)
            t_command(t, c, now);
        t_acks(t, now);
        if (t->stopping && (t->n_ack == 0 || now >= t->stop_deadline_ms))
            break;
        t_renew(t, now);
        t_pull(t, now);
        t_trim(t);
    }
    if (t->n_ack)
        t_log(t, LOG_LVL_WARN, "source.ack_pending",
              "%zu messages are still unacknowledged at exit; their "
              "records are kept, and the next run acknowledges them",
              t->n_ack);
    for (size_t i = 0; i < t->slots.len; i++)
        slot_free(ring_at(&t->slots, i));
    ring_fini(&t->slots);
    qevt *e = xcalloc(1, sizeof *e);
    e->type = EVT_STOPPED;
    send_ptr(t->sock, &t->to_master, e);
    return NULL;
}

/* ---- the master's side ----------------------------------------------- */

static void send_cmd(squeue *q, int type, int64_t n, const uint64_t *h,
                     size_t nh)
{
    if (q->stopped || !q->th_started)
        return;
    qcmd *c = xcalloc(1, sizeof *c);
    c->type = type;
    c->n = n;
    if (nh) {
        c->handles = xmalloc(nh * sizeof *h);
        memcpy(c->handles, h, nh * sizeof *h);
        c->nh = nh;
    }
    send_ptr(q->sock, &q->t->to_thread, c);
}

static void on_event(squeue *q, qevt *e, int64_t now)
{
    switch (e->type) {
    case EVT_MSGS:
        q->pull_pending = 0;
        q->empty_seen = 0;
        if (q->eof) {
            /* Pulled as the source ended: leave them to the next run. */
            for (size_t i = 0; i < e->n; i++)
                send_cmd(q, CMD_RELEASE, 0, &e->msgs[i].handle, 1);
            break;
        }
        q->buf = xrealloc(q->buf, (q->buf_n + e->n) * sizeof *q->buf);
        memcpy(q->buf + q->buf_n, e->msgs, e->n * sizeof *e->msgs);
        q->buf_n += e->n;
        free(e->msgs);
        e->msgs = NULL;
        break;
    case EVT_EMPTY:
        /* Empty for the grace period means seen empty that long: the
         * master may not have asked for a while (its window was full). */
        if (!q->empty_seen)
            q->empty_since_ns = now;
        q->empty_seen = 1;
        break;
    case EVT_ACKED:
        if (q->nacked + e->n > q->acked_cap) {
            q->acked_cap = (q->nacked + e->n) * 2;
            q->acked = xrealloc(q->acked, q->acked_cap * sizeof *q->acked);
        }
        memcpy(q->acked + q->nacked, e->ids, e->n * sizeof *e->ids);
        q->nacked += e->n;
        free(e->ids);
        e->ids = NULL;
        e->n = 0;
        break;
    case EVT_LOG:
        log_write((log_level)e->level, e->event, "%s", e->text);
        if (e->level >= LOG_LVL_WARN)
            snprintf(q->err, sizeof q->err, "%s", e->text);
        break;
    case EVT_STOPPED:
        q->stopped = 1;
        break;
    }
    evt_free(e);
}

static void drain_events(squeue *q, int64_t now)
{
    qevt *e;
    while ((e = recv_ptr(q->sock, &q->t->to_master)) != NULL)
        on_event(q, e, now);
}

squeue *squeue_open(const source_cfg *c, char *err, size_t errlen, int *code)
{
    *code = 2;
    char lease[64];
    int64_t lease_ms = c->lease_ms > 0 ? c->lease_ms : DEFAULT_LEASE_MS;
    int lr = queue_url_param(c->input, "lease", lease, sizeof lease);
    if (lr != 0 && (lr < 0 || util_parse_duration_ms(lease, &lease_ms) != 0 ||
                    lease_ms < 1000)) {
        snprintf(err, errlen,
                 "--input: lease=%s is not a duration of at least 1s "
                 "(e.g. lease=30s)",
                 lr < 0 ? "(too long)" : lease);
        return NULL;
    }
    queue_opts o = {.lease_ms = lease_ms,
                    .max_item_bytes = (size_t)c->max_line_bytes,
                    .timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : 10000,
                    .consumer = NULL};
    queue *d = queue_open(c->input, &o, err, errlen);
    if (!d)
        return NULL;
    squeue *q = xcalloc(1, sizeof *q);
    q->d = d;
    q->wait_leases = queue_has(d, QUEUE_CAP_LEASE_TIMEOUT_ONLY);
    q->follow = c->follow;
    q->grace_ns = c->idle_grace_ms * FO_NS_PER_MS;
    q->lease_ms = lease_ms;
    q->st = c->st;
    if (q->wait_leases) {
        char *u = store_get_setting(q->st, LEASE_KEY);
        int64_t until = u ? strtoll(u, NULL, 10) : 0;
        free(u);
        int64_t wall = clock_wall_ms();
        if (until > wall) {
            q->wait_until_ms = until;
            LOG_INFO("source.recovering",
                     "a previous run held messages whose leases end "
                     "within %.0f s; they are delivered again then, and "
                     "this run does not end before",
                     (double)(until - wall) / 1000);
        }
    }
    qthread *t = xcalloc(1, sizeof *t);
    t->d = d;
    t->zctx = c->zctx;
    t->lease_ms = lease_ms;
    ring_init(&t->slots, sizeof(qslot));
    atomic_init(&t->to_thread, 0);
    atomic_init(&t->to_master, 0);
    snprintf(t->ep, sizeof t->ep, "inproc://fanout-source-%p", (void *)q);
    q->t = t;
    q->sock = zmq_socket(c->zctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(q->sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(q->sock, ZMQ_RCVHWM, &zero, sizeof zero);
    /* Fixed at open (queue.h): read here, before the thread owns d. */
    const char *desc = queue_describe(d);
    if (!q->sock || zmq_bind(q->sock, t->ep) != 0 ||
        pthread_create(&q->th, NULL, t_main, t) != 0) {
        snprintf(err, errlen, "cannot start the queue thread");
        *code = 3;
        squeue_close(&q, 0);
        return NULL;
    }
    q->th_started = 1;
    LOG_INFO("source.opened", "reading %s (lease %.0f s%s)", desc,
             (double)lease_ms / 1000, c->follow ? ", --follow" : "");
    return q;
}

void squeue_drain(squeue *q, int64_t wait_ms)
{
    if (!q->th_started || q->stopped)
        return;
    send_cmd(q, CMD_STOP, wait_ms, NULL, 0);
    int64_t end = mono_ms() + wait_ms + 5000;
    while (!q->stopped && mono_ms() < end) {
        zmq_pollitem_t pi = {q->sock, 0, ZMQ_POLLIN, 0};
        zmq_poll(&pi, 1, 100);
        drain_events(q, clock_now_ns());
    }
}

void squeue_close(squeue **qp, int64_t wait_ms)
{
    squeue *q = *qp;
    if (!q)
        return;
    if (q->th_started) {
        squeue_drain(q, wait_ms);
        pthread_join(q->th, NULL);
        /* The thread has exited: whatever it sent is there to read. */
        drain_events(q, clock_now_ns());
        zmq_close(q->t->sock);
    } else if (q->t) {
        ring_fini(&q->t->slots);
    }
    if (q->sock)
        zmq_close(q->sock);
    free(q->t);
    queue_destroy(&q->d);
    for (size_t i = q->buf_at; i < q->buf_n; i++)
        deliv_fini(&q->buf[i]);
    free(q->buf);
    deliv_fini(&q->cur);
    for (size_t i = 0; i < q->nacked; i++)
        free(q->acked[i]);
    free(q->acked);
    FO_FREE(qp);
}

int squeue_next(squeue *q, int64_t want, source_item *it, int64_t now)
{
    drain_events(q, now);
    deliv_fini(&q->cur);
    if (q->buf_at < q->buf_n) {
        q->cur = q->buf[q->buf_at++];
        if (q->buf_at == q->buf_n) {
            FO_FREE(&q->buf);
            q->buf_n = q->buf_at = 0;
        }
        *it = (source_item){.data = q->cur.body,
                            .len = q->cur.len,
                            .rc = q->cur.too_big
                                      ? FO_ETOOBIG
                                      : (q->cur.bad ? FO_EINVAL : FO_OK),
                            .bad = q->cur.bad,
                            .msg_id = q->cur.id,
                            .handle = q->cur.handle,
                            .first = q->cur.first};
        return SOURCE_ITEM;
    }
    if (q->eof)
        return SOURCE_EOF;
    if (!q->pull_pending && want > 0) {
        send_cmd(q, CMD_PULL, want > PULL_MAX ? PULL_MAX : want, NULL, 0);
        q->pull_pending = 1;
    }
    if (!q->follow && q->pull_pending && q->empty_seen &&
        now - q->empty_since_ns >= q->grace_ns &&
        clock_wall_ms() >= q->wait_until_ms) {
        q->eof = 1;
        send_cmd(q, CMD_PULL, 0, NULL, 0);
        LOG_INFO("source.empty",
                 "the queue has been empty for %.1f s: no more items "
                 "(--follow keeps waiting)",
                 (double)(now - q->empty_since_ns) / 1e9);
        return SOURCE_EOF;
    }
    return SOURCE_AGAIN;
}

const char *squeue_error(const squeue *q)
{
    return q->err;
}

void *squeue_socket(squeue *q)
{
    return q->sock;
}

void squeue_tick(squeue *q, int64_t now, int holding)
{
    drain_events(q, now);
    if (!q->wait_leases ||
        !(holding || q->pull_pending || q->buf_at < q->buf_n))
        return;
    int64_t wall = clock_wall_ms();
    if (wall + q->lease_ms <= q->lease_until_ms)
        return;
    /* Every lease taken or renewed before the next write ends by then. */
    int64_t until = wall + 2 * q->lease_ms;
    char v[32];
    snprintf(v, sizeof v, "%" PRId64, until);
    if (store_set_setting(q->st, LEASE_KEY, v) == FO_OK)
        q->lease_until_ms = until;
}

void squeue_ack(squeue *q, const uint64_t *handles, size_t n)
{
    if (n)
        send_cmd(q, CMD_ACK, 0, handles, n);
}

void squeue_release(squeue *q, uint64_t handle)
{
    send_cmd(q, CMD_RELEASE, 0, &handle, 1);
}

char **squeue_take_acked(squeue *q, size_t *n)
{
    char **a = q->acked;
    *n = q->nacked;
    q->acked = NULL;
    q->nacked = q->acked_cap = 0;
    return a;
}
