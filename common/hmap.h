/*
 * hmap.h - a hash map from byte-string keys to fixed-size values.
 *
 * The master indexes open queue items and orphaned results by their
 * Idempotency-Key. It used to keep them in a jansson object with the value
 * packed into a JSON integer (a batch shifted left by 20 bits, or a
 * pointer), which silently broke past 2^20 items a batch and hid the type.
 * This map stores each value inline, at the size given at init, so a
 * proto_ref or a pointer is kept as what it is.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), so a long-running job that inserts and deletes millions of
 * keys never degrades. It grows at 70% load and shrinks below 10%, so its
 * memory follows the number of live keys (O(in flight)). Keys are copied.
 * Visible only so it can be embedded.
 */
#ifndef FANOUT_HMAP_H
#define FANOUT_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hmap_slot hmap_slot;

typedef struct hmap {
    hmap_slot *slots; /* cap slots, NULL while empty */
    size_t cap;       /* slots allocated (0 or a power of two) */
    size_t len;       /* keys held */
    size_t vsize;     /* bytes of each value */
} hmap;

/* An empty map whose values are vsize bytes each. */
void hmap_init(hmap *h, size_t vsize);
/* Frees every key and value; the map is empty and reusable. */
void hmap_fini(hmap *h);
/* The value stored under key, or NULL. The pointer is valid until the next
 * hmap_put or hmap_del. */
void *hmap_get(const hmap *h, const char *key, size_t klen);
/* Stores a copy of vsize bytes at val under key (replacing any value) and
 * returns the stored value. */
void *hmap_put(hmap *h, const char *key, size_t klen, const void *val);
/* Removes key; returns 1 when it was there, else 0. */
int hmap_del(hmap *h, const char *key, size_t klen);
/* Keys held. */
size_t hmap_len(const hmap *h);

#endif
