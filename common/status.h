/*
 * status.h - an item's final status: one enum for every layer.
 *
 * The master's commit buffer, the state store's rows, results.jsonl and the
 * RESULT message all speak of the same outcomes (RESULT only of the first
 * two; cancelled is the master's own). The numbers are
 * stored in state.db and sent on the wire (RESULT's status field), so they
 * never change; the names are what results.jsonl and summary.json show.
 */
#ifndef FANOUT_STATUS_H
#define FANOUT_STATUS_H

typedef enum {
    ITEM_OK = 0,        /* the call succeeded */
    ITEM_FAILED = 1,    /* non-retryable, or attempts exhausted */
    ITEM_INVALID = 2,   /* the input line is not a usable item */
    ITEM_CANCELLED = 3, /* not called: fanout-ctl cancel */
} item_status;

/* "ok", "failed", "invalid" or "cancelled"; "?" for a value outside the
 * enum. */
static inline const char *item_status_name(item_status s)
{
    switch (s) {
    case ITEM_OK:
        return "ok";
    case ITEM_FAILED:
        return "failed";
    case ITEM_INVALID:
        return "invalid";
    case ITEM_CANCELLED:
        return "cancelled";
    }
    return "?";
}

#endif
