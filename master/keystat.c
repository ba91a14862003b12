/*
 * keystat.c - per-key figures and the live key rate; see keystat.h.
 */
#include "fmacros.h"
#include "keystat.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys are any bytes an item held: show them as printable ASCII. */
static void printable(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            *p = '?';
}

/* The limits as "5/s, 100/min", or "none". */
static void rates_text(const keysched *ks, char *out, size_t cap)
{
    gcra_rate r[KEYSCHED_MAX_LIMITS];
    size_t n = keysched_rates(ks, r, KEYSCHED_MAX_LIMITS);
    snprintf(out, cap, "%s", n ? "" : "none");
    for (size_t i = 0; i < n; i++) {
        char one[64];
        gcra_format_rate(r[i], one, sizeof one);
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", i ? ", " : "", one);
    }
}

void keystat_status(const dispatcher *d, json_t *status, int64_t now)
{
    if (!d || !d->ks)
        return;
    const keysched *ks = d->ks;
    char rates[512];
    rates_text(ks, rates, sizeof rates);
    json_t *j = json_object();
    json_object_set_new(j, "rate", json_string(rates));
    json_object_set_new(j, "active",
                        json_integer((json_int_t)keysched_active(ks)));
    json_object_set_new(j, "waiting",
                        json_integer((json_int_t)keysched_waiting(ks)));
    json_object_set_new(j, "in_flight",
                        json_integer((json_int_t)keysched_inflight(ks)));
    json_object_set_new(j, "throttled",
                        json_integer((json_int_t)keysched_throttled_total(ks)));
    json_object_set_new(j, "retries", json_integer((json_int_t)d->n_retries));
    keysched_stat top[KEYSCHED_TOP_MAX];
    size_t n = keysched_top(ks, now, top, KEYSCHED_TOP_MAX);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        printable(top[i].key);
        json_array_append_new(
            arr, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "key", top[i].key,
                           "waiting", (json_int_t)top[i].waiting, "in_flight",
                           (json_int_t)top[i].inflight, "calls",
                           (json_int_t)top[i].calls, "throttled",
                           (json_int_t)top[i].throttled, "paused_ms",
                           (json_int_t)top[i].paused_ms));
    }
    json_object_set_new(j, "top", arr);
    json_object_set_new(status, "keys", j);
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

int keystat_metrics(const dispatcher *d, fo_buf *b, int64_t now)
{
    if (!d || !d->ks)
        return 0;
    const keysched *ks = d->ks;
    if (buf_printf(b,
                   "# HELP fanout_keys_active Keys (--rate-key) with items "
                   "waiting or in flight, or a bucket still refilling.\n"
                   "# TYPE fanout_keys_active gauge\nfanout_keys_active %zu\n"
                   "# HELP fanout_keys_waiting Items waiting for their key's "
                   "limit.\n# TYPE fanout_keys_waiting gauge\n"
                   "fanout_keys_waiting %" PRIu64 "\n"
                   "# HELP fanout_key_throttled_total 429s that paused one "
                   "key.\n# TYPE fanout_key_throttled_total counter\n"
                   "fanout_key_throttled_total %" PRIu64 "\n"
                   "# HELP fanout_key_retries_total Attempts re-queued under "
                   "their key.\n# TYPE fanout_key_retries_total counter\n"
                   "fanout_key_retries_total %" PRIu64 "\n",
                   keysched_active(ks), keysched_waiting(ks),
                   keysched_throttled_total(ks), d->n_retries))
        return -1;
    keysched_stat top[KEYSCHED_TOP_MAX];
    size_t n = keysched_top(ks, now, top, KEYSCHED_TOP_MAX);
    if (buf_printf(b, "# HELP fanout_key_top_waiting Items waiting, for the "
                      "top keys only (at most 10 series).\n"
                      "# TYPE fanout_key_top_waiting gauge\n"))
        return -1;
    for (size_t i = 0; i < n; i++) {
        char l[KEYSCHED_SHOWN_BYTES * 2];
        printable(top[i].key);
        label(top[i].key, l, sizeof l);
        if (buf_printf(b, "fanout_key_top_waiting{key=\"%s\"} %" PRIu64 "\n", l,
                       top[i].waiting + top[i].inflight))
            return -1;
    }
    return 0;
}

/* Parses a list of N/UNIT (or "none") into r; returns the count or -1. */
static int parse_list(json_t *v, gcra_rate *r, char *err, size_t errlen)
{
    if (json_is_string(v) && !strcmp(json_string_value(v), "none"))
        return 0;
    if (!json_is_array(v) || json_array_size(v) > KEYSCHED_MAX_LIMITS) {
        snprintf(err, errlen, "--key-rate: expected at most %d of N/UNIT",
                 KEYSCHED_MAX_LIMITS);
        return -1;
    }
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        char e[256];
        if (!json_is_string(x) ||
            gcra_parse_rate(json_string_value(x), &r[i], e, sizeof e)) {
            snprintf(err, errlen, "--key-rate: %s",
                     json_is_string(x) ? e : "not a string");
            return -1;
        }
    }
    return (int)json_array_size(v);
}

int keystat_set_rate(dispatcher *d, store *st, json_t *key_rate,
                     int64_t margin_ns, char *err, size_t errlen)
{
    if (!d || !d->ks) {
        snprintf(err, errlen,
                 "--key-rate: this job has no per-key limits (start it "
                 "with --rate-key)");
        return -1;
    }
    gcra_rate r[KEYSCHED_MAX_LIMITS];
    int n = parse_list(key_rate, r, err, errlen);
    if (n < 0 || keysched_set_rates(d->ks, r, (size_t)n, margin_ns) != FO_OK) {
        if (n >= 0)
            snprintf(err, errlen, "--key-rate: out of range");
        return -1;
    }
    char text[512];
    rates_text(d->ks, text, sizeof text);
    if (st && store_set_setting(st, "key_rate", text))
        LOG_ERROR("store.setting_failed", "could not store the key rate");
    LOG_INFO("ctl.key_rate", "per-key rate set to %s by fanout-ctl", text);
    return 0;
}

int keystat_restore(dispatcher *d, store *st, int64_t margin_ns)
{
    if (!d->ks)
        return 0;
    char *v = store_get_setting(st, "key_rate");
    if (!v)
        return 0;
    gcra_rate r[KEYSCHED_MAX_LIMITS];
    size_t n = 0;
    char e[256];
    int ok = 1;
    if (strcmp(v, "none") != 0) {
        char *save = NULL;
        for (char *tok = strtok_r(v, ",", &save); tok && ok;
             tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            ok = n < KEYSCHED_MAX_LIMITS &&
                 gcra_parse_rate(tok, &r[n++], e, sizeof e) == FO_OK;
        }
    }
    if (ok && keysched_set_rates(d->ks, r, n, margin_ns) == FO_OK)
        LOG_INFO("ctl.key_rate", "per-key rate set by fanout-ctl earlier: "
                                 "keeping it");
    free(v);
    return ok;
}
