/* transform.c - --keep, --drop-response and --ok-when; see transform.h. */
#include "fmacros.h"
#include "transform.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void transform_fini(transform *t)
{
    for (size_t i = 0; i < t->nkeep; i++)
        jpath_fini(&t->keep[i]);
    free(t->keep);
    jpath_cond_fini(&t->check);
    memset(t, 0, sizeof *t);
}

fo_err transform_from_job(const json_t *job, transform *t, char *err,
                          size_t errlen)
{
    memset(t, 0, sizeof *t);
    char perr[400];
    json_t *keep = json_object_get(job, "keep");
    if (keep && !json_is_array(keep)) {
        snprintf(err, errlen, "JOB: keep is not an array");
        return FO_EPROTO;
    }
    if (json_array_size(keep) > JPATH_MAX_KEEP) {
        snprintf(err, errlen, "JOB: more than %d keep paths", JPATH_MAX_KEEP);
        return FO_EPROTO;
    }
    size_t n = json_array_size(keep);
    if (n)
        t->keep = xcalloc(n, sizeof *t->keep);
    for (size_t i = 0; i < n; i++) {
        const char *p = json_string_value(json_array_get(keep, i));
        if (!p || jpath_parse(p, &t->keep[i], perr, sizeof perr)) {
            snprintf(err, errlen, "JOB: keep[%zu]: %s", i,
                     p ? perr : "not a string");
            transform_fini(t);
            return FO_EPROTO;
        }
        t->nkeep++;
    }
    t->drop = json_is_true(json_object_get(job, "drop_response")) ||
              json_integer_value(json_object_get(job, "drop_response")) != 0;
    json_t *ok = json_object_get(job, "ok_when");
    if (json_is_string(ok)) {
        if (jpath_cond_parse(json_string_value(ok), &t->check, perr,
                             sizeof perr)) {
            snprintf(err, errlen, "JOB: ok_when: %s", perr);
            transform_fini(t);
            return FO_EPROTO;
        }
        t->has_check = 1;
    }
    t->check_retry = json_is_true(json_object_get(job, "ok_when_retry")) ||
                     json_integer_value(json_object_get(job, "ok_when_retry"));
    return FO_OK;
}

/* Says what the check saw, for the item's error. */
static void explain(const transform *t, json_t *doc, transform_result *r)
{
    json_t *v = doc ? jpath_get(&t->check.path, doc) : NULL;
    char seen[120];
    if (!doc) {
        snprintf(seen, sizeof seen, "the response is not JSON");
    } else if (!v) {
        snprintf(seen, sizeof seen, "%.60s is missing", t->check.path.text);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(seen, sizeof seen, "%.40s is %.60s%s", t->check.path.text,
                 s ? s : "?", s && strlen(s) > 60 ? "..." : "");
        free(s);
    }
    snprintf(r->why, sizeof r->why, "response fails --ok-when '%.120s' (%s)",
             t->check.text, seen);
}

void transform_apply(const transform *t, const char *body, size_t len,
                     int check, size_t cap, transform_result *r)
{
    memset(r, 0, sizeof *r);
    r->passed = 1;
    r->body = len ? body : NULL;
    r->body_len = len ? len : 0;
    int checking = check && t->has_check;
    if (!checking && !t->nkeep && !t->drop)
        return;
    json_t *doc = NULL;
    if (len && (checking || (t->nkeep && !t->drop)))
        doc = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (checking && !jpath_cond_eval(&t->check, doc)) {
        r->passed = 0;
        explain(t, doc, r);
    }
    if (t->drop || (t->nkeep && !doc)) {
        /* --drop-response stores nothing; --keep of a response that is
         * not JSON stores its size. */
        r->dropped_bytes = t->drop ? 0 : len;
        r->body = NULL;
        r->body_len = 0;
    } else if (t->nkeep) {
        json_t *o = json_object();
        for (size_t i = 0; i < t->nkeep; i++) {
            json_t *v = jpath_get(&t->keep[i], doc);
            if (v)
                json_object_set(o, t->keep[i].text, v);
        }
        r->owned = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        r->body = r->owned;
        r->body_len = r->owned ? strlen(r->owned) : 0;
        if (r->body_len > cap) {
            r->dropped_bytes = r->body_len;
            transform_result_fini(r);
        }
    }
    json_decref(doc);
}

void transform_result_fini(transform_result *r)
{
    FO_FREE(&r->owned);
    r->body = NULL;
    r->body_len = 0;
}
