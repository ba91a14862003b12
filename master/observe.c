/*
 * observe.c - /status, /metrics, the dashboard, progress and summaries;
 * see observe.h.
 */
#include "fmacros.h"
#include "observe.h"
#include "keystat.h"
#include "buf.h"
#include "clock.h"
#include "dashboard.h"
#include "log.h"
#include "proto.h"
#include "record.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

/* Attempts beyond each recorded item's first. */
static int64_t retries_of(const store_totals *t)
{
    int64_t r = t->attempts - (t->ok + t->failed);
    return r > 0 ? r : 0;
}

int observe_some_failed(const observe *o)
{
    const store_totals *t = &o->cm->state.totals;
    return t->failed || t->invalid || t->cancelled;
}

/* A JSON string of s, which may have been cut inside a UTF-8 sequence or
 * come from an API as any bytes: when it is not valid UTF-8, its non-ASCII
 * bytes become '?'. */
static json_t *safe_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *c = xstrdup(s);
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(c);
    free(c);
    return j;
}

/* Figures the dashboard shows besides the counters: limits, retries, the
 * calls' status classes and latencies, and the latest failures. */
static void add_dashboard_figures(observe *o, json_t *j, int64_t now)
{
    const store_totals *t = &o->cm->state.totals;
    const callstats *cs = &o->fi->calls;
    json_object_set_new(j, "version", json_string(FANOUT_VERSION));
    json_object_set_new(j, "running_s",
                        json_real((double)(now - o->rc->start_ns) / 1e9));
    json_object_set_new(j, "limit_per_s", json_real(ratectl_base_per_s(o->rc)));
    json_object_set_new(j, "burst", json_integer(o->rc->burst));
    json_object_set_new(j, "retries", json_integer(retries_of(t)));
    json_t *calls = json_object();
    for (int k = 0; k < CALLSTATS_NCLASS; k++)
        json_object_set_new(calls, callstats_class_name((callstats_class)k),
                            json_integer((json_int_t)cs->by_class[k]));
    json_object_set_new(j, "calls", calls);
    json_t *lat = json_null();
    if (cs->lat_count) {
        lat = json_object();
        static const double qs[] = {0.5, 0.9, 0.99};
        static const char *const names[] = {"p50", "p90", "p99"};
        for (int k = 0; k < 3; k++)
            json_object_set_new(lat, names[k],
                                json_real(callstats_quantile_ms(cs, qs[k])));
        json_object_set_new(
            lat, "mean",
            json_real(cs->lat_sum_s * 1000.0 / (double)cs->lat_count));
    }
    json_object_set_new(j, "latency_ms", lat);
    json_t *fs = json_array();
    for (size_t k = 0; k < callstats_failures(cs); k++) {
        const callstats_failure *f = callstats_failure_at(cs, k);
        json_t *fj = json_object();
        json_object_set_new(fj, "id", safe_string(f->id));
        json_object_set_new(fj, "error", safe_string(f->error));
        json_object_set_new(fj, "http_status", json_integer(f->http_status));
        json_object_set_new(fj, "attempts", json_integer(f->attempts));
        json_object_set_new(fj, "worker", safe_string(f->worker));
        json_object_set_new(fj, "at_ms", json_integer(f->at_us / 1000));
        json_array_append_new(fs, fj);
    }
    json_object_set_new(j, "failures", fs);
    json_object_set_new(j, "failures_seen",
                        json_integer((json_int_t)cs->n_failures));
}

/* Calls in flight: token permits held, and in keyed mode (--rate-key)
 * the items given out, which hold none. */
static int64_t in_flight(const observe *o)
{
    return budget_permits_in_use(o->bud) +
           (int64_t)(o->dp ? dispatch_keyed_inflight(o->dp) : 0);
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
    json_object_set_new(j, "in_flight", json_integer(in_flight(o)));
    json_object_set_new(j, "window_bytes", json_integer(o->cm->held_bytes));
    json_object_set_new(j, "paused_by_operator",
                        json_boolean(budget_held(o->bud)));
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
        json_object_set_new(wj, "assigned", json_integer(w->assigned));
        json_object_set_new(wj, "assigned_bytes",
                            json_integer((json_int_t)w->assigned_bytes));
        json_object_set_new(wj, "tokens_wanted", json_integer(w->want));
        json_object_set_new(wj, "tokens_granted",
                            json_integer((json_int_t)w->granted));
        json_object_set_new(wj, "tokens_seen",
                            json_integer((json_int_t)w->seen));
        json_object_set_new(wj, "permits", json_integer(w->permits));
        /* From the heartbeats' clock exchange; null until measured. */
        json_object_set_new(wj, "rtt_ms",
                            w->rtt_us < 0 ? json_null()
                                          : json_real((double)w->rtt_us / 1e3));
        json_object_set_new(wj, "clock_offset_ms",
                            w->rtt_us < 0
                                ? json_null()
                                : json_real((double)w->offset_us / 1e3));
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
    keystat_status(o->dp, j, now);
    add_dashboard_figures(o, j, now);
    return j;
}

static void metric(fo_buf *b, const char *name, const char *type,
                   const char *help, double v)
{
    if (buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help,
                   name, type, name, v))
        return;
}

/* process_* from /proc/self, as Prometheus client libraries name them;
 * a figure that cannot be read is left out. */
static void process_metrics(fo_buf *b)
{
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char line[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    char *got = f ? fgets(line, sizeof line, f) : NULL;
    if (f)
        fclose(f);
    /* Fields after the ")" that ends the command name, from field 3. */
    const char *p = got ? strrchr(line, ')') : NULL;
    unsigned long long v[24] = {0};
    int nv = 0;
    if (p) {
        p++;
        while (nv < 24 && *p) {
            while (*p == ' ')
                p++;
            char *end;
            v[nv] = strtoull(p, &end, 10);
            if (end == p) /* the state letter */
                end = (char *)p + 1;
            p = end;
            nv++;
        }
    }
    if (nv >= 22 && tck > 0) {
        /* utime, stime: fields 14, 15; starttime 22; vsize 23; rss 24. */
        metric(b, "process_cpu_seconds_total", "counter",
               "User and system CPU time spent, in seconds.",
               (double)(v[11] + v[12]) / (double)tck);
        metric(b, "process_virtual_memory_bytes", "gauge",
               "Virtual memory size in bytes.", (double)v[20]);
        if (page > 0)
            metric(b, "process_resident_memory_bytes", "gauge",
                   "Resident memory size in bytes.",
                   (double)v[21] * (double)page);
        f = fopen("/proc/stat", "re");
        unsigned long long btime = 0;
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "btime ", 6)) {
                btime = strtoull(line + 6, NULL, 10);
                break;
            }
        if (f)
            fclose(f);
        if (btime)
            metric(b, "process_start_time_seconds", "gauge",
                   "Start time of the process since the Unix epoch, in "
                   "seconds.",
                   (double)btime + (double)v[19] / (double)tck);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = -1; /* the directory's own descriptor */
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        metric(b, "process_open_fds", "gauge",
               "Number of open file descriptors.", (double)n);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        metric(b, "process_max_fds", "gauge",
               "Maximum number of open file descriptors.", (double)rl.rlim_cur);
}

/* fanout_calls_total by class and the latency histogram. */
static void call_metrics(observe *o, fo_buf *b)
{
    const callstats *cs = &o->fi->calls;
    if (buf_puts(b, "# HELP fanout_calls_total Recorded results by the HTTP "
                    "status class of their last attempt (none: no "
                    "response).\n# TYPE fanout_calls_total counter\n"))
        return;
    for (int k = 0; k < CALLSTATS_NCLASS; k++)
        if (buf_printf(b, "fanout_calls_total{class=\"%s\"} %" PRIu64 "\n",
                       callstats_class_name((callstats_class)k),
                       cs->by_class[k]))
            return;
    if (buf_puts(b, "# HELP fanout_call_latency_seconds Duration of each "
                    "recorded result's last attempt.\n"
                    "# TYPE fanout_call_latency_seconds histogram\n"))
        return;
    uint64_t cum = 0;
    for (int i = 0; i < CALLSTATS_LAT_BUCKETS; i++) {
        cum += cs->lat[i];
        char le[32];
        if (i < CALLSTATS_LAT_BUCKETS - 1)
            snprintf(le, sizeof le, "%g", callstats_lat_bounds_s[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        if (buf_printf(b,
                       "fanout_call_latency_seconds_bucket{le=\"%s\"} %" PRIu64
                       "\n",
                       le, cum))
            return;
    }
    if (buf_printf(b,
                   "fanout_call_latency_seconds_sum %.9g\n"
                   "fanout_call_latency_seconds_count %" PRIu64 "\n",
                   cs->lat_sum_s, cs->lat_count))
        return;
}

/* The metrics text; live adds what only a running process has (process_*
 * and the build's libraries). */
static char *render_metrics(observe *o, int64_t now, int live)
{
    const store_totals *t = &o->cm->state.totals;
    fo_buf b;
    buf_init(&b, 1 << 20);
    int zmaj, zmin, zpat;
    zmq_version(&zmaj, &zmin, &zpat);
    if (buf_printf(&b,
                   "# HELP fanout_build_info The fanout-master build; the "
                   "value is always 1.\n# TYPE fanout_build_info gauge\n"
                   "fanout_build_info{version=\"%s\",protocol=\"%d\","
                   "zeromq=\"%d.%d.%d\",sqlite=\"%s\"} 1\n",
                   FANOUT_VERSION, PROTO_VERSION, zmaj, zmin, zpat,
                   sqlite3_libversion()))
        return buf_take(&b);
    if (live)
        process_metrics(&b);
    if (buf_printf(&b,
                   "# HELP fanout_items_total Items recorded, by final "
                   "status.\n# TYPE fanout_items_total counter\n"
                   "fanout_items_total{status=\"ok\"} %" PRId64 "\n"
                   "fanout_items_total{status=\"failed\"} %" PRId64 "\n"
                   "fanout_items_total{status=\"invalid\"} %" PRId64 "\n",
                   t->ok, t->failed, t->invalid))
        return buf_take(&b);
    if (o->in->total_items >= 0)
        metric(&b, "fanout_items_expected", "gauge",
               "Items in the input (absent when not known up front).",
               (double)o->in->total_items);
    metric(&b, "fanout_attempts_total", "counter",
           "HTTP attempts behind recorded items, retries included.",
           (double)t->attempts);
    int64_t retries = t->attempts - (t->ok + t->failed);
    metric(&b, "fanout_retries_total", "counter",
           "Attempts beyond each recorded item's first.",
           (double)(retries > 0 ? retries : 0));
    call_metrics(o, &b);
    if (keystat_metrics(o->dp, &b, now))
        return buf_take(&b);
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
           (double)in_flight(o));
    metric(&b, "fanout_max_in_flight", "gauge",
           "Cluster-wide cap on calls in flight, 0 for none.",
           (double)budget_max_in_flight(o->bud));
    metric(&b, "fanout_workers", "gauge", "Workers connected.",
           (double)budget_live(o->bud, NULL));
    metric(&b, "fanout_out_full", "gauge",
           "1 while --out has no space: results are held in memory and no "
           "new items are taken.",
           o->cm->full.active ? 1 : 0);
    metric(&b, "fanout_out_full_episodes_total", "counter",
           "Times --out ran out of space.", (double)o->cm->full.episodes);
    metric(&b, "fanout_out_full_failures_total", "counter",
           "Group commits that failed for lack of space (each is retried).",
           (double)o->cm->full.failures);
    metric(&b, "fanout_paused", "gauge",
           "1 while all calls are paused after API push-back.",
           budget_paused_until(o->bud) > now ? 1 : 0);
    metric(&b, "fanout_operator_paused", "gauge",
           "1 while an operator has paused the job (fanout-ctl pause, or "
           "the dashboard).",
           budget_held(o->bud) ? 1 : 0);
    metric(&b, "fanout_items_outstanding", "gauge",
           "Items read from the source and not yet committed.",
           (double)o->cm->outstanding);
    metric(&b, "fanout_window_bytes", "gauge",
           "Bytes of those items held: rendered requests, then records "
           "(--max-window-bytes).",
           (double)o->cm->held_bytes);
    if (o->in->in_size >= 0)
        metric(&b, "fanout_source_lag_bytes", "gauge",
               "Input bytes not yet acknowledged (absent for a stream).",
               (double)(o->in->in_size - o->cm->state.cursor.offset));
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
           "Malformed or unknown messages dropped.", (double)*o->ctl->n_bad);
    metric(&b, "fanout_foreign_reports_total", "counter",
           "Results and heartbeat claims about items the sending worker "
           "does not hold (ignored).",
           (double)o->ctl->dp->n_foreign);
    metric(&b, "fanout_forbidden_messages_total", "counter",
           "Messages refused for the sender's key role (a command from a "
           "worker key, worker messages from an operator key).",
           (double)o->ctl->n_forbidden);
    metric(&b, "fanout_long_pauses_capped_total", "counter",
           "Long pauses reported by a single worker, cut to 10 s.",
           (double)o->rc->n_capped);
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

char *observe_metrics(observe *o, int64_t now)
{
    return render_metrics(o, now, 1);
}

static char *history_json(observe *o);

/* The /status body: observe_status with what only the web page needs. */
static char *status_json(observe *o, int64_t now)
{
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
    json_object_set_new(st, "controls", json_boolean(o->token != NULL));
    char *s = record_json_line(st, JSON_COMPACT | JSON_REAL_PRECISION(6), NULL);
    json_decref(st);
    return s;
}

/* "Bearer <token>", compared in time independent of where it differs. */
static int authorized(const char *token, const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return 0;
    const char *given = header + 7;
    size_t n = strlen(token), m = strlen(given);
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(token[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

static char *api_error(httpd_resp *resp, int status, const char *msg)
{
    resp->status = status;
    json_t *j = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
    char *s = record_json_line(j, JSON_COMPACT, NULL);
    json_decref(j);
    return s;
}

/* {"rate": "20/s" | "20/s,1000/min" | [...] | "none", "max_in_flight": N}
 * from the page becomes fanout-ctl's {"cmd":"set", ...}. NULL with err
 * when the body is not such an object. */
static json_t *rate_command(const httpd_req *req, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *in = json_loadb(req->body, req->body_len, 0, &jerr);
    json_t *rate = json_object_get(in, "rate");
    json_t *mif = json_object_get(in, "max_in_flight");
    if (!json_is_object(in) || (!rate && !mif)) {
        snprintf(err, errlen,
                 "expected a JSON object with \"rate\" (e.g. \"20/s\") "
                 "and/or \"max_in_flight\"");
        json_decref(in);
        return NULL;
    }
    json_t *cmd = json_pack("{s:s}", "cmd", "set");
    if (json_is_string(rate) && strcmp(json_string_value(rate), "none")) {
        /* "20/s,1000/min" or "20/s+1000/min": several limits. */
        json_t *list = json_array();
        char *copy = xstrdup(json_string_value(rate)), *save = NULL;
        for (char *tok = strtok_r(copy, ",+", &save); tok;
             tok = strtok_r(NULL, ",+", &save)) {
            while (*tok == ' ')
                tok++;
            if (*tok)
                json_array_append_new(list, json_string(tok));
        }
        free(copy);
        json_object_set_new(cmd, "rate", list);
    } else if (rate) {
        json_object_set(cmd, "rate", rate);
    }
    if (mif)
        json_object_set(cmd, "max_in_flight", mif);
    json_decref(in);
    return cmd;
}

/* POST /api/pause, /api/resume, /api/rate: the token, then fanout-ctl's
 * own handler. */
static char *api(observe *o, const httpd_req *req, httpd_resp *resp,
                 int64_t now)
{
    resp->content_type = "application/json";
    const char *what = req->path + 5;
    if (strcmp(what, "pause") && strcmp(what, "resume") && strcmp(what, "rate"))
        return api_error(resp, 404, "no such command");
    if (strcmp(req->method, "POST")) {
        resp->headers = "Allow: POST\r\n";
        return api_error(resp, 405, "use POST");
    }
    if (!o->token || !o->ctl || !o->ctl->on_ctl)
        return api_error(resp, 403,
                         "read-only: the master was started without "
                         "--dashboard-token");
    if (!authorized(o->token, req->authorization)) {
        resp->headers = "WWW-Authenticate: Bearer realm=\"fanout\"\r\n";
        LOG_WARN("dashboard.unauthorized",
                 "POST %s refused: missing or wrong token", req->path);
        return api_error(resp, 401, "missing or wrong token");
    }
    char err[300];
    json_t *cmd = !strcmp(what, "rate") ? rate_command(req, err, sizeof err)
                                        : json_pack("{s:s}", "cmd", what);
    if (!cmd)
        return api_error(resp, 400, err);
    char *text = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    LOG_INFO("dashboard.command", "%s from the dashboard: %s", what, text);
    char *reply = o->ctl->on_ctl(o->ctl->ctl_ctx, text, now);
    free(text);
    json_error_t jerr;
    json_t *rj = json_loads(reply ? reply : "", 0, &jerr);
    if (!json_is_true(json_object_get(rj, "ok")))
        resp->status = 400;
    json_decref(rj);
    return reply ? reply : api_error(resp, 500, "no reply");
}

char *observe_http(void *ctx, const httpd_req *req, httpd_resp *resp)
{
    observe *o = ctx;
    int64_t now = clock_now_ns();
    const char *path = req->path;
    if (!strncmp(path, "/api/", 5))
        return api(o, req, resp, now);
    if (strcmp(req->method, "GET")) {
        resp->status = 405;
        resp->headers = "Allow: GET, HEAD\r\n";
        return xstrdup("only GET and HEAD here\n");
    }
    if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        resp->content_type = "text/html; charset=utf-8";
        return xstrdup((const char *)dashboard_html);
    }
    if (!strcmp(path, "/healthz")) {
        /* The server runs on the event loop's thread: answering at all
         * means the loop is turning. */
        return xstrdup("ok\n");
    }
    if (!strcmp(path, "/metrics")) {
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
        return observe_metrics(o, now);
    }
    if (!strcmp(path, "/status")) {
        resp->content_type = "application/json";
        return status_json(o, now);
    }
    if (!strcmp(path, "/history")) {
        resp->content_type = "application/json";
        return history_json(o);
    }
    resp->status = 404;
    return xstrdup("not found: try /, /metrics, /status or /healthz\n");
}

int observe_read_token(const char *path, char *buf, size_t cap, char *err,
                       size_t errlen)
{
    char line[OBSERVE_TOKEN_MAX_BYTES + 64];
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    char *p = got ? got : line;
    if (!got)
        line[0] = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strcspn(p, "\r\n");
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n < OBSERVE_TOKEN_MIN_BYTES || n > OBSERVE_TOKEN_MAX_BYTES ||
        n >= cap) {
        snprintf(err, errlen,
                 "%s: the token (its first line) must be %d to %d "
                 "characters, e.g. from: head -c 24 /dev/urandom | base64",
                 path, OBSERVE_TOKEN_MIN_BYTES, OBSERVE_TOKEN_MAX_BYTES);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e) {
            snprintf(err, errlen,
                     "%s: the token must be printable ASCII without "
                     "blanks",
                     path);
            return -1;
        }
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 0;
}

static void take_sample(observe *o, int64_t now)
{
    if (now < o->next_sample_ns)
        return;
    int first = o->next_sample_ns == 0;
    o->next_sample_ns = now + FO_NS_PER_S;
    const store_totals *t = &o->cm->state.totals;
    int64_t retries = retries_of(t);
    if (!first) {
        observe_sample *s = &o->hist[o->nhist % OBSERVE_HISTORY];
        s->at_ms = clock_wall_us() / 1000;
        s->calls_per_s = ratectl_calls_per_s(o->rc, now);
        s->limit_per_s = ratectl_base_per_s(o->rc);
        s->effective = ratectl_effective_per_s(o->rc);
        s->throttled = (uint32_t)(o->rc->n_throttled - o->last_throttled);
        s->retries =
            (uint32_t)(retries > o->last_retries ? retries - o->last_retries
                                                 : 0);
        o->nhist++;
    }
    o->last_throttled = o->rc->n_throttled;
    o->last_retries = retries;
}

/* GET /history: the samples, oldest first, as columns. */
static char *history_json(observe *o)
{
    json_t *j = json_object(), *at = json_array(), *calls = json_array(),
           *lim = json_array(), *eff = json_array(), *thr = json_array(),
           *rtr = json_array();
    size_t n = o->nhist < OBSERVE_HISTORY ? (size_t)o->nhist : OBSERVE_HISTORY;
    for (size_t k = 0; k < n; k++) {
        const observe_sample *s =
            &o->hist[(o->nhist - n + k) % OBSERVE_HISTORY];
        json_array_append_new(at, json_integer(s->at_ms));
        json_array_append_new(calls, json_real(s->calls_per_s));
        json_array_append_new(lim, json_real(s->limit_per_s));
        json_array_append_new(eff, json_real(s->effective));
        json_array_append_new(thr, json_integer(s->throttled));
        json_array_append_new(rtr, json_integer(s->retries));
    }
    json_object_set_new(j, "at_ms", at);
    json_object_set_new(j, "calls_per_s", calls);
    json_object_set_new(j, "limit_per_s", lim);
    json_object_set_new(j, "effective_per_s", eff);
    json_object_set_new(j, "throttled", thr);
    json_object_set_new(j, "retries", rtr);
    char *out =
        record_json_line(j, JSON_COMPACT | JSON_REAL_PRECISION(5), NULL);
    json_decref(j);
    return out;
}

void observe_progress(observe *o, int64_t now, int force)
{
    take_sample(o, now);
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
    p.inflight = in_flight(o);
    p.paused = budget_held(o->bud) ? 2 : budget_paused_until(o->bud) > now;
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

/* --metrics-textfile: the final metrics, and when and how the job ended,
 * for node_exporter's textfile collector (which reads *.prom files whole:
 * hence the atomic rename). */
static void write_textfile(observe *o, int finished)
{
    char *m = render_metrics(o, clock_now_ns(), 0);
    fo_buf b;
    buf_init(&b, 2 << 20);
    if (buf_puts(&b, m) ||
        buf_printf(&b,
                   "# HELP fanout_job_finished 1 when every item has a "
                   "record, 0 when the run was stopped first.\n"
                   "# TYPE fanout_job_finished gauge\nfanout_job_finished "
                   "%d\n# HELP fanout_job_end_time_seconds When this run "
                   "ended, since the Unix epoch.\n# TYPE "
                   "fanout_job_end_time_seconds gauge\n"
                   "fanout_job_end_time_seconds %.3f\n"
                   "# HELP fanout_job_exit_status The exit status this run "
                   "ends with (0, 1 or 3).\n# TYPE fanout_job_exit_status "
                   "gauge\nfanout_job_exit_status %d\n",
                   finished, (double)clock_wall_us() / 1e6,
                   finished ? observe_some_failed(o) : 3) ||
        observe_write_file_atomic(o->textfile, b.data, b.len) != 0)
        LOG_ERROR("metrics.textfile_failed", "--metrics-textfile %s: %s",
                  o->textfile, strerror(errno));
    else
        LOG_INFO("metrics.textfile", "final metrics written to %s",
                 o->textfile);
    buf_fini(&b);
    free(m);
}

void observe_write_summary(observe *o, int finished)
{
    const store_totals *t = &o->cm->state.totals;
    ratectl *rc = o->rc;
    json_t *j = json_object();
    json_object_set_new(j, "finished", json_boolean(finished));
    if (o->halted && o->halted[0])
        json_object_set_new(j, "halted", json_string(o->halted));
    /* The exit status this run ends with (the user contract: 0, 1, 3). */
    json_object_set_new(j, "exit_status",
                        json_integer(finished ? observe_some_failed(o) : 3));
    json_object_set_new(j, "items", json_integer(t->items));
    json_object_set_new(j, "ok", json_integer(t->ok));
    json_object_set_new(j, "failed", json_integer(t->failed));
    json_object_set_new(j, "invalid", json_integer(t->invalid));
    json_object_set_new(j, "cancelled", json_integer(t->cancelled));
    json_object_set_new(j, "attempts", json_integer(t->attempts));
    /* What the API received: the records' attempts and those behind
     * results that were not recorded (a late duplicate). */
    uint64_t calls = fanin_calls(o->fi, t->attempts);
    json_object_set_new(j, "calls", json_integer((json_int_t)calls));
    int64_t retries = t->attempts - (t->ok + t->failed);
    json_object_set_new(j, "retries", json_integer(retries > 0 ? retries : 0));
    json_object_set_new(j, "throttled", json_integer(t->throttled));
    double active_s = (double)t->active_ms / 1000.0;
    json_object_set_new(j, "elapsed_s", json_real(active_s));
    json_object_set_new(j, "calls_per_s",
                        json_real(active_s > 0 ? (double)calls / active_s : 0));
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
    json_object_set_new(j, "superseded_results",
                        json_integer((json_int_t)o->fi->n_superseded));
    json_object_set_new(j, "bad_frames",
                        json_integer((json_int_t)*o->ctl->n_bad));
    json_object_set_new(j, "foreign_reports",
                        json_integer((json_int_t)o->ctl->dp->n_foreign));
    json_object_set_new(j, "forbidden_messages",
                        json_integer((json_int_t)o->ctl->n_forbidden));
    json_object_set_new(j, "out_full_episodes",
                        json_integer((json_int_t)o->cm->full.episodes));
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
    if (o->textfile)
        write_textfile(o, finished);
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
            t->invalid, (int64_t)fanin_calls(o->fi, t->attempts), s,
            s > 0 ? (double)fanin_calls(o->fi, t->attempts) / s : 0, limit,
            t->throttled, eff, o->out, o->out);
    if (!finished)
        fprintf(stderr, "re-run the same command to resume\n");
}
