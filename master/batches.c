/*
 * batches.c - the ring of open batches, their items and the dispatch
 * queue; see batches.h.
 */
#include "fmacros.h"
#include "batches.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void batches_init(batches *b, uint64_t idem_seed, uint64_t first_batch)
{
    memset(b, 0, sizeof *b);
    ring_init(&b->open, sizeof(mbatch));
    ring_init(&b->dq, sizeof(proto_ref));
    hmap_init(&b->open_ids, sizeof(proto_ref));
    b->idem_seed = idem_seed;
    b->bld.no = first_batch;
}

static void item_free(batches *b, mitem *it)
{
    batches_release(it);
    FO_FREE(&it->key);
    if (it->msg_id) {
        char idem[BATCHES_IDEM_BYTES];
        batches_idem_key(b, it, idem);
        hmap_del(&b->open_ids, idem, strlen(idem));
        FO_FREE(&it->msg_id);
    }
}

static void batch_free(batches *b, mbatch *mb)
{
    for (uint32_t k = 0; k < mb->n; k++)
        item_free(b, &mb->items[k]);
    FO_FREE(&mb->items);
    mb->n = 0;
}

void batches_fini(batches *b)
{
    for (size_t i = 0; i < b->open.len; i++)
        batch_free(b, batches_at(b, i));
    batch_free(b, &b->bld);
    ring_fini(&b->open);
    ring_fini(&b->dq);
    hmap_fini(&b->open_ids);
}

size_t batches_len(const batches *b)
{
    return b->open.len;
}

mbatch *batches_at(const batches *b, size_t i)
{
    return ring_at(&b->open, i);
}

mbatch *batches_find(batches *b, uint64_t no)
{
    /* The batch being read: a pipe's items go out before it is full. */
    if (b->bld.n && no == b->bld.no)
        return &b->bld;
    if (b->open.len == 0)
        return NULL;
    uint64_t base = batches_at(b, 0)->no;
    if (no < base || no - base >= b->open.len)
        return NULL;
    mbatch *mb = batches_at(b, (size_t)(no - base));
    return mb->no == no ? mb : NULL;
}

mitem *batches_item(batches *b, proto_ref ref)
{
    mbatch *mb = batches_find(b, ref.batch);
    if (!mb || ref.idx >= mb->n)
        return NULL;
    return &mb->items[ref.idx];
}

int batches_head_complete(const batches *b)
{
    if (b->open.len == 0)
        return 0;
    const mbatch *mb = batches_at(b, 0);
    return mb->done == mb->n;
}

void batches_pop_head(batches *b)
{
    batch_free(b, batches_at(b, 0));
    ring_pop(&b->open);
}

int batches_empty(const batches *b)
{
    return b->open.len == 0 && b->bld.n == 0;
}

void batches_idem_key(const batches *b, const mitem *it,
                      char out[BATCHES_IDEM_BYTES])
{
    char h[17];
    const char *k = it->msg_id ? it->msg_id : it->key;
    util_hash_hex(
        k, strlen(k),
        b->idem_seed ^ ((uint64_t)it->line_no * 0x9E3779B97F4A7C15ULL), h);
    snprintf(out, BATCHES_IDEM_BYTES, "fo-%016" PRIx64 "-%s", b->idem_seed, h);
}

mitem *batches_append(batches *b, int64_t line_no, proto_ref *ref)
{
    mbatch *mb = &b->bld;
    if (mb->n == b->bld_cap) {
        b->bld_cap = b->bld_cap ? b->bld_cap * 2 : 16;
        mb->items = xrealloc(mb->items, b->bld_cap * sizeof *mb->items);
    }
    uint32_t idx = mb->n++;
    mitem *it = &mb->items[idx];
    memset(it, 0, sizeof *it);
    it->holder = -1;
    it->prev_holder = -1;
    it->line_no = line_no;
    *ref = (proto_ref){mb->no, idx};
    return it;
}

void batches_index(batches *b, const char *idem, proto_ref ref)
{
    hmap_put(&b->open_ids, idem, strlen(idem), &ref);
}

const proto_ref *batches_lookup(const batches *b, const char *idem)
{
    return hmap_get(&b->open_ids, idem, strlen(idem));
}

mbatch *batches_close(batches *b, uint32_t *queued_from)
{
    if (b->bld.n == 0)
        return NULL;
    *(mbatch *)ring_push(&b->open) = b->bld;
    mbatch *rb = batches_at(b, b->open.len - 1);
    *queued_from = b->bld_queued;
    b->bld_queued = 0;
    memset(&b->bld, 0, sizeof b->bld);
    b->bld_cap = 0;
    b->bld.no = rb->no + 1;
    return rb;
}

void batches_enqueue(batches *b, const mbatch *mb, uint32_t from)
{
    for (uint32_t i = from; i < mb->n; i++)
        if (mb->items[i].state == MI_PENDING)
            *(proto_ref *)ring_push(&b->dq) = (proto_ref){mb->no, i};
}

void batches_enqueue_building(batches *b)
{
    batches_enqueue(b, &b->bld, b->bld_queued);
    b->bld_queued = b->bld.n;
}

int batches_requeue(batches *b, proto_ref ref)
{
    mitem *it = batches_item(b, ref);
    if (!it || it->state != MI_SENT)
        return 0;
    it->state = MI_PENDING;
    if (it->holder >= 0) {
        it->prev_holder = it->holder;
        it->prev_gen = it->holder_gen;
    }
    it->holder = -1;
    it->claimed = 0;
    b->n_redispatch++;
    *(proto_ref *)ring_push(&b->dq) = ref;
    return 1;
}

size_t batches_item_bytes(const mitem *it)
{
    return it->url ? strlen(it->url) + it->body_len : 0;
}

void batches_release(mitem *it)
{
    FO_FREE(&it->url);
    FO_FREE(&it->body);
    FO_FREE(&it->rkey);
}
