/*
 * hmap.c - open addressing with linear probing; see hmap.h.
 *
 * Each slot holds the key's hash, a heap copy of the key and a heap block
 * for the value (so a slot stays small and moving it on a resize or a
 * backward shift never copies values). A slot with a NULL key is empty.
 */
#include "fmacros.h"
#include "hmap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct hmap_slot {
    uint64_t hash; /* FNV-1a of the key */
    char *key;     /* heap copy, NUL-terminated, or NULL when empty */
    size_t klen;   /* its length */
    void *val;     /* heap block of vsize bytes */
};

#define HMAP_MIN_CAP 16

static uint64_t hash_of(const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 0x100000001b3ULL;
    }
    /* Mix the high bits down: the table indexes by the low bits. */
    h ^= h >> 29;
    return h;
}

void hmap_init(hmap *h, size_t vsize)
{
    memset(h, 0, sizeof *h);
    h->vsize = vsize;
}

void hmap_fini(hmap *h)
{
    for (size_t i = 0; i < h->cap; i++) {
        free(h->slots[i].key);
        free(h->slots[i].val);
    }
    free(h->slots);
    h->slots = NULL;
    h->cap = 0;
    h->len = 0;
}

static size_t find(const hmap *h, uint64_t hash, const char *key, size_t klen)
{
    size_t mask = h->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const hmap_slot *s = &h->slots[i];
        if (!s->key)
            return SIZE_MAX;
        if (s->hash == hash && s->klen == klen && !memcmp(s->key, key, klen))
            return i;
    }
}

static void place(hmap_slot *slots, size_t cap, hmap_slot s)
{
    size_t mask = cap - 1;
    size_t i = (size_t)s.hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = s;
}

static void resize(hmap *h, size_t cap)
{
    hmap_slot *slots = xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < h->cap; i++)
        if (h->slots[i].key)
            place(slots, cap, h->slots[i]);
    free(h->slots);
    h->slots = slots;
    h->cap = cap;
}

void *hmap_get(const hmap *h, const char *key, size_t klen)
{
    if (!h->len)
        return NULL;
    size_t i = find(h, hash_of(key, klen), key, klen);
    return i == SIZE_MAX ? NULL : h->slots[i].val;
}

void *hmap_put(hmap *h, const char *key, size_t klen, const void *val)
{
    uint64_t hash = hash_of(key, klen);
    if (h->len) {
        size_t i = find(h, hash, key, klen);
        if (i != SIZE_MAX) {
            memcpy(h->slots[i].val, val, h->vsize);
            return h->slots[i].val;
        }
    }
    if ((h->len + 1) * 10 > h->cap * 7)
        resize(h, h->cap ? h->cap * 2 : HMAP_MIN_CAP);
    hmap_slot s = {hash, xstrndup(key, klen), klen, xmalloc(h->vsize)};
    memcpy(s.val, val, h->vsize);
    place(h->slots, h->cap, s);
    h->len++;
    return s.val;
}

int hmap_del(hmap *h, const char *key, size_t klen)
{
    if (!h->len)
        return 0;
    size_t i = find(h, hash_of(key, klen), key, klen);
    if (i == SIZE_MAX)
        return 0;
    free(h->slots[i].key);
    free(h->slots[i].val);
    /* Backward shift: pull later members of the probe run into the hole
     * when the hole lies between their home slot and where they sit. */
    size_t mask = h->cap - 1;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; h->slots[j].key; j = (j + 1) & mask) {
        size_t home = (size_t)h->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            h->slots[hole] = h->slots[j];
            hole = j;
        }
    }
    memset(&h->slots[hole], 0, sizeof h->slots[hole]);
    h->len--;
    if (h->cap > HMAP_MIN_CAP && h->len * 10 < h->cap)
        resize(h, h->cap / 2);
    return 1;
}

size_t hmap_len(const hmap *h)
{
    return h->len;
}
