/* record.c - results.jsonl lines; see record.h. */
#include "fmacros.h"
#include "record.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
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

char *record_format(const record *r, size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "status", json_string(item_status_name(r->status)));
    if (r->http_status)
        json_object_set_new(o, "http_status", json_integer(r->http_status));
    json_object_set_new(o, "attempts", json_integer(r->attempts));
    if (r->throttled)
        json_object_set_new(o, "throttled", json_integer(r->throttled));
    json_object_set_new(o, "batch", json_integer((json_int_t)r->batch));
    if (r->msg_id)
        json_object_set_new(o, "message_id", json_string(r->msg_id));
    else
        json_object_set_new(o, "line", json_integer(r->line));
    if (r->latency_ms >= 0)
        json_object_set_new(o, "latency_ms", json_integer(r->latency_ms));
    if (r->started_us) {
        char t[40];
        rfc3339_ms((int64_t)r->started_us, t, sizeof t);
        json_object_set_new(o, "started_at", json_string(t));
    }
    if (r->finished_us) {
        char t[40];
        rfc3339_ms((int64_t)r->finished_us, t, sizeof t);
        json_object_set_new(o, "finished_at", json_string(t));
    }
    if (r->error)
        json_object_set_new(o, "error", json_string(r->error));
    if (r->response && r->response_len) {
        json_t *resp =
            json_loadb(r->response, r->response_len, JSON_DECODE_ANY, NULL);
        if (!resp)
            resp = json_stringn(r->response, r->response_len);
        if (resp)
            json_object_set_new(o, "response", resp);
        else
            json_object_set_new(o, "response_bytes",
                                json_integer((json_int_t)r->response_len));
    } else if (r->dropped_len) {
        json_object_set_new(o, "response_bytes",
                            json_integer((json_int_t)r->dropped_len));
    }
    if (r->worker)
        json_object_set_new(o, "worker", json_string(r->worker));
    char *s = record_json_line(o, JSON_COMPACT | JSON_PRESERVE_ORDER, len);
    json_decref(o);
    return s;
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
