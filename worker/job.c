/* job.c - parsing the master's JOB; see job.h. */
#include "fmacros.h"
#include "job.h"
#include "buf.h"
#include "clock.h"
#include "proto.h"
#include "template.h"
#include "util.h"

#include <jansson.h>

void job_fini(job *j)
{
    free(j->method);
    for (size_t i = 0; i < j->nheaders; i++)
        free(j->headers[i]);
    free(j->headers);
    transform_fini(&j->xf);
    memset(j, 0, sizeof *j);
}

static int64_t jint(json_t *o, const char *k, int64_t def)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

/* The JOB frame is capped (PROTO_MAX_CONTROL_BYTES), which bounds the
 * number of headers; no cap of its own is needed. */
static void add_header(job *j, char *line)
{
    j->headers = xrealloc(j->headers, (j->nheaders + 1) * sizeof *j->headers);
    j->headers[j->nheaders++] = line;
}

fo_err job_parse(const char *text, job *j, char *err, size_t errlen)
{
    memset(j, 0, sizeof *j);
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    if (!json_is_object(o)) {
        snprintf(err, errlen, "JOB is not a JSON object: %s", jerr.text);
        json_decref(o);
        return FO_EPROTO;
    }
    json_t *m = json_object_get(o, "method");
    j->method = xstrdup(json_is_string(m) ? json_string_value(m) : "GET");
    j->timeout_ms = (long)jint(o, "timeout_ms", 30000);
    j->connect_timeout_ms = (long)jint(o, "connect_timeout_ms", 10000);
    j->retry.max_attempts = (uint32_t)jint(o, "max_attempts", 5);
    j->retry.max_throttled = (uint32_t)jint(o, "max_throttled", 50);
    j->retry.backoff_base_ms = jint(o, "backoff_base_ms", 500);
    j->retry.backoff_max_ms = jint(o, "backoff_max_ms", 30000);
    j->max_response = (size_t)jint(o, "max_response_bytes", 1 << 20);
    if (j->max_response > PROTO_MAX_BODY_BYTES)
        j->max_response = PROTO_MAX_BODY_BYTES;
    j->heartbeat_ns = jint(o, "heartbeat_ms", 1000) * FO_NS_PER_MS;
    j->lease_ns = jint(o, "lease_ms", 5000) * FO_NS_PER_MS;
    j->rate_limited = (int)jint(o, "rate_limited", 1);
    j->slack_ns = jint(o, "token_slack_ms", 5) * FO_NS_PER_MS;
    fo_err rc = FO_OK;
    if (j->retry.max_attempts < 1) {
        snprintf(err, errlen, "JOB has a bad retry policy");
        rc = FO_EPROTO;
        goto out;
    }
    if ((rc = transform_from_job(o, &j->xf, err, errlen)) != FO_OK)
        goto out;
    j->retry.retry_rejected = j->xf.check_retry;
    json_t *hs = json_object_get(o, "headers");
    size_t i;
    json_t *h;
    json_array_foreach(hs, i, h)
    {
        if (!json_is_string(h))
            continue;
        fo_buf b;
        buf_init(&b, 65536);
        char terr[256];
        if (template_expand_env(json_string_value(h), &b, terr, sizeof terr)) {
            /* Name the header but never print its value: it may be a
             * secret. */
            const char *colon = strchr(json_string_value(h), ':');
            int nl = colon ? (int)(colon - json_string_value(h)) : 0;
            snprintf(err, errlen, "--header '%.*s': %s", nl,
                     json_string_value(h), terr);
            buf_fini(&b);
            rc = FO_EINVAL;
            goto out;
        }
        add_header(j, xstrdup(buf_str(&b)));
        buf_fini(&b);
    }
    /* No "Expect: 100-continue" round trip before large bodies. */
    add_header(j, xstrdup("Expect:"));
out:
    json_decref(o);
    if (rc)
        job_fini(j);
    return rc;
}
