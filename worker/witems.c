/* witems.c - the worker's held items and ready queue; see witems.h. */
#include "fmacros.h"
#include "witems.h"
#include "util.h"

#include <stdarg.h>

static void item_free(witem *it)
{
    free(it->key);
    free(it->url);
    free(it->body);
    free(it->idem);
    free(it->last_error);
    free(it);
}

void witems_init(witems *s)
{
    memset(s, 0, sizeof *s);
}

void witems_fini(witems *s)
{
    for (size_t i = 0; i < s->n; i++)
        item_free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

static void rq_push(witems *s, witem *it)
{
    it->state = WI_READY;
    it->qnext = NULL;
    if (s->rq_tail)
        s->rq_tail->qnext = it;
    else
        s->rq_head = it;
    s->rq_tail = it;
    s->nready++;
}

witem *witems_add(witems *s, proto_msg *m)
{
    witem *it = xcalloc(1, sizeof *it);
    it->ref = m->u.work.ref;
    it->key = m->u.work.key;
    it->url = m->u.work.url;
    it->body = m->u.work.body;
    it->body_len = m->u.work.body_len;
    it->idem = m->u.work.idem_key;
    m->u.work.key = m->u.work.url = m->u.work.body = m->u.work.idem_key = NULL;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->items = xrealloc(s->items, s->cap * sizeof *s->items);
    }
    s->items[s->n++] = it;
    rq_push(s, it);
    return it;
}

size_t witems_held(const witems *s)
{
    return s->n;
}

size_t witems_ready(const witems *s)
{
    return s->nready;
}

witem *witems_pop_ready(witems *s)
{
    witem *it = s->rq_head;
    if (!it)
        return NULL;
    s->rq_head = it->qnext;
    if (!s->rq_head)
        s->rq_tail = NULL;
    s->nready--;
    it->qnext = NULL;
    return it;
}

void witems_wait(witems *s, witem *it, int64_t ready_at_ns)
{
    (void)s;
    it->state = WI_WAIT;
    it->ready_at_ns = ready_at_ns;
}

/* O(held) per turn of the loop: a worker holds about its concurrency plus
 * what the master prefetches, a few hundred items, so a timer heap would
 * cost more than it saves. */
int64_t witems_wake(witems *s, int64_t now)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < s->n; i++) {
        witem *it = s->items[i];
        if (it->state != WI_WAIT)
            continue;
        if (it->ready_at_ns <= now)
            rq_push(s, it);
        else if (it->ready_at_ns < next)
            next = it->ready_at_ns;
    }
    return next;
}

void witems_finish(witems *s, witem *it)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->items[i] == it) {
            s->items[i] = s->items[--s->n];
            break;
        }
    }
    item_free(it);
}

void witems_drop_unstarted(witems *s, proto_ref **refs, uint32_t *nrefs)
{
    if (refs) {
        *refs = s->n ? xcalloc(s->n, sizeof **refs) : NULL;
        *nrefs = 0;
    }
    size_t keep = 0;
    for (size_t i = 0; i < s->n; i++) {
        witem *it = s->items[i];
        if (it->state == WI_FLIGHT) {
            it->orphaned = 1;
            s->items[keep++] = it;
            continue;
        }
        if (refs)
            (*refs)[(*nrefs)++] = it->ref;
        item_free(it);
    }
    s->n = keep;
    s->rq_head = s->rq_tail = NULL;
    s->nready = 0;
}

uint32_t witems_refs(const witems *s, proto_ref *refs, uint32_t max)
{
    uint32_t n = s->n > max ? max : (uint32_t)s->n;
    for (uint32_t i = 0; i < n; i++)
        refs[i] = s->items[i]->ref;
    return n;
}

void witem_set_error(witem *it, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(it->last_error);
    it->last_error = xstrdup(buf);
}

witem *witems_add_paid(witems *s, proto_msg *m, int64_t at_ns)
{
    uint32_t attempts = m->u.work.attempts, throttled = m->u.work.throttled;
    witem *it = witems_add(s, m);
    /* witems_add queued it last: take it back off the ready queue. */
    witem **pp = &s->rq_head, *prev = NULL;
    while (*pp && *pp != it) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (*pp) {
        *pp = it->qnext;
        if (s->rq_tail == it)
            s->rq_tail = prev;
        s->nready--;
    }
    it->qnext = NULL;
    it->state = WI_PAID;
    it->ready_at_ns = at_ns;
    it->prepaid = 1;
    it->attempts = attempts;
    it->throttled = throttled;
    return it;
}

witem *witems_due_paid(witems *s, int64_t now, int64_t *next)
{
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < s->n; i++) {
        witem *it = s->items[i];
        if (it->state != WI_PAID)
            continue;
        if (it->ready_at_ns <= now)
            return it;
        if (it->ready_at_ns < first)
            first = it->ready_at_ns;
    }
    if (next)
        *next = first;
    return NULL;
}
