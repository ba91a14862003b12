/*
 * ring.h - a growable FIFO of fixed-size elements.
 *
 * Used for the master's dispatch queue and open batches and the worker's
 * tokens: push at the back, look at or pop the front, index from the front.
 * It doubles when full and never shrinks; pointers into it are valid only
 * until the next push. Visible only so it can be embedded.
 */
#ifndef FANOUT_RING_H
#define FANOUT_RING_H

#include <stddef.h>

typedef struct ring {
    unsigned char *data; /* cap * elem bytes */
    size_t elem;         /* element size in bytes */
    size_t head;         /* index of the front element */
    size_t len;          /* elements held */
    size_t cap;          /* elements allocated */
} ring;

/* An empty ring of elements of elem bytes. */
void ring_init(ring *r, size_t elem);
/* Frees the storage; the ring is empty and reusable. */
void ring_fini(ring *r);
/* Appends a zeroed element at the back and returns it. */
void *ring_push(ring *r);
/* The i-th element from the front (i < len). */
void *ring_at(const ring *r, size_t i);
/* Drops the front element (len > 0). */
void ring_pop(ring *r);
/* Drops every element, keeping the storage. */
void ring_clear(ring *r);

#endif
