/*
 * keysched.c - per-key limits and the ready heap; see keysched.h.
 *
 * Entries live in a hash map by key (the value is the entry's pointer)
 * and on a list for the expiry sweep and the top-N report. The heap holds
 * the entries that can take an item (something waits and the key is under
 * its in-flight cap), keyed by their eligible time; an entry knows its
 * heap index so that a change re-sifts it in O(log active).
 */
#include "fmacros.h"
#include "keysched.h"
#include "hmap.h"
#include "ring.h"
#include "util.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_IN_HEAP SIZE_MAX

typedef struct kwait {
    proto_ref ref;      /* the item */
    int64_t not_before; /* no call before this (a retry's delay) */
} kwait;

typedef struct kentry {
    size_t klen;                      /* the key's length */
    int64_t tat[KEYSCHED_MAX_LIMITS]; /* theoretical arrival time per limit */
    int64_t paused_until;             /* a 429's pause end, 0 none */
    uint32_t inflight;                /* items given out, not back */
    kwait first;                      /* the first waiting item ... */
    uint32_t nfirst;                  /* ... when 1 (0: none waits) */
    ring rest;                        /* the others (kwait), in order */
    size_t hidx;                      /* heap index, or NOT_IN_HEAP */
    int64_t eligible;                 /* when it can next pay (in heap) */
    uint64_t seq;                     /* order of equal eligible times */
    uint64_t calls;                   /* attempts paid */
    uint64_t throttled;               /* pauses */
    struct kentry *prev, *next;       /* the list of every entry */
    struct kentry *iprev, *inext;     /* the idle list, when on it */
    int idle;                         /* on the idle list */
    char key[];                       /* the key, NUL-terminated */
} kentry;

/* An entry's FIFO of waiting items. Most keys of a many-tenant job hold
 * one item at a time: it sits in the entry, and the ring (64 slots once
 * used) is allocated only for a second. */
static size_t q_len(const kentry *e)
{
    return e->nfirst + e->rest.len;
}

static void q_push(kentry *e, proto_ref ref, int64_t not_before)
{
    kwait *w = e->nfirst ? ring_push(&e->rest) : &e->first;
    w->ref = ref;
    w->not_before = not_before;
    e->nfirst = 1;
}

static void q_pop(kentry *e)
{
    if (e->rest.len) {
        e->first = *(kwait *)ring_at(&e->rest, 0);
        ring_pop(&e->rest);
        if (!e->rest.len)
            ring_fini(&e->rest); /* free it: a backlog has ended */
    } else {
        e->nfirst = 0;
    }
}

struct keysched {
    hmap map;                             /* key -> kentry * */
    kentry *all;                          /* every entry */
    kentry **heap;                        /* entries that can take an item */
    size_t hlen, hcap;                    /* heap length, allocated */
    int64_t t_ns[KEYSCHED_MAX_LIMITS];    /* emission interval per limit */
    gcra_rate rates[KEYSCHED_MAX_LIMITS]; /* the limits as given */
    size_t nlim;                          /* their count */
    int64_t max_in_flight;                /* per key, 0 none */
    uint64_t waiting;                     /* items waiting, all keys */
    uint64_t inflight;                    /* items in flight, all keys */
    uint64_t throttled;                   /* pauses, all keys */
    uint64_t seq;                         /* next kentry.seq */
    kentry *idle_head, *idle_tail;        /* entries with nothing waiting or in
                                             flight, in the order they became so */
    size_t freed_since_trim;              /* entries expired since then */
    int64_t last_trim_ns;                 /* last malloc_trim */
};

/* After a crowd of keys has expired, their memory goes back to the system
 * (at most once a second): memory follows the keys active now, not the
 * most that were ever active at once. */
#define KEYSCHED_TRIM_AFTER 4096
#define KEYSCHED_TRIM_EVERY_NS INT64_C(1000000000)

keysched *keysched_new(void)
{
    keysched *ks = xcalloc(1, sizeof *ks);
    hmap_init(&ks->map, sizeof(kentry *));
    return ks;
}

static void entry_free(kentry *e)
{
    ring_fini(&e->rest);
    free(e);
}

void keysched_destroy(keysched **ksp)
{
    keysched *ks = *ksp;
    if (!ks)
        return;
    for (kentry *e = ks->all, *n; e; e = n) {
        n = e->next;
        entry_free(e);
    }
    hmap_fini(&ks->map);
    free(ks->heap);
    free(ks);
    *ksp = NULL;
}

fo_err keysched_set_rates(keysched *ks, const gcra_rate *r, size_t n,
                          int64_t margin_ns)
{
    if (n > KEYSCHED_MAX_LIMITS || margin_ns < 0)
        return FO_EINVAL;
    int64_t t[KEYSCHED_MAX_LIMITS] = {0};
    for (size_t i = 0; i < n; i++) {
        if (r[i].count <= 0 || r[i].period_ns <= 0)
            return FO_EINVAL;
        t[i] = (r[i].period_ns + margin_ns) / r[i].count;
        if (t[i] < 1)
            t[i] = 1;
    }
    memcpy(ks->t_ns, t, n * sizeof *t);
    memcpy(ks->rates, r, n * sizeof *r);
    ks->nlim = n;
    return FO_OK;
}

size_t keysched_rates(const keysched *ks, gcra_rate *out, size_t max)
{
    size_t n = ks->nlim < max ? ks->nlim : max;
    memcpy(out, ks->rates, n * sizeof *out);
    return n;
}

void keysched_set_max_in_flight(keysched *ks, int64_t n)
{
    ks->max_in_flight = n < 0 ? 0 : n;
}

/* ---- the heap -------------------------------------------------------- */

/* Heap order: the earlier eligible time, then the key that was
 * scheduled first. Without the second, keys due at the same moment come
 * out in no particular order, and with new keys arriving all the time an
 * old one could wait for ever. */
static int before(const kentry *a, const kentry *b)
{
    return a->eligible != b->eligible ? a->eligible < b->eligible
                                      : a->seq < b->seq;
}

static void heap_set(keysched *ks, size_t i, kentry *e)
{
    ks->heap[i] = e;
    e->hidx = i;
}

static void sift_up(keysched *ks, size_t i)
{
    kentry *e = ks->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(e, ks->heap[p]))
            break;
        heap_set(ks, i, ks->heap[p]);
        i = p;
    }
    heap_set(ks, i, e);
}

static void sift_down(keysched *ks, size_t i)
{
    kentry *e = ks->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= ks->hlen)
            break;
        if (c + 1 < ks->hlen && before(ks->heap[c + 1], ks->heap[c]))
            c++;
        if (!before(ks->heap[c], e))
            break;
        heap_set(ks, i, ks->heap[c]);
        i = c;
    }
    heap_set(ks, i, e);
}

static void heap_remove(keysched *ks, kentry *e)
{
    size_t i = e->hidx;
    if (i == NOT_IN_HEAP)
        return;
    e->hidx = NOT_IN_HEAP;
    kentry *last = ks->heap[--ks->hlen];
    if (i == ks->hlen)
        return;
    heap_set(ks, i, last);
    sift_up(ks, i);
    sift_down(ks, last->hidx);
}

/* The earliest time the key's limits allow its next call (burst 1: no
 * tolerance, each call at least one interval after the last). */
static int64_t key_time(const keysched *ks, const kentry *e)
{
    int64_t t = e->paused_until;
    for (size_t l = 0; l < ks->nlim; l++)
        if (e->tat[l] > t)
            t = e->tat[l];
    return t;
}

/* Puts e in the heap at its eligible time, or takes it out when it
 * cannot take an item (nothing waits, or its cap is reached). */
static void reschedule(keysched *ks, kentry *e)
{
    int can = e->nfirst && (ks->max_in_flight == 0 ||
                            (int64_t)e->inflight < ks->max_in_flight);
    if (!can) {
        heap_remove(ks, e);
        return;
    }
    int64_t t = key_time(ks, e);
    const kwait *head = &e->first;
    if (head->not_before > t)
        t = head->not_before;
    e->eligible = t;
    e->seq = ks->seq++;
    if (e->hidx == NOT_IN_HEAP) {
        if (ks->hlen == ks->hcap) {
            ks->hcap = ks->hcap ? ks->hcap * 2 : 64;
            ks->heap = xrealloc(ks->heap, ks->hcap * sizeof(kentry *));
        }
        heap_set(ks, ks->hlen++, e);
        sift_up(ks, e->hidx);
    } else {
        sift_up(ks, e->hidx);
        sift_down(ks, e->hidx);
    }
}

/* ---- the idle list --------------------------------------------------- */

/* Entries with nothing waiting or in flight, oldest first. Every key
 * shares the limits, so the order they went idle is (nearly) the order
 * their buckets refill: keysched_expire() frees from the front and stops
 * at the first that has not refilled, in O(freed). */
static void idle_unlink(keysched *ks, kentry *e)
{
    if (!e->idle)
        return;
    if (e->iprev)
        e->iprev->inext = e->inext;
    else
        ks->idle_head = e->inext;
    if (e->inext)
        e->inext->iprev = e->iprev;
    else
        ks->idle_tail = e->iprev;
    e->iprev = e->inext = NULL;
    e->idle = 0;
}

/* Puts e at the back of the idle list when it has become idle. */
static void idle_check(keysched *ks, kentry *e)
{
    if (e->idle || e->nfirst || e->inflight)
        return;
    e->iprev = ks->idle_tail;
    e->inext = NULL;
    if (ks->idle_tail)
        ks->idle_tail->inext = e;
    else
        ks->idle_head = e;
    ks->idle_tail = e;
    e->idle = 1;
}

/* ---- entries --------------------------------------------------------- */

static kentry *find(const keysched *ks, const char *key, size_t klen)
{
    kentry **p = hmap_get(&ks->map, key, klen);
    return p ? *p : NULL;
}

static kentry *get_or_add(keysched *ks, const char *key, size_t klen)
{
    kentry *e = find(ks, key, klen);
    if (e)
        return e;
    e = xcalloc(1, sizeof *e + klen + 1);
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->klen = klen;
    e->hidx = NOT_IN_HEAP;
    ring_init(&e->rest, sizeof(kwait));
    hmap_put(&ks->map, key, klen, &e);
    e->next = ks->all;
    if (ks->all)
        ks->all->prev = e;
    ks->all = e;
    return e;
}

static void entry_remove(keysched *ks, kentry *e)
{
    heap_remove(ks, e);
    idle_unlink(ks, e);
    hmap_del(&ks->map, e->key, e->klen);
    if (e->prev)
        e->prev->next = e->next;
    else
        ks->all = e->next;
    if (e->next)
        e->next->prev = e->prev;
    ks->waiting -= q_len(e);
    ks->inflight -= e->inflight;
    entry_free(e);
}

void keysched_push(keysched *ks, const char *key, size_t klen, proto_ref ref,
                   int64_t not_before_ns)
{
    kentry *e = get_or_add(ks, key, klen);
    idle_unlink(ks, e);
    q_push(e, ref, not_before_ns);
    ks->waiting++;
    if (q_len(e) == 1)
        reschedule(ks, e);
}

int keysched_next(keysched *ks, int64_t now, int64_t by, gcra *global,
                  keysched_valid_fn valid, void *ctx, proto_ref *ref,
                  int64_t *at)
{
    while (ks->hlen > 0) {
        kentry *e = ks->heap[0];
        if (e->eligible > by)
            return 0;
        const kwait *head = &e->first;
        if (valid && !valid(ctx, head->ref)) {
            q_pop(e);
            ks->waiting--;
            reschedule(ks, e);
            idle_check(ks, e);
            continue;
        }
        int64_t t = e->eligible > now ? e->eligible : now;
        if (global) {
            int64_t tg = gcra_peek(global, now);
            if (tg > t)
                t = tg;
        }
        if (t > by)
            return 0;
        if (global)
            t = gcra_take(global, t);
        for (size_t l = 0; l < ks->nlim; l++)
            e->tat[l] = (e->tat[l] > t ? e->tat[l] : t) + ks->t_ns[l];
        *ref = head->ref;
        *at = t;
        q_pop(e);
        ks->waiting--;
        e->inflight++;
        ks->inflight++;
        e->calls++;
        reschedule(ks, e);
        idle_check(ks, e);
        return 1;
    }
    return 0;
}

void keysched_release(keysched *ks, const char *key, size_t klen)
{
    kentry *e = find(ks, key, klen);
    if (!e || e->inflight == 0)
        return;
    e->inflight--;
    ks->inflight--;
    reschedule(ks, e);
    idle_check(ks, e);
}

void keysched_pause(keysched *ks, const char *key, size_t klen,
                    int64_t until_ns)
{
    kentry *e = get_or_add(ks, key, klen);
    /* Idle (or new): to the back of the idle list, whose front is
     * expected to refill first. */
    idle_unlink(ks, e);
    idle_check(ks, e);
    e->throttled++;
    ks->throttled++;
    if (until_ns > e->paused_until)
        e->paused_until = until_ns;
    if (e->hidx != NOT_IN_HEAP)
        reschedule(ks, e);
}

size_t keysched_expire_idle(keysched *ks, int64_t now)
{
    size_t n = 0;
    while (ks->idle_head && key_time(ks, ks->idle_head) <= now) {
        entry_remove(ks, ks->idle_head);
        n++;
    }
    ks->freed_since_trim += n;
    if (ks->freed_since_trim >= KEYSCHED_TRIM_AFTER &&
        now - ks->last_trim_ns >= KEYSCHED_TRIM_EVERY_NS) {
        malloc_trim(0);
        ks->freed_since_trim = 0;
        ks->last_trim_ns = now;
    }
    return n;
}

size_t keysched_expire(keysched *ks, int64_t now)
{
    size_t n = 0;
    for (kentry *e = ks->all, *next; e; e = next) {
        next = e->next;
        if (!e->nfirst && e->inflight == 0 && key_time(ks, e) <= now) {
            entry_remove(ks, e);
            n++;
        }
    }
    return n;
}

/* ---- figures --------------------------------------------------------- */

int64_t keysched_next_wake(const keysched *ks)
{
    return ks->hlen ? ks->heap[0]->eligible : INT64_MAX;
}

size_t keysched_active(const keysched *ks)
{
    return hmap_len(&ks->map);
}

uint64_t keysched_waiting(const keysched *ks)
{
    return ks->waiting;
}

uint64_t keysched_inflight(const keysched *ks)
{
    return ks->inflight;
}

uint64_t keysched_throttled_total(const keysched *ks)
{
    return ks->throttled;
}

/* 1 when a ranks above b: more waiting and in flight, then more calls. */
static int above(const keysched_stat *a, const keysched_stat *b)
{
    uint64_t la = a->waiting + a->inflight, lb = b->waiting + b->inflight;
    return la != lb ? la > lb : a->calls > b->calls;
}

size_t keysched_top(const keysched *ks, int64_t now, keysched_stat *out,
                    size_t max)
{
    if (max > KEYSCHED_TOP_MAX)
        max = KEYSCHED_TOP_MAX;
    size_t n = 0;
    for (const kentry *e = ks->all; e && max; e = e->next) {
        keysched_stat s = {.waiting = q_len(e),
                           .inflight = e->inflight,
                           .calls = e->calls,
                           .throttled = e->throttled,
                           .paused_ms = e->paused_until > now
                                            ? (e->paused_until - now) / 1000000
                                            : 0};
        snprintf(s.key, sizeof s.key, "%s", e->key);
        if (n == max && !above(&s, &out[n - 1]))
            continue;
        size_t i = n < max ? n++ : n - 1;
        while (i > 0 && above(&s, &out[i - 1])) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = s;
    }
    return n;
}
