/*
 * observe.c - /status, /metrics, progress and summaries; see observe.h.
 */
#include "fmacros.h"
#include "observe.h"
#include "buf.h"
#include "clock.h"
#include "log.h"
#include "record.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int observe_some_failed(const observe *o)
{
    const store_totals *t = &o->cm->state.totals;
    return t->failed || t->invalid;
}

json_t *observe_status(observe *o, int64_t now)
{
    const store_totals *t = &o->cm->state.totals;
    json_t *j = json_object();
    json_object_set_new(j, "epoch",
                        json_integer((json_int_t)store_epoch(o->st)));
    json_object_set_new(j, "items", json_integer(t->items));
    json_object_set_new(j, "total", json_integer(o->in->total_items));
    json_object_set_new(j, "source", json_string(o->in->shown));
    json_object_set_new(j, "items_ok", json_integer(t->ok));
    json_object_set_new(j, "items_failed", json_integer(t->failed));
    json_object_set_new(j, "items_invalid", json_integer(t->invalid));
    json_object_set_new(j, "attempts", json_integer(t->attempts));
    json_object_set_new(j, "throttled",
                        json_integer((json_int_t)o->rc->n_throttled));
    json_object_set_new(j, "rate", json_string(o->rc->limit_text));
    json_object_set_new(j, "effective_per_s",
                        json_real(ratectl_effective_per_s(o->rc)));
    json_object_set_new(j, "calls_per_s",
                        json_real(ratectl_calls_per_s(o->rc, now)));
    json_object_set_new(j, "max_in_flight",
                        json_integer(budget_max_in_flight(o->bud)));
    json_object_set_new(j, "in_flight",
                        json_integer(budget_permits_in_use(o->bud)));
    int64_t pause = budget_paused_until(o->bud) - now;
    json_object_set_new(j, "paused_ms",
                        json_integer(pause > 0 ? pause / FO_NS_PER_MS : 0));
    json_t *ws = json_array();
    for (size_t i = 0; i < budget_capacity(o->bud); i++) {
        budget_worker *w = budget_at(o->bud, i);
        if (!w->used)
            continue;
        json_t *wj = json_object();
        json_object_set_new(wj, "id", json_string(w->name));
        json_object_set_new(wj, "host", json_string(w->host));
        json_object_set_new(wj, "pid", json_integer(w->pid));
        json_object_set_new(wj, "concurrency", json_integer(w->concurrency));
        json_object_set_new(wj, "held", json_integer(w->held));
        json_object_set_new(wj, "in_flight", json_integer(w->inflight));
        json_object_set_new(
            wj, "last_heartbeat_ms",
            json_integer((now - w->last_seen_ns) / FO_NS_PER_MS));
        json_object_set_new(wj, "results",
                            json_integer((json_int_t)w->results));
        double up = (double)(now - w->joined_ns) / 1e9;
        json_object_set_new(wj, "results_per_s",
                            json_real(up > 0 ? (double)w->results / up : 0));
        json_object_set_new(wj, "leaving", json_boolean(w->leaving));
        json_array_append_new(ws, wj);
    }
    json_object_set_new(j, "workers", ws);
    return j;
}

static void metric(fo_buf *b, const char *name, const char *type,
                   const char *help, double v)
{
    if (buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help,
                   name, type, name, v))
        return;
}

char *observe_metrics(observe *o, int64_t now)
{
    const store_totals *t = &o->cm->state.totals;
    fo_buf b;
    buf_init(&b, 1 << 20);
    if (buf_printf(&b,
                   "# HELP fanout_items_total Items recorded, by final "
                   "status.\n# TYPE fanout_items_total counter\n"
                   "fanout_items_total{status=\"ok\"} %" PRId64 "\n"
                   "fanout_items_total{status=\"failed\"} %" PRId64 "\n"
                   "fanout_items_total{status=\"invalid\"} %" PRId64 "\n",
                   t->ok, t->failed, t->invalid))
        return buf_take(&b);
    metric(&b, "fanout_items_expected", "gauge",
           "Items in the input (-1 when not known up front).",
           (double)o->in->total_items);
    metric(&b, "fanout_attempts_total", "counter",
           "HTTP attempts behind recorded items, retries included.",
           (double)t->attempts);
    metric(&b, "fanout_throttled_total", "counter",
           "Responses that pushed back (429, or 503 with Retry-After).",
           (double)o->rc->n_throttled);
    metric(&b, "fanout_tokens_granted_total", "counter",
           "Tokens granted to workers (one per HTTP attempt).",
           (double)budget_tokens_granted(o->bud));
    metric(&b, "fanout_rate_limit_per_second", "gauge",
           "Configured rate limit (the lowest of --rate), 0 for none.",
           ratectl_base_per_s(o->rc));
    metric(&b, "fanout_effective_rate_per_second", "gauge",
           "Rate granted now, after adaptive lowering and API headers.",
           ratectl_effective_per_s(o->rc));
    metric(&b, "fanout_calls_per_second", "gauge",
           "Tokens granted per second over the last 5 s.",
           ratectl_calls_per_s(o->rc, now));
    metric(&b, "fanout_calls_in_flight", "gauge",
           "Calls in flight across the cluster (permits held).",
           (double)budget_permits_in_use(o->bud));
    metric(&b, "fanout_max_in_flight", "gauge",
           "Cluster-wide cap on calls in flight, 0 for none.",
           (double)budget_max_in_flight(o->bud));
    metric(&b, "fanout_workers", "gauge", "Workers connected.",
           (double)budget_live(o->bud, NULL));
    metric(&b, "fanout_paused", "gauge",
           "1 while all calls are paused after API push-back.",
           budget_paused_until(o->bud) > now ? 1 : 0);
    metric(&b, "fanout_items_outstanding", "gauge",
           "Items read from the source and not yet committed.",
           (double)o->cm->outstanding);
    metric(&b, "fanout_source_lag_bytes", "gauge",
           "Input bytes not yet acknowledged (-1 for a stream).",
           o->in->in_size >= 0
               ? (double)(o->in->in_size - o->cm->state.cursor.offset)
               : -1);
    metric(&b, "fanout_source_acks_total", "counter",
           "Queue messages whose acknowledgement the queue confirmed.",
           (double)o->in->n_acked);
    metric(&b, "fanout_source_redelivered_total", "counter",
           "Queue messages delivered again although already recorded "
           "(acknowledged, not run).",
           (double)o->in->n_redelivered);
    metric(&b, "fanout_source_duplicate_deliveries_total", "counter",
           "Queue messages delivered again while still being worked on.",
           (double)o->in->n_dup_msgs);
    metric(&b, "fanout_recovered_results_total", "counter",
           "Results of calls in flight at an earlier run's end, recorded "
           "without calling again (queue sources).",
           (double)o->orph->n_used);
    metric(&b, "fanout_redispatched_total", "counter",
           "Items sent again after a lease expired or a worker left.",
           (double)o->bt->n_redispatch);
    metric(&b, "fanout_duplicate_results_total", "counter",
           "Late results for items already recorded (ignored).",
           (double)o->fi->n_dup);
    metric(&b, "fanout_stale_results_total", "counter",
           "Results for items not open or with another id (ignored).",
           (double)(o->fi->n_stale + o->fi->n_mismatch + o->orph->n_dup));
    metric(&b, "fanout_orphans_dropped_total", "counter",
           "Results of an earlier run dropped before their queue message "
           "came back (expired or over the caps).",
           (double)o->orph->n_dropped);
    metric(&b, "fanout_bad_frames_total", "counter",
           "Malformed or unknown messages dropped.", (double)*o->fi->n_bad);
    metric(&b, "fanout_curve_denied_total", "counter",
           "Connections refused by the Curve allow-list.",
           o->n_denied ? (double)*o->n_denied : 0);
    if (buf_puts(&b, "# HELP fanout_batch_commit_seconds Duration of a group "
                     "commit (results fsync + state transaction).\n"
                     "# TYPE fanout_batch_commit_seconds histogram\n"))
        return buf_take(&b);
    uint64_t cum = 0;
    for (int i = 0; i < COMMIT_HIST_BUCKETS; i++) {
        cum += o->cm->hist[i];
        char le[32];
        if (i < COMMIT_HIST_BUCKETS - 1)
            snprintf(le, sizeof le, "%g", commit_hist_bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        if (buf_printf(&b,
                       "fanout_batch_commit_seconds_bucket{le=\"%s\"} %" PRIu64
                       "\n",
                       le, cum))
            return buf_take(&b);
    }
    if (buf_printf(&b,
                   "fanout_batch_commit_seconds_sum %.9g\n"
                   "fanout_batch_commit_seconds_count %" PRIu64 "\n",
                   o->cm->sum_s, o->cm->count))
        return buf_take(&b);
    return buf_take(&b);
}

char *observe_http(void *ctx, const char *path, int *status,
                   const char **content_type)
{
    observe *o = ctx;
    int64_t now = clock_now_ns();
    *status = 200;
    if (!strcmp(path, "/metrics")) {
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        return observe_metrics(o, now);
    }
    if (!strcmp(path, "/status")) {
        *content_type = "application/json";
        json_t *st = observe_status(o, now);
        json_object_set_new(st, "ok", json_true());
        int64_t total = o->in->total_items;
        int64_t items = o->cm->state.totals.items;
        double frac = total > 0 ? (double)items / (double)total : -1;
        json_object_set_new(st, "progress", json_real(frac));
        double rate = ratectl_calls_per_s(o->rc, now);
        json_object_set_new(st, "eta_s",
                            total >= 0 && rate > 0
                                ? json_real((double)(total - items) / rate)
                                : json_null());
        char *s =
            record_json_line(st, JSON_COMPACT | JSON_REAL_PRECISION(6), NULL);
        json_decref(st);
        return s;
    }
    *status = 404;
    return xstrdup("not found: try /metrics or /status\n");
}

void observe_progress(observe *o, int64_t now, int force)
{
    progress_snapshot p;
    memset(&p, 0, sizeof p);
    const store_totals *t = &o->cm->state.totals;
    p.done = t->items;
    p.total = o->in->total_items;
    p.fraction = -1;
    if (o->in->total_items < 0 && o->in->in_size > 0)
        p.fraction =
            (double)o->cm->state.cursor.offset / (double)o->in->in_size;
    p.rate_per_s = ratectl_calls_per_s(o->rc, now);
    p.limit = o->rc->limit_text;
    p.effective_per_s = ratectl_effective_per_s(o->rc);
    p.scale = adaptive_scale(&o->rc->ad);
    p.ok = t->ok;
    p.failed = t->failed;
    p.invalid = t->invalid;
    p.retries = t->attempts - (t->ok + t->failed);
    if (p.retries < 0)
        p.retries = 0;
    p.throttled = (int64_t)o->rc->n_throttled;
    p.workers = (int64_t)budget_live(o->bud, NULL);
    p.inflight = budget_permits_in_use(o->bud);
    p.paused = budget_paused_until(o->bud) > now;
    progress_show(o->pmode, &p, now, force);
}

int observe_write_file_atomic(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd =
        open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (util_write_all(fd, data, len) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

void observe_write_summary(observe *o, int finished)
{
    const store_totals *t = &o->cm->state.totals;
    ratectl *rc = o->rc;
    json_t *j = json_object();
    json_object_set_new(j, "finished", json_boolean(finished));
    /* The exit status this run ends with (the user contract: 0, 1, 3). */
    json_object_set_new(j, "exit_status",
                        json_integer(finished ? observe_some_failed(o) : 3));
    json_object_set_new(j, "items", json_integer(t->items));
    json_object_set_new(j, "ok", json_integer(t->ok));
    json_object_set_new(j, "failed", json_integer(t->failed));
    json_object_set_new(j, "invalid", json_integer(t->invalid));
    json_object_set_new(j, "attempts", json_integer(t->attempts));
    int64_t retries = t->attempts - (t->ok + t->failed);
    json_object_set_new(j, "retries", json_integer(retries > 0 ? retries : 0));
    json_object_set_new(j, "throttled", json_integer(t->throttled));
    double active_s = (double)t->active_ms / 1000.0;
    json_object_set_new(j, "elapsed_s", json_real(active_s));
    json_object_set_new(
        j, "calls_per_s",
        json_real(active_s > 0 ? (double)t->attempts / active_s : 0));
    json_t *rates = json_array();
    for (size_t i = 0; i < rc->nrates; i++) {
        char r[48];
        gcra_format_rate(rc->rates[i], r, sizeof r);
        json_array_append_new(rates, json_string(r));
    }
    json_object_set_new(j, "rate_limits", rates);
    json_object_set_new(j, "limit_per_s", json_real(ratectl_base_per_s(rc)));
    json_object_set_new(j, "effective_limit_per_s",
                        json_real(ratectl_effective_per_s(rc)));
    json_object_set_new(j, "throttle_events",
                        json_integer((json_int_t)rc->n_throttled));
    json_object_set_new(j, "rate_decreases",
                        json_integer((json_int_t)rc->ad.throttles));
    json_object_set_new(j, "quota_pauses",
                        json_integer((json_int_t)rc->n_quota_pauses));
    json_object_set_new(j, "results", json_string("results.jsonl"));
    json_object_set_new(j, "epoch",
                        json_integer((json_int_t)store_epoch(o->st)));
    json_object_set_new(j, "redispatched",
                        json_integer((json_int_t)o->bt->n_redispatch));
    json_object_set_new(j, "duplicate_results",
                        json_integer((json_int_t)o->fi->n_dup));
    json_object_set_new(j, "bad_frames",
                        json_integer((json_int_t)*o->fi->n_bad));
    json_object_set_new(j, "blank_lines",
                        json_integer((json_int_t)o->in->n_blank));
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                JSON_REAL_PRECISION(6));
    json_decref(j);
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", o->out);
    fo_buf b;
    buf_init(&b, 1 << 20);
    if (buf_puts(&b, s) || buf_puts(&b, "\n") ||
        observe_write_file_atomic(path, b.data, b.len) != 0)
        LOG_ERROR("summary.write_failed", "%s: %s", path, strerror(errno));
    buf_fini(&b);
    free(s);
}

void observe_print_summary(observe *o, int finished)
{
    const store_totals *t = &o->cm->state.totals;
    double s = (double)t->active_ms / 1000.0;
    char limit[160] = "no limit", eff[80] = "";
    if (o->rc->limit_text[0])
        snprintf(limit, sizeof limit, "limit %s", o->rc->limit_text);
    if (o->rc->nrates && adaptive_scale(&o->rc->ad) < 0.999)
        snprintf(eff, sizeof eff, ", rate lowered to %.2f/s after push-back",
                 ratectl_effective_per_s(o->rc));
    fprintf(stderr,
            "%s: %" PRId64 " items (%" PRId64 " ok, %" PRId64
            " failed, %" PRId64 " invalid), %" PRId64
            " calls in %.1f s, %.2f calls/s (%s),"
            " %" PRId64 " throttled%s\nresults: %s/results.jsonl  summary: "
            "%s/summary.json\n",
            finished ? "done" : "stopped", t->items, t->ok, t->failed,
            t->invalid, t->attempts, s, s > 0 ? (double)t->attempts / s : 0,
            limit, t->throttled, eff, o->out, o->out);
    if (!finished)
        fprintf(stderr, "re-run the same command to resume\n");
}
