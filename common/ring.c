/* ring.c - growable FIFO; see ring.h. */
#include "fmacros.h"
#include "ring.h"
#include "util.h"

#include <assert.h>

void ring_init(ring *r, size_t elem)
{
    memset(r, 0, sizeof *r);
    r->elem = elem;
}

void ring_fini(ring *r)
{
    FO_FREE(&r->data);
    r->head = r->len = r->cap = 0;
}

void *ring_at(const ring *r, size_t i)
{
    assert(i < r->len);
    return r->data + ((r->head + i) % r->cap) * r->elem;
}

void *ring_push(ring *r)
{
    if (r->len == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        unsigned char *n = xcalloc(nc, r->elem);
        for (size_t i = 0; i < r->len; i++)
            memcpy(n + i * r->elem, ring_at(r, i), r->elem);
        free(r->data);
        r->data = n;
        r->cap = nc;
        r->head = 0;
    }
    r->len++;
    void *slot = ring_at(r, r->len - 1);
    memset(slot, 0, r->elem);
    return slot;
}

void ring_pop(ring *r)
{
    assert(r->len > 0);
    r->head = (r->head + 1) % r->cap;
    r->len--;
}

void ring_clear(ring *r)
{
    r->head = r->len = 0;
}
