/* record.c - results.jsonl lines; see record.h. */
#include "fmacros.h"
#include "record.h"
#include "jsonw.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "2026-12-05T10:00:01.433Z" for a wall clock time in microseconds. */
static void rfc3339_ms(int64_t us, char *out, size_t cap)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", ts, (int)(us / 1000 % 1000));
}

/* The response as the record holds it: compact JSON copied as it is; other
 * JSON parsed and written compactly; other UTF-8 text as a string; else
 * only its size. */
static void put_response(jsonw *w, const char *resp, size_t n)
{
    size_t at, len;
    if (jsonw_copyable(resp, n, &at, &len)) {
        jsonw_key(w, "response", 0);
        jsonw_raw(w, resp + at, len);
        return;
    }
    json_t *v = json_loadb(resp, n, JSON_DECODE_ANY, NULL);
    if (v) {
        char *t =
            json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        json_decref(v);
        if (t) {
            jsonw_key(w, "response", 0);
            jsonw_lit(w, t);
            free(t);
            return;
        }
    }
    /* jansson refuses NUL in strings; so does this, for the same output. */
    if (jsonw_utf8_valid(resp, n) && !memchr(resp, 0, n)) {
        jsonw_key(w, "response", 0);
        jsonw_str(w, resp, n);
        return;
    }
    jsonw_key(w, "response_bytes", 0);
    jsonw_int(w, (long long)n);
}

static void put_str(jsonw *w, const char *key, const char *v)
{
    jsonw_key(w, key, 0);
    jsonw_str(w, v, strlen(v));
}

/* Written by hand in jansson's compact form and key order: this runs once
 * per item, and a tree per record cost more than the rest of it. */
char *record_format(const record *r, size_t *len)
{
    jsonw w = {0};
    jsonw_key(&w, "id", 1);
    jsonw_str(&w, r->id, strlen(r->id));
    put_str(&w, "status", item_status_name(r->status));
    if (r->http_status) {
        jsonw_key(&w, "http_status", 0);
        jsonw_int(&w, r->http_status);
    }
    jsonw_key(&w, "attempts", 0);
    jsonw_int(&w, r->attempts);
    if (r->throttled) {
        jsonw_key(&w, "throttled", 0);
        jsonw_int(&w, r->throttled);
    }
    jsonw_key(&w, "batch", 0);
    jsonw_int(&w, (long long)r->batch);
    if (r->msg_id)
        put_str(&w, "message_id", r->msg_id);
    else {
        jsonw_key(&w, "line", 0);
        jsonw_int(&w, r->line);
    }
    if (r->latency_ms >= 0) {
        jsonw_key(&w, "latency_ms", 0);
        jsonw_int(&w, r->latency_ms);
    }
    if (r->started_us) {
        char t[40];
        rfc3339_ms((int64_t)r->started_us, t, sizeof t);
        put_str(&w, "started_at", t);
    }
    if (r->finished_us) {
        char t[40];
        rfc3339_ms((int64_t)r->finished_us, t, sizeof t);
        put_str(&w, "finished_at", t);
    }
    if (r->error)
        put_str(&w, "error", r->error);
    if (r->response && r->response_len)
        put_response(&w, r->response, r->response_len);
    else if (r->dropped_len) {
        jsonw_key(&w, "response_bytes", 0);
        jsonw_int(&w, (long long)r->dropped_len);
    }
    if (r->worker)
        put_str(&w, "worker", r->worker);
    jsonw_raw(&w, "}\n", 2);
    if (len)
        *len = w.len;
    return w.p;
}

char *record_json_line(const json_t *o, size_t flags, size_t *len)
{
    char *s = json_dumps(o, flags);
    size_t n = strlen(s);
    s = xrealloc(s, n + 2);
    s[n] = '\n';
    s[n + 1] = '\0';
    if (len)
        *len = n + 1;
    return s;
}
