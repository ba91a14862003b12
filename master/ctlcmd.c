/*
 * ctlcmd.c - operators' commands; see ctlcmd.h.
 */
#include "fmacros.h"
#include "ctlcmd.h"
#include "clock.h"
#include "keystat.h"
#include "log.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses "rate": a list of N/UNIT or "none". Returns 0 with *n, or -1. */
static int parse_rates(json_t *rate, gcra_rate *rates, size_t *n, char *err,
                       size_t errlen)
{
    *n = 0;
    if (json_is_string(rate) && !strcmp(json_string_value(rate), "none"))
        return 0;
    if (!json_is_array(rate)) {
        snprintf(err, errlen, "rate: expected a list of N/UNIT");
        return -1;
    }
    size_t i;
    json_t *r;
    json_array_foreach(rate, i, r)
    {
        char e[256];
        if (*n == GCRA_MAX_LIMITS || !json_is_string(r) ||
            gcra_parse_rate(json_string_value(r), &rates[*n], e, sizeof e)) {
            snprintf(err, errlen, "--rate: %s",
                     *n == GCRA_MAX_LIMITS ? "too many limits"
                     : json_is_string(r)   ? e
                                           : "not a string");
            return -1;
        }
        (*n)++;
    }
    return 0;
}

static int cmd_set(ctlcmd *c, json_t *req, char *err, size_t errlen)
{
    json_t *rate = json_object_get(req, "rate");
    json_t *mif = json_object_get(req, "max_in_flight");
    json_t *krate = json_object_get(req, "key_rate");
    gcra_rate rates[GCRA_MAX_LIMITS];
    size_t n = 0;
    if (rate && parse_rates(rate, rates, &n, err, errlen))
        return -1;
    /* First: when it fails (no --rate-key, a bad rate) nothing changed. */
    if (krate && keystat_set_rate(c->obs->dp, c->st, krate,
                                  c->rc->margin_ms * FO_NS_PER_MS, err, errlen))
        return -1;
    if (mif && (!json_is_integer(mif) || json_integer_value(mif) < 0 ||
                json_integer_value(mif) > 1000000)) {
        snprintf(err, errlen, "--max-in-flight: expected 0 to 1000000");
        return -1;
    }
    if (rate) {
        /* A new configured ceiling: adaptive state starts over. */
        if (ratectl_set_limits(c->rc, rates, n, 1, err, errlen))
            return -1;
        const char *text = c->rc->limit_text[0] ? c->rc->limit_text : "none";
        if (store_set_setting(c->st, "rate", text))
            LOG_ERROR("store.setting_failed", "could not store the rate");
        LOG_INFO("ctl.rate", "rate set to %s by fanout-ctl", text);
    }
    if (mif) {
        budget_set_max_in_flight(c->bud, json_integer_value(mif));
        char v[32];
        snprintf(v, sizeof v, "%" JSON_INTEGER_FORMAT, json_integer_value(mif));
        if (store_set_setting(c->st, "max_in_flight", v))
            LOG_ERROR("store.setting_failed", "could not store max-in-flight");
        LOG_INFO("ctl.max_in_flight", "max-in-flight set to %s by fanout-ctl",
                 v);
    }
    return 0;
}

static int cmd_pause(ctlcmd *c, int on)
{
    if (budget_held(c->bud) == on)
        return 0;
    budget_hold(c->bud, on);
    if (store_set_setting(c->st, "paused", on ? "1" : "0"))
        LOG_ERROR("store.setting_failed", "could not store the pause");
    LOG_INFO(on ? "ctl.pause" : "ctl.resume",
             on ? "paused by fanout-ctl: no new calls until fanout-ctl resume"
                : "resumed by fanout-ctl");
    return 0;
}

int ctlcmd_restore(ctlcmd *c)
{
    char *v = store_get_setting(c->st, "paused");
    int on = v && !strcmp(v, "1");
    free(v);
    if (on) {
        budget_hold(c->bud, 1);
        LOG_WARN("ctl.pause", "the job was paused by fanout-ctl and stays "
                              "paused: run fanout-ctl resume to go on");
    }
    return on;
}

static int cmd_drain(ctlcmd *c, json_t *req, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(req, "worker"));
    if (!name || !*name) {
        snprintf(err, errlen,
                 "drain: which worker? (its id, as status "
                 "lists it)");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < budget_capacity(c->bud); i++) {
        budget_worker *w = budget_at(c->bud, i);
        if (!w->used || w->leaving || strcmp(w->name, name) != 0)
            continue;
        proto_msg m = {.type = PROTO_DRAIN};
        sender_to(c->snd, w->rid, w->rid_len, &m);
        n++;
    }
    if (!n) {
        snprintf(err, errlen, "drain: no live worker '%.200s'", name);
        return -1;
    }
    LOG_INFO("ctl.drain", "asked worker %s to hand back its items and leave",
             name);
    return 0;
}

static int cmd_cancel(ctlcmd *c, char *err, size_t errlen)
{
    if (c->queue) {
        snprintf(err, errlen,
                 "cancel: not for a queue source (its messages stay in the "
                 "queue); stop the master instead (SIGTERM)");
        return -1;
    }
    if (!*c->cancel)
        LOG_WARN("ctl.cancel",
                 "cancelled by fanout-ctl: no new calls; once the calls in "
                 "flight end, every item left is recorded cancelled");
    *c->cancel = 1;
    return 0;
}

static json_t *error_reply(const char *err)
{
    return json_pack("{s:b,s:s}", "ok", 0, "error", err);
}

char *ctlcmd_handle(void *ctx, const char *json, int64_t now)
{
    ctlcmd *c = ctx;
    json_error_t jerr;
    json_t *req = json_loads(json, 0, &jerr);
    json_t *rep;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    char err[300] = "";
    if (!cmd) {
        rep = error_reply("expected {\"cmd\": \"status\"|\"set\"|"
                          "\"pause\"|\"resume\"|\"drain\"|\"cancel\", ...}");
    } else if (!strcmp(cmd, "status")) {
        rep = observe_status(c->obs, now);
        json_object_set_new(rep, "ok", json_true());
    } else if (!strcmp(cmd, "set") || !strcmp(cmd, "pause") ||
               !strcmp(cmd, "resume") || !strcmp(cmd, "drain") ||
               !strcmp(cmd, "cancel")) {
        int rc = !strcmp(cmd, "set")      ? cmd_set(c, req, err, sizeof err)
                 : !strcmp(cmd, "drain")  ? cmd_drain(c, req, err, sizeof err)
                 : !strcmp(cmd, "cancel") ? cmd_cancel(c, err, sizeof err)
                                          : cmd_pause(c, !strcmp(cmd, "pause"));
        if (rc == 0) {
            rep = observe_status(c->obs, now);
            json_object_set_new(rep, "ok", json_true());
        } else {
            rep = error_reply(err);
        }
    } else {
        snprintf(err, sizeof err, "unknown command '%.40s'", cmd);
        rep = error_reply(err);
    }
    json_decref(req);
    char *out = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(rep);
    return out;
}
