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

/* --allow-env: the names a header may expand (owned). */
static char **allowed_env;
static size_t nallowed_env;

void job_allow_env(char *const *names, size_t n)
{
    for (size_t i = 0; i < nallowed_env; i++)
        free(allowed_env[i]);
    FO_FREE(&allowed_env);
    nallowed_env = 0;
    if (!n)
        return;
    allowed_env = xcalloc(n, sizeof *allowed_env);
    for (size_t i = 0; i < n; i++)
        allowed_env[i] = xstrdup(names[i]);
    nallowed_env = n;
}

static int env_allowed(const char *name, size_t len)
{
    for (size_t i = 0; i < nallowed_env; i++)
        if (strlen(allowed_env[i]) == len && !memcmp(allowed_env[i], name, len))
            return 1;
    return 0;
}

/* Checks every ${NAME} in the headers against --allow-env before anything
 * is expanded. Returns 0, or -1 with err naming each refused variable once,
 * in order of appearance, and the flags that would allow them. */
static int check_env_allowed(json_t *hs, char *err, size_t errlen)
{
    fo_buf names, flags;
    buf_init(&names, 16384);
    buf_init(&flags, 16384);
    size_t i, nrefused = 0;
    json_t *h;
    json_array_foreach(hs, i, h)
    {
        if (!json_is_string(h))
            continue;
        const char *src = json_string_value(h), *name;
        size_t pos = 0, len;
        while (template_env_next(src, &pos, &name, &len)) {
            if (env_allowed(name, len))
                continue;
            /* Seen before, in this header or an earlier one? */
            char ref[300];
            snprintf(ref, sizeof ref, "${%.*s}", (int)(len < 256 ? len : 256),
                     name);
            const char *seen = names.len ? strstr(buf_str(&names), ref) : NULL;
            size_t rl = strlen(ref);
            if (seen && (seen[rl] == ',' || seen[rl] == '\0'))
                continue;
            int full = buf_printf(&names, "%s%s", nrefused ? ", " : "", ref) ||
                       buf_printf(&flags, " --allow-env %.*s",
                                  (int)(len < 256 ? len : 256), name);
            nrefused++;
            if (full)
                break;
        }
    }
    if (nrefused)
        snprintf(err, errlen,
                 "the job asks for %s, which this worker does not allow; "
                 "start it with%s",
                 buf_str(&names), buf_str(&flags));
    buf_fini(&names);
    buf_fini(&flags);
    return nrefused ? -1 : 0;
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
    if (check_env_allowed(hs, err, errlen)) {
        rc = FO_EDENIED;
        goto out;
    }
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
