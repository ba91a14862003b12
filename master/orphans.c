/*
 * orphans.c - a FIFO of kept RESULTs with an index by Idempotency-Key; see
 * orphans.h. A result taken out of the middle is marked used and freed when
 * it reaches the front, so the FIFO stays in arrival order.
 */
#include "fmacros.h"
#include "orphans.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

typedef struct orphan {
    proto_msg r;  /* the RESULT */
    int64_t t_ns; /* when it arrived */
    int used;     /* taken (r is empty) */
} orphan;

void orphans_init(orphans *o)
{
    memset(o, 0, sizeof *o);
    ring_init(&o->fifo, sizeof(orphan *));
    hmap_init(&o->ix, sizeof(orphan *));
}

static orphan *front(const orphans *o)
{
    return *(orphan **)ring_at(&o->fifo, 0);
}

static void pop(orphans *o)
{
    orphan *x = front(o);
    if (!x->used) {
        o->n_dropped++;
        const char *k = x->r.u.result.idem_key;
        hmap_del(&o->ix, k, strlen(k));
        o->bytes -= x->r.u.result.response_len;
        proto_msg_fini(&x->r);
    }
    free(x);
    ring_pop(&o->fifo);
}

void orphans_fini(orphans *o)
{
    while (o->fifo.len)
        pop(o);
    ring_fini(&o->fifo);
    hmap_fini(&o->ix);
}

void orphans_expire(orphans *o, int64_t now)
{
    while (o->fifo.len &&
           (front(o)->used || now - front(o)->t_ns > ORPHANS_TTL_NS))
        pop(o);
}

void orphans_stash(orphans *o, proto_msg *r, int64_t now)
{
    orphans_expire(o, now);
    const char *k = r->u.result.idem_key;
    if (hmap_get(&o->ix, k, strlen(k))) {
        o->n_dup++;
        return;
    }
    while (o->fifo.len &&
           (o->fifo.len >= ORPHANS_MAX ||
            o->bytes + r->u.result.response_len > ORPHANS_MAX_BYTES))
        pop(o);
    orphan *x = xcalloc(1, sizeof *x);
    x->r = *r;
    memset(r, 0, sizeof *r);
    x->t_ns = now;
    *(orphan **)ring_push(&o->fifo) = x;
    k = x->r.u.result.idem_key;
    hmap_put(&o->ix, k, strlen(k), &x);
    o->bytes += x->r.u.result.response_len;
    LOG_KV(LOG_LVL_DEBUG, "result.orphan",
           LOG_FIELDS(LOG_S("item", x->r.u.result.key),
                      LOG_S("worker", x->r.u.result.worker)),
           "result for id %s of an earlier run kept until its message "
           "comes back",
           x->r.u.result.key);
}

int orphans_take(orphans *o, const char *idem, proto_msg *out)
{
    orphan **p = hmap_get(&o->ix, idem, strlen(idem));
    if (!p)
        return 0;
    orphan *x = *p;
    hmap_del(&o->ix, idem, strlen(idem));
    x->used = 1;
    o->bytes -= x->r.u.result.response_len;
    *out = x->r;
    memset(&x->r, 0, sizeof x->r);
    o->n_used++;
    return 1;
}

size_t orphans_len(const orphans *o)
{
    return o->fifo.len;
}
