/*
 * dispatch.c - credit-based dispatch and holder checks; see dispatch.h.
 */
#include "fmacros.h"
#include "dispatch.h"
#include "clock.h"
#include "log.h"

#include <inttypes.h>
#include <string.h>

void dispatch_init(dispatcher *d, batches *bt, budget *bud, sender *snd,
                   int64_t lease_ms, int64_t heartbeat_ms, int64_t start_ns)
{
    memset(d, 0, sizeof *d);
    d->bt = bt;
    d->bud = bud;
    d->snd = snd;
    d->lease_ns = lease_ms * FO_NS_PER_MS;
    d->unclaimed_ns = heartbeat_ms * FO_NS_PER_MS * 5 / 2;
    d->start_ns = start_ns;
}

void dispatch_set_resume(dispatcher *d, int64_t after_ns,
                         int64_t adopt_until_ns)
{
    d->after_ns = after_ns;
    d->adopt_until_ns = adopt_until_ns;
}

/* live_conc: the live workers' concurrency together (budget_live). */
static uint32_t credit(const dispatcher *d, const budget_worker *w,
                       int64_t live_conc)
{
    if (!w->used || w->leaving)
        return 0;
    uint64_t conc = w->concurrency ? w->concurrency : 1;
    uint64_t cap = conc * DISPATCH_CREDIT_PER_SLOT;
    if (cap <= w->assigned)
        return 0;
    if (d->window_bytes > 0 && w->assigned >= conc && live_conc > 0) {
        double share = (double)d->window_bytes * (double)conc /
                       ((double)live_conc * DISPATCH_WINDOW_SHARE_DIVISOR);
        if ((double)w->assigned_bytes >= share)
            return 0;
    }
    return (uint32_t)(cap - w->assigned);
}

uint32_t dispatch_credit(const dispatcher *d, const budget_worker *w)
{
    int64_t conc;
    budget_live(d->bud, &conc);
    return credit(d, w, conc);
}

/* An item dispatched to (or adopted by) w, and one it no longer holds. */
static void hold(budget_worker *w, const mitem *it)
{
    w->assigned++;
    w->assigned_bytes += batches_item_bytes(it);
}

static void unhold(budget_worker *w, const mitem *it)
{
    size_t b = batches_item_bytes(it);
    if (w->assigned > 0)
        w->assigned--;
    w->assigned_bytes = w->assigned_bytes > b ? w->assigned_bytes - b : 0;
}

static budget_worker *holder_of(const dispatcher *d, int32_t slot, uint32_t gen)
{
    if (slot < 0 || (size_t)slot >= budget_capacity(d->bud))
        return NULL;
    budget_worker *w = budget_at(d->bud, (size_t)slot);
    return w->used && w->gen == gen ? w : NULL;
}

static int32_t slot_of(const dispatcher *d, const budget_worker *w)
{
    return (int32_t)(w - budget_at(d->bud, 0));
}

/* The worker with the most free credit, and the second most. */
static budget_worker *best(const dispatcher *d, int64_t live_conc,
                           uint32_t *free1, uint32_t *free2)
{
    budget_worker *top = NULL;
    *free1 = *free2 = 0;
    for (size_t i = 0; i < budget_capacity(d->bud); i++) {
        budget_worker *w = budget_at(d->bud, i);
        uint32_t c = credit(d, w, live_conc);
        if (c > *free1) {
            *free2 = *free1;
            *free1 = c;
            top = w;
        } else if (c > *free2) {
            *free2 = c;
        }
    }
    return top;
}

/* Sends the item at ref to w; paid_at > 0: pre-paid for that time (keyed
 * mode). Returns 1 when it went out. */
static int send_item(dispatcher *d, budget_worker *w, proto_ref ref, mitem *it,
                     int64_t now, int64_t paid_at)
{
    proto_msg m = {.type = PROTO_WORK};
    if (paid_at > 0) {
        int64_t off_us = (paid_at - now - w->one_way_ns) / 1000;
        m.u.work.prepaid = 1;
        m.u.work.paid_offset_us =
            off_us > 0 ? (uint32_t)(off_us > UINT32_MAX ? UINT32_MAX : off_us)
                       : 0;
        m.u.work.attempts = it->kattempts;
        m.u.work.throttled = it->kthrottled;
    }
    char idem[BATCHES_IDEM_BYTES];
    batches_idem_key(d->bt, it, idem);
    m.u.work.ref = ref;
    m.u.work.key = it->key;
    m.u.work.url = it->url;
    m.u.work.body = it->body;
    m.u.work.body_len = it->body_len;
    m.u.work.idem_key = idem;
    if (sender_batch_work(d->snd, &m) != FO_OK) {
        /* Only a message too large to encode fails here; the render caps
         * keep items under the frame cap, so this is our bug or a huge
         * template. The item stays pending and is reported. */
        d->n_too_big++;
        LOG_ERROR("proto.encode_failed", "item %s too large to send", it->key);
        return 0;
    }
    if (!d->first_logged) {
        d->first_logged = 1;
        LOG_INFO("dispatch.first", "first item dispatched %.3f s after start",
                 (double)(clock_now_ns() - d->start_ns) / 1e9);
    }
    it->state = MI_SENT;
    it->sent_ns = now;
    it->holder = slot_of(d, w);
    it->holder_gen = w->gen;
    it->claimed = 0;
    it->dispatches++;
    it->deadline_ns = now + d->lease_ns;
    hold(w, it);
    it->kflight = paid_at > 0;
    d->n_sent++;
    return 1;
}

/* ---- keyed mode ------------------------------------------------------ */

void dispatch_set_keyed(dispatcher *d, const gcra_rate *rates, size_t nrates,
                        int64_t margin_ns, int64_t key_max_in_flight,
                        ratectl *rc, int64_t horizon_ns)
{
    keysched_destroy(&d->ks);
    d->ks = keysched_new();
    /* main.c caps the count at GCRA_MAX_LIMITS == KEYSCHED_MAX_LIMITS. */
    if (keysched_set_rates(d->ks, rates, nrates, margin_ns) != FO_OK)
        LOG_ERROR("key.rates", "--key-rate: out of range; none applied");
    keysched_set_max_in_flight(d->ks, key_max_in_flight);
    d->rc = rc;
    d->horizon_ns = horizon_ns;
}

void dispatch_fini(dispatcher *d)
{
    keysched_destroy(&d->ks);
}

static const char *rkey_of(const mitem *it, size_t *len)
{
    const char *k = it->rkey ? it->rkey : "";
    *len = strlen(k);
    return k;
}

/* An item given out in keyed mode is back: its key's slot frees. */
static void keyed_back(dispatcher *d, mitem *it)
{
    if (!it->kflight || !d->ks)
        return;
    size_t len;
    const char *k = rkey_of(it, &len);
    keysched_release(d->ks, k, len);
    it->kflight = 0;
}

static int still_pending(void *ctx, proto_ref ref)
{
    const mitem *it = batches_item(ctx, ref);
    return it && it->state == MI_PENDING && it->url;
}

uint64_t dispatch_keyed_inflight(const dispatcher *d)
{
    return d->ks ? keysched_inflight(d->ks) : 0;
}

/* Global conditions under which no keyed item goes out: an operator's or
 * the API's pause, or the global in-flight cap. */
static int keyed_blocked(const dispatcher *d, int64_t now)
{
    int64_t cap = budget_max_in_flight(d->bud);
    return budget_held(d->bud) || budget_paused_until(d->bud) > now ||
           (cap > 0 && keysched_inflight(d->ks) >= (uint64_t)cap);
}

static void run_keyed(dispatcher *d, int64_t now)
{
    ring *dq = &d->bt->dq;
    while (dq->len > 0) {
        proto_ref ref = *(proto_ref *)ring_at(dq, 0);
        ring_pop(dq);
        mitem *it = batches_item(d->bt, ref);
        if (!it || it->state != MI_PENDING || !it->url)
            continue;
        size_t len;
        const char *k = rkey_of(it, &len);
        keysched_push(d->ks, k, len, ref,
                      it->kwait_ns > now ? it->kwait_ns : now);
    }
    keysched_expire_idle(d->ks, now);
    gcra *global = budget_limiter(d->bud);
    int64_t conc;
    budget_live(d->bud, &conc);
    for (;;) {
        uint32_t free1, free2;
        budget_worker *w = best(d, conc, &free1, &free2);
        if (!w || keyed_blocked(d, now))
            return;
        proto_ref ref;
        int64_t at;
        /* Timed for when w hears of it, as grants are (budget.c). */
        int64_t arrive = now + w->one_way_ns;
        if (!keysched_next(d->ks, arrive, arrive + d->horizon_ns, global,
                           still_pending, d->bt, &ref, &at))
            return;
        mitem *it = batches_item(d->bt, ref);
        sender_batch_begin(d->snd, w->rid, w->rid_len);
        /* A spend time of 0 would read as "not pre-paid". */
        int sent = send_item(d, w, ref, it, now, at > 0 ? at : 1);
        sender_batch_end(d->snd);
        if (!sent) {
            size_t len;
            const char *k = rkey_of(it, &len);
            keysched_release(d->ks, k, len);
            continue;
        }
        if (d->rc)
            ratectl_granted(d->rc, at, 1);
    }
}

int64_t dispatch_next_wake(const dispatcher *d, int64_t now)
{
    if (!d->ks || now < d->after_ns || budget_held(d->bud))
        return INT64_MAX;
    int64_t t = keysched_next_wake(d->ks);
    if (t == INT64_MAX)
        return t;
    int64_t g = gcra_peek(budget_limiter(d->bud), now);
    if (g > t)
        t = g;
    if (budget_paused_until(d->bud) > t)
        t = budget_paused_until(d->bud);
    t -= d->horizon_ns;
    /* Due already but not sent: waiting for a worker's credit or the
     * in-flight cap, which a message frees; look again soon anyway. */
    return t > now ? t : now + 5 * FO_NS_PER_MS;
}

int dispatch_retry(dispatcher *d, const budget_worker *w, mitem *it,
                   proto_ref ref, const proto_msg *r, int64_t now)
{
    /* Only its holder now: a late RETRY from the holder before a
     * re-dispatch would queue an item another worker is calling. */
    if (!d->ks || !w || it->state != MI_SENT || it->holder != slot_of(d, w) ||
        it->holder_gen != w->gen)
        return 0;
    int64_t delay_ns = (int64_t)r->u.result.retry_in_ms * FO_NS_PER_MS;
    int throttled = r->u.result.throttled > it->kthrottled;
    it->kattempts = r->u.result.attempts;
    it->kthrottled = r->u.result.throttled;
    it->kwait_ns = now + delay_ns;
    if (throttled) {
        size_t len;
        const char *k = rkey_of(it, &len);
        keysched_pause(d->ks, k, len, now + delay_ns);
        LOG_DEBUG("key.throttled",
                  "key %.80s: HTTP %u, pausing it for %u ms (other keys go "
                  "on)",
                  k, r->u.result.http_status, r->u.result.retry_in_ms);
    }
    d->n_retries++;
    return dispatch_requeue(d, ref);
}

int dispatch_ready(const dispatcher *d, int64_t now)
{
    /* Keyed mode wakes by dispatch_next_wake() instead. */
    if (d->ks || now < d->after_ns || d->bt->dq.len == 0)
        return 0;
    int64_t conc;
    budget_live(d->bud, &conc);
    for (size_t i = 0; i < budget_capacity(d->bud); i++)
        if (credit(d, budget_at(d->bud, i), conc) > 0)
            return 1;
    return 0;
}

void dispatch_run(dispatcher *d, int64_t now)
{
    if (now < d->after_ns)
        return;
    if (d->ks) {
        run_keyed(d, now);
        return;
    }
    ring *dq = &d->bt->dq;
    int64_t conc;
    budget_live(d->bud, &conc);
    while (dq->len > 0) {
        uint32_t free1, free2;
        budget_worker *w = best(d, conc, &free1, &free2);
        if (!w)
            return;
        /* Fill the freest worker down to the next one's free credit: the
         * same split as one item at a time, in one scan. */
        uint32_t give = free1 - free2 + 1;
        if (give > free1)
            give = free1;
        sender_batch_begin(d->snd, w->rid, w->rid_len);
        while (give > 0 && dq->len > 0 && credit(d, w, conc) > 0) {
            proto_ref ref = *(proto_ref *)ring_at(dq, 0);
            mitem *it = batches_item(d->bt, ref);
            ring_pop(dq);
            if (it && it->state == MI_PENDING && it->url &&
                send_item(d, w, ref, it, now, 0))
                give--;
        }
        sender_batch_end(d->snd);
    }
}

int dispatch_holds(const dispatcher *d, const budget_worker *w, const mitem *it)
{
    int32_t slot = slot_of(d, w);
    return (it->holder == slot && it->holder_gen == w->gen) ||
           (it->prev_holder == slot && it->prev_gen == w->gen);
}

static void adopt(dispatcher *d, budget_worker *w, mitem *it, int64_t now)
{
    it->state = MI_SENT;
    it->sent_ns = now;
    it->holder = slot_of(d, w);
    it->holder_gen = w->gen;
    it->claimed = 1;
    it->deadline_ns = now + d->lease_ns;
    hold(w, it);
}

int dispatch_check(dispatcher *d, budget_worker *w, mitem *it, int adopt_it,
                   int64_t now, const char *what)
{
    if (dispatch_holds(d, w, it))
        return 1;
    if (now < d->adopt_until_ns && it->dispatches == 0 &&
        it->state == MI_PENDING && !w->leaving) {
        if (adopt_it)
            adopt(d, w, it, now);
        return 1;
    }
    d->n_foreign++;
    if (d->n_foreign <= 10 || d->n_foreign % 1000 == 0)
        LOG_WARN("peer.foreign",
                 "worker %s sent a %s for id %s, which it does not hold; "
                 "ignored (%" PRIu64 " so far)",
                 w->name, what, it->key, d->n_foreign);
    return 0;
}

void dispatch_listed(dispatcher *d, budget_worker *w, mitem *it, int64_t now)
{
    int32_t slot = slot_of(d, w);
    if (it->state == MI_PENDING && it->url && !w->leaving &&
        it->prev_holder == slot && it->prev_gen == w->gen) {
        /* Its lease ran out but the worker still has it: keep it there
         * rather than call the API twice. */
        adopt(d, w, it, now);
        return;
    }
    if (it->state == MI_SENT && it->holder == slot &&
        it->holder_gen == w->gen) {
        it->deadline_ns = now + d->lease_ns;
        it->claimed = 1;
    }
}

void dispatch_done(dispatcher *d, mitem *it)
{
    budget_worker *w = holder_of(d, it->holder, it->holder_gen);
    if (w)
        unhold(w, it);
    it->holder = -1;
    keyed_back(d, it);
}

int dispatch_requeue(dispatcher *d, proto_ref ref)
{
    mitem *it = batches_item(d->bt, ref);
    if (!it || it->state != MI_SENT)
        return 0;
    budget_worker *w = holder_of(d, it->holder, it->holder_gen);
    if (w)
        unhold(w, it);
    keyed_back(d, it);
    return batches_requeue(d->bt, ref);
}

size_t dispatch_requeue_worker(dispatcher *d, const budget_worker *w)
{
    int32_t slot = slot_of(d, w);
    size_t n = 0, nb = batches_len(d->bt);
    for (size_t i = 0; i <= nb; i++) {
        mbatch *b = i < nb ? batches_at(d->bt, i) : &d->bt->bld;
        for (uint32_t k = 0; k < b->n; k++) {
            mitem *it = &b->items[k];
            if (it->state == MI_SENT && it->holder == slot &&
                it->holder_gen == w->gen) {
                n += (size_t)dispatch_requeue(d, (proto_ref){b->no, k});
            }
        }
    }
    return n;
}

void dispatch_rejoined(dispatcher *d, budget_worker *w, uint32_t old_gen)
{
    int32_t slot = slot_of(d, w);
    size_t nb = batches_len(d->bt);
    for (size_t i = 0; i <= nb; i++) {
        mbatch *b = i < nb ? batches_at(d->bt, i) : &d->bt->bld;
        for (uint32_t k = 0; k < b->n; k++) {
            mitem *it = &b->items[k];
            if (it->holder == slot && it->holder_gen == old_gen) {
                it->holder_gen = w->gen;
                if (it->state == MI_SENT)
                    hold(w, it);
            }
            if (it->prev_holder == slot && it->prev_gen == old_gen)
                it->prev_gen = w->gen;
        }
    }
}

void dispatch_scan_leases(dispatcher *d, int64_t now, int64_t lease_ms)
{
    if (d->ks)
        keysched_expire(d->ks, now);
    size_t nb = batches_len(d->bt);
    for (size_t i = 0; i <= nb; i++) {
        mbatch *b = i < nb ? batches_at(d->bt, i) : &d->bt->bld;
        for (uint32_t k = 0; k < b->n; k++) {
            mitem *it = &b->items[k];
            if (it->state != MI_SENT)
                continue;
            if (it->deadline_ns < now) {
                LOG_INFO("lease.expired",
                         "id %s: its worker has not reported it for %" PRId64
                         " ms; re-dispatching",
                         it->key, lease_ms);
                dispatch_requeue(d, (proto_ref){b->no, k});
            } else if (!it->claimed && now - it->sent_ns > d->unclaimed_ns) {
                LOG_DEBUG("lease.unclaimed",
                          "id %s: its worker has not listed it; "
                          "re-dispatching",
                          it->key);
                dispatch_requeue(d, (proto_ref){b->no, k});
            }
        }
    }
}
