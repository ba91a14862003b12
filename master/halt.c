/* halt.c - stopping a job that cannot succeed; see halt.h. */
#include "fmacros.h"
#include "halt.h"

#include <inttypes.h>
#include <stdio.h>

int halt_due(const halt_cfg *h, const store_totals *t, uint64_t fail_run,
             uint32_t fail_status, char *why, size_t cap)
{
    int64_t done = t->ok + t->failed;
    if (h->after_n > 0 && t->failed >= h->after_n) {
        snprintf(why, cap,
                 "%" PRId64 " items failed (--halt-after %" PRId64 ")",
                 t->failed, h->after_n);
        return 1;
    }
    if (h->after_pct > 0 && done >= HALT_MIN_RECORDED &&
        t->failed * 100 >= h->after_pct * done) {
        snprintf(why, cap,
                 "%" PRId64 " of %" PRId64 " recorded items failed "
                 "(--halt-after %" PRId64 "%%)",
                 t->failed, done, h->after_pct);
        return 1;
    }
    if (h->on_repeat > 0 && fail_run >= (uint64_t)h->on_repeat) {
        if (fail_status)
            snprintf(why, cap,
                     "%" PRIu64 " items in a row failed with HTTP %u "
                     "(--halt-on-repeat %" PRId64 ")",
                     fail_run, fail_status, h->on_repeat);
        else
            snprintf(why, cap,
                     "%" PRIu64 " items in a row failed without an answer "
                     "from the API (--halt-on-repeat %" PRId64 ")",
                     fail_run, h->on_repeat);
        return 1;
    }
    return 0;
}
