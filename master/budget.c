/* budget.c - token grants and worker registry; see budget.h. */
#include "fmacros.h"
#include "budget.h"

#include <stdint.h>
#include "proto.h"
#include "util.h"

struct budget {
    gcra *lim;             /* the limiter (owned) */
    int64_t max_in_flight; /* 0: no cap */
    int64_t horizon_ns;    /* grant no token further ahead than this */
    int64_t in_use;        /* permits held by all workers */
    int64_t pause_until;   /* no grants before this */
    int held;              /* an operator paused the job */
    budget_worker *w;      /* slots */
    size_t cap;            /* slots allocated */
    size_t rr;             /* round-robin start */
    uint64_t granted;      /* tokens granted in all */
    int64_t clock_wait_ns; /* see budget_set_clock_wait */
};

budget *budget_new(gcra *lim, int64_t max_in_flight, int64_t horizon_ns)
{
    budget *b = xcalloc(1, sizeof *b);
    b->lim = lim;
    b->max_in_flight = max_in_flight;
    b->horizon_ns = horizon_ns;
    return b;
}

void budget_destroy(budget **bp)
{
    budget *b = *bp;
    if (!b)
        return;
    gcra_destroy(&b->lim);
    free(b->w);
    FO_FREE(bp);
}

gcra *budget_limiter(budget *b)
{
    return b->lim;
}

void budget_set_max_in_flight(budget *b, int64_t n)
{
    b->max_in_flight = n;
}

int64_t budget_max_in_flight(const budget *b)
{
    return b->max_in_flight;
}

budget_worker *budget_find(budget *b, const void *rid, size_t len)
{
    for (size_t i = 0; i < b->cap; i++)
        if (b->w[i].used && b->w[i].rid_len == len &&
            memcmp(b->w[i].rid, rid, len) == 0)
            return &b->w[i];
    return NULL;
}

static void drop_permits(budget *b, budget_worker *w)
{
    b->in_use -= w->permits;
    if (b->in_use < 0)
        b->in_use = 0;
    w->permits = 0;
}

budget_worker *budget_join(budget *b, const void *rid, size_t len, int64_t now)
{
    if (len > BUDGET_ID_BYTES)
        return NULL;
    budget_worker *w = budget_find(b, rid, len);
    if (!w) {
        for (size_t i = 0; i < b->cap && !w; i++)
            if (!b->w[i].used)
                w = &b->w[i];
        if (!w) {
            if (b->cap >= BUDGET_MAX_WORKERS)
                return NULL;
            size_t old = b->cap;
            b->cap = b->cap ? b->cap * 2 : 16;
            b->w = xrealloc(b->w, b->cap * sizeof *b->w);
            memset(b->w + old, 0, (b->cap - old) * sizeof *b->w);
            w = &b->w[old];
        }
    }
    uint32_t gen = w->gen + 1;
    drop_permits(b, w);
    memset(w, 0, sizeof *w);
    w->used = 1;
    w->gen = gen;
    memcpy(w->rid, rid, len);
    w->rid_len = len;
    w->joined_ns = now;
    w->last_seen_ns = now;
    w->rtt_us = -1;
    return w;
}

void budget_clock_sample(budget_worker *w, uint64_t sent_us, uint64_t echo_us,
                         uint64_t held_us, int64_t now_us)
{
    if (!sent_us || !echo_us || echo_us > (uint64_t)INT64_MAX ||
        sent_us > (uint64_t)INT64_MAX || held_us > (uint64_t)BUDGET_MAX_RTT_US)
        return;
    /* NTP: t1 = echo_us (ours), t2 = sent_us - held_us and t3 = sent_us
     * (the worker's), t4 = now_us (ours). */
    int64_t t1 = (int64_t)echo_us, t3 = (int64_t)sent_us;
    int64_t t2 = t3 - (int64_t)held_us, t4 = now_us;
    int64_t rtt = (t4 - t1) - (t3 - t2);
    if (rtt < 0 || rtt > BUDGET_MAX_RTT_US)
        return;
    uint32_t k = w->nclock++ % BUDGET_CLOCK_SAMPLES;
    w->rtt_samples[k] = rtt;
    w->offset_samples[k] = ((t2 - t1) + (t3 - t4)) / 2;
    uint32_t n =
        w->nclock < BUDGET_CLOCK_SAMPLES ? w->nclock : BUDGET_CLOCK_SAMPLES;
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (w->rtt_samples[i] < w->rtt_samples[best])
            best = i;
    w->rtt_us = w->rtt_samples[best];
    w->offset_us = w->offset_samples[best];
    w->one_way_ns = w->rtt_us * 1000 / 2;
}

void budget_remove(budget *b, budget_worker *w)
{
    drop_permits(b, w);
    uint32_t gen = w->gen;
    memset(w, 0, sizeof *w);
    w->gen = gen;
}

void budget_request(budget *b, budget_worker *w, int64_t want, uint64_t seen,
                    int64_t released)
{
    w->want = want;
    w->seen = seen;
    if (released > w->permits)
        released = w->permits;
    w->permits -= released;
    b->in_use -= released;
}

/* Tokens this worker still wants, net of grants it has not yet seen. */
static int64_t net_want(const budget_worker *w)
{
    int64_t unseen = (int64_t)(w->granted - w->seen);
    return w->want - (unseen > 0 ? unseen : 0);
}

size_t budget_grant(budget *b, int64_t now, budget_send_fn send, void *ctx)
{
    if (now < b->pause_until || b->cap == 0 || b->held)
        return 0;
    size_t total = 0, first_served = SIZE_MAX;
    uint32_t offs[PROTO_MAX_GRANT];
    for (size_t k = 0; k < b->cap; k++) {
        size_t slot = (b->rr + k) % b->cap;
        budget_worker *w = &b->w[slot];
        if (!w->used || w->leaving)
            continue;
        int64_t want = net_want(w);
        if (want <= 0)
            continue;
        if (w->rtt_us < 0 && now - w->joined_ns < b->clock_wait_ns)
            continue; /* its grants would be timed for a wrong delay */
        if (b->max_in_flight > 0) {
            int64_t free_permits = b->max_in_flight - b->in_use;
            if (free_permits <= 0)
                break;
            if (want > free_permits)
                want = free_permits;
        }
        if (want > PROTO_MAX_GRANT)
            want = PROTO_MAX_GRANT;
        /* A worker one_way away hears of a token that much later: its
         * tokens come no sooner than that, and the offsets it gets are
         * counted from when it hears of them. */
        int64_t arrive = now + w->one_way_ns;
        uint32_t n = 0;
        while ((int64_t)n < want) {
            int64_t t = gcra_peek(b->lim, arrive);
            if (t > arrive + b->horizon_ns)
                break;
            (void)gcra_take(b->lim, arrive);
            offs[n++] = (uint32_t)((t - arrive) / 1000);
        }
        if (n == 0)
            continue; /* spent for this horizon (a worker further away
                         may still be served: its horizon ends later) */
        w->granted += n;
        w->permits += n;
        b->in_use += n;
        b->granted += n;
        total += n;
        if (first_served == SIZE_MAX)
            first_served = slot;
        send(ctx, w, offs, n);
    }
    /* The first worker served goes to the back of the line: when permits
     * or tokens are scarce, workers take turns, whichever slots they
     * occupy (advancing by one slot let the first of two workers in
     * sixteen slots go first fifteen times in sixteen). */
    if (first_served != SIZE_MAX)
        b->rr = (first_served + 1) % b->cap;
    return total;
}

int64_t budget_next_wake(const budget *b, int64_t now)
{
    int waiting = 0;
    int64_t clock_wake = INT64_MAX; /* a wait for a round trip ends */
    for (size_t i = 0; i < b->cap; i++) {
        const budget_worker *w = &b->w[i];
        if (!w->used || w->leaving || net_want(w) <= 0)
            continue;
        if (w->rtt_us < 0 && now - w->joined_ns < b->clock_wait_ns) {
            /* Its heartbeat wakes the loop; else its wait's end. */
            if (w->joined_ns + b->clock_wait_ns < clock_wake)
                clock_wake = w->joined_ns + b->clock_wait_ns;
            continue;
        }
        waiting = 1;
        break;
    }
    if (b->held)
        return INT64_MAX;
    if (!waiting)
        return clock_wake;
    if (b->max_in_flight > 0 && b->in_use >= b->max_in_flight)
        return INT64_MAX;
    int64_t t = gcra_peek(b->lim, now) - b->horizon_ns;
    if (t < b->pause_until)
        t = b->pause_until;
    return t > now ? t : now;
}

void budget_set_clock_wait(budget *b, int64_t wait_ns)
{
    b->clock_wait_ns = wait_ns;
}

void budget_pause(budget *b, int64_t until)
{
    if (until > b->pause_until)
        b->pause_until = until;
}

int64_t budget_paused_until(const budget *b)
{
    return b->pause_until;
}

void budget_hold(budget *b, int on)
{
    b->held = on;
}

int budget_held(const budget *b)
{
    return b->held;
}

size_t budget_capacity(const budget *b)
{
    return b->cap;
}

budget_worker *budget_at(budget *b, size_t i)
{
    return &b->w[i];
}

size_t budget_live(const budget *b, int64_t *concurrency)
{
    size_t n = 0;
    int64_t c = 0;
    for (size_t i = 0; i < b->cap; i++) {
        if (b->w[i].used && !b->w[i].leaving) {
            n++;
            c += b->w[i].concurrency;
        }
    }
    if (concurrency)
        *concurrency = c;
    return n;
}

int64_t budget_permits_in_use(const budget *b)
{
    return b->in_use;
}

uint64_t budget_tokens_granted(const budget *b)
{
    return b->granted;
}
