/* wtokens.c - the worker's token ledger; see wtokens.h. */
#include "fmacros.h"
#include "wtokens.h"

#include <string.h>

void wtokens_init(wtokens *t)
{
    memset(t, 0, sizeof *t);
    ring_init(&t->due, sizeof(int64_t));
}

void wtokens_fini(wtokens *t)
{
    ring_fini(&t->due);
}

void wtokens_reset(wtokens *t)
{
    ring_clear(&t->due);
    t->seen = 0;
    t->released = 0;
    t->last_want = 0;
    t->last_seen = 0;
    t->ndelay = 0;
    t->account++;
}

uint32_t wtokens_account(const wtokens *t)
{
    return t->account;
}

int64_t wtokens_lateness_ns(wtokens *t, uint64_t sent_wall_us,
                            int64_t now_wall_us)
{
    if (!sent_wall_us)
        return 0;
    int64_t d = now_wall_us - (int64_t)sent_wall_us;
    t->delay_us[t->ndelay++ % WTOKENS_DELAY_SAMPLES] = d;
    size_t n =
        t->ndelay < WTOKENS_DELAY_SAMPLES ? t->ndelay : WTOKENS_DELAY_SAMPLES;
    int64_t min = d;
    for (size_t i = 0; i < n; i++)
        if (t->delay_us[i] < min)
            min = t->delay_us[i];
    return (d - min) * 1000;
}

void wtokens_grant(wtokens *t, int64_t anchor_ns, const uint32_t *offset_us,
                   uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        *(int64_t *)ring_push(&t->due) =
            anchor_ns + (int64_t)offset_us[i] * 1000;
    t->seen += n;
}

size_t wtokens_held(const wtokens *t)
{
    return t->due.len;
}

int64_t wtokens_next_due(const wtokens *t)
{
    return t->due.len ? *(int64_t *)ring_at(&t->due, 0) : INT64_MAX;
}

wtokens_action wtokens_next(wtokens *t, int64_t now, int64_t slack_ns,
                            int can_start)
{
    int64_t due = wtokens_next_due(t);
    if (due > now)
        return WTOKENS_NONE;
    ring_pop(&t->due);
    int late = now - due > slack_ns;
    if (!late && can_start)
        return WTOKENS_SPEND;
    /* Never saved up: a late token would make a burst. */
    t->released++;
    t->n_dropped++;
    return WTOKENS_DROP;
}

void wtokens_drop_all(wtokens *t)
{
    t->released += (uint32_t)t->due.len;
    t->n_dropped += t->due.len;
    ring_clear(&t->due);
}

void wtokens_release(wtokens *t, uint32_t n)
{
    t->released += n;
}

int wtokens_request(wtokens *t, int64_t free_slots, size_t nready,
                    wtokens_req *req)
{
    int64_t need = free_slots < (int64_t)nready ? free_slots : (int64_t)nready;
    int64_t want = need - (int64_t)t->due.len;
    if (want < 0)
        want = 0;
    /* What the master still expects to grant: our last want, less what it
     * has granted since. */
    int64_t expected = t->last_want - (int64_t)(t->seen - t->last_seen);
    if (want == expected && t->released == 0)
        return 0;
    req->want = (uint32_t)want;
    req->seen = t->seen;
    req->released = t->released;
    t->released = 0;
    t->last_want = want;
    t->last_seen = t->seen;
    return 1;
}
