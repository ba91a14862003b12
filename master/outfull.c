/* outfull.c - riding out a full --out disk; see outfull.h. */
#include "fmacros.h"
#include "outfull.h"

#include <errno.h>

int outfull_errno_is_full(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

int outfull_failed(outfull *f, int64_t now)
{
    f->failures++;
    int begins = !f->active;
    if (begins) {
        f->active = 1;
        f->since_ns = now;
        f->delay_ns = OUTFULL_FIRST_NS;
        f->episodes++;
    } else {
        f->delay_ns *= 2;
        if (f->delay_ns > OUTFULL_MAX_NS)
            f->delay_ns = OUTFULL_MAX_NS;
    }
    f->next_try_ns = now + f->delay_ns;
    return begins;
}

int outfull_ok(outfull *f, int64_t now)
{
    if (!f->active)
        return 0;
    f->active = 0;
    f->stalled_ns += now - f->since_ns;
    f->next_try_ns = now; /* outfull_episode_ns() reads it */
    return 1;
}

int outfull_may_try(const outfull *f, int64_t now)
{
    return !f->active || now >= f->next_try_ns;
}

int64_t outfull_episode_ns(const outfull *f, int64_t now)
{
    return (f->active ? now : f->next_try_ns) - f->since_ns;
}
