/*
 * halt.h - when a job that cannot succeed should stop: --halt-after N|P%
 * and --halt-on-repeat N.
 *
 * A pure decision over the committed totals and the latest run of
 * failures with one HTTP status (fanin keeps it); the master stops as on
 * SIGTERM when it says so. No clock, no state of its own.
 */
#ifndef FANOUT_HALT_H
#define FANOUT_HALT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct halt_cfg {
    int64_t after_n;   /* stop at this many failed items, 0 off */
    int64_t after_pct; /* or this % of at least 50 recorded, 0 off */
    int64_t on_repeat; /* or this many failing in a row alike, 0 off */
} halt_cfg;

/* Recorded items before --halt-after P% may act. */
#define HALT_MIN_RECORDED 50

/* 1 when the job should stop, with the reason in why; else 0. fail_run
 * items in a row failed with HTTP fail_status (0: no answer). */
int halt_due(const halt_cfg *h, const store_totals *t, uint64_t fail_run,
             uint32_t fail_status, char *why, size_t cap);

#endif
