/*
 * main.c - fanout-master's command line: the options table, validation
 * with messages that name the flag, then master_run().
 */
#include "fmacros.h"
#include "curve.h"
#include "finish.h"
#include "gcra.h"
#include "jpath.h"
#include "log.h"
#include "master.h"
#include "observe.h"
#include "options.h"
#include "template.h"

#include "queue.h"
#include "util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define I64MAX INT64_MAX

/* Exit statuses: the user contract (DESIGN.md). */
#define EXIT_ALL_OK 0
#define EXIT_SOME_FAILED 1
#define EXIT_USAGE 2
#define EXIT_FATAL 3 /* also: stopped by a signal; a re-run resumes */

static const opt_def master_opts[] = {
    {"input", OPT_STRING, NULL, 0, 0, "SOURCE",
     "JSONL items, one object per line ('-' for stdin), or a queue: "
     "redis://HOST:PORT/STREAM?group=G or azure-queue://ACCOUNT/QUEUE"},
    {"follow", OPT_FLAG, "false", 0, 1, NULL,
     "queues: keep waiting for messages when the queue is empty"},
    {"idle-grace", OPT_DURATION, "5s", 0, 86400000, "DURATION",
     "queues: finish once the queue has been empty this long"},
    {"url", OPT_STRING, NULL, 0, 0, "TEMPLATE",
     "request URL; {field} is URL-encoded from the item"},
    {"out", OPT_STRING, NULL, 0, 0, "DIR",
     "results.jsonl, summary.json and the state store go here (one master "
     "at a time: DIR/lock)"},
    {"method", OPT_STRING, "GET", 0, 0, "METHOD", "HTTP method"},
    {"header", OPT_LIST, NULL, 0, 0, "'K: V'",
     "request header; ${ENV} is expanded on the worker"},
    {"body", OPT_STRING, NULL, 0, 0, "TEMPLATE",
     "request body template (default for POST/PUT/PATCH: the item as JSON)"},
    {"key", OPT_STRING, "id", 0, 0, "FIELD",
     "item field holding its id (else the line number or message id)"},
    {"rate", OPT_LIST, NULL, 0, 0, "N/UNIT",
     "rate limit, N/s, N/min or N/h; several all hold (default: none)"},
    {"rate-key", OPT_STRING, NULL, 0, 0, "TEMPLATE",
     "per-key limits: each item's key, e.g. {tenant} or {account.id}; "
     "every attempt then pays its key's --key-rate too"},
    {"key-rate", OPT_LIST, NULL, 0, 0, "N/UNIT",
     "limit per key (with --rate-key), N/s, N/min or N/h; several all hold"},
    {"key-max-in-flight", OPT_INT, "0", 0, 1000000, "N",
     "calls in flight per key (with --rate-key; 0: no cap)"},
    {"burst", OPT_INT, "1", 1, 1000000, "N", "calls allowed back to back"},
    {"rate-margin", OPT_DURATION, "10ms", 0, 60000, "DURATION",
     "jitter allowance added to each rate window"},
    {"adaptive", OPT_FLAG, "true", 0, 1, NULL,
     "on push-back lower the rate, then probe back up (--no-adaptive: off)"},
    {"max-in-flight", OPT_INT, "32", 0, 1000000, "N",
     "calls in flight across the cluster (0: no cap)"},
    {"batch-size", OPT_INT, "10", 1, 100000, "N", "items per batch"},
    {"max-attempts", OPT_INT, "5", 1, 1000, "N",
     "attempts per item (throttled ones do not count)"},
    {"max-throttled", OPT_INT, "50", 1, 100000, "N",
     "throttled (429) attempts per item before it fails"},
    {"backoff-base", OPT_DURATION, "500", 0, 3600000, "MS",
     "cap of the first retry's delay (full jitter)"},
    {"backoff-max", OPT_DURATION, "30000", 1, 86400000, "MS",
     "largest retry delay"},
    {"timeout", OPT_DURATION, "30s", 1, 3600000, "DURATION",
     "per-attempt timeout"},
    {"connect-timeout", OPT_DURATION, "10s", 1, 3600000, "DURATION",
     "per-attempt connect timeout"},
    {"max-response-bytes", OPT_SIZE, "1MiB", 0, 64LL << 20, "SIZE",
     "response body cap; larger responses fail the item"},
    {"max-line-bytes", OPT_SIZE, "1MiB", 16, 64LL << 20, "SIZE",
     "input line cap; longer lines are recorded invalid"},
    {"spawn-workers", OPT_INT, "0", 0, 256, "N",
     "also start N local fanout-worker processes"},
    {"worker-concurrency", OPT_INT, "16", 1, 10000, "N",
     "--concurrency of spawned workers"},
    {"max-worker-concurrency", OPT_INT, "1024", 1, 100000, "N",
     "count a worker's --concurrency as at most N (items it is given)"},
    {"bind", OPT_STRING, "tcp://127.0.0.1:5555", 0, 0, "tcp://ADDR:PORT",
     "the endpoint workers and fanout-ctl connect to (port 0: any free "
     "port)"},
    {"curve-secret", OPT_STRING, NULL, 0, 0, "FILE",
     "encrypt every socket with this CurveZMQ key pair (fanout-keygen)"},
    {"curve-allow", OPT_STRING, NULL, 0, 0, "DIR",
     "admit only workers whose NAME.pub is in DIR (with --curve-secret)"},
    {"ctl-allow", OPT_STRING, NULL, 0, 0, "DIR",
     "admit fanout-ctl users whose NAME.pub is in DIR (with --curve-secret)"},
    {"insecure", OPT_FLAG, "false", 0, 1, NULL,
     "allow binding a non-loopback address without encryption"},
    {"lease", OPT_DURATION, "5s", 200, 3600000, "DURATION",
     "worker silence after which its items are re-dispatched"},
    {"heartbeat", OPT_DURATION, "1s", 50, 600000, "DURATION",
     "heartbeat interval"},
    {"drain-timeout", OPT_DURATION, "30s", 0, 86400000, "DURATION",
     "on SIGTERM/SIGINT, how long to wait for calls in flight (a second "
     "signal stops at once)"},
    {"halt-after", OPT_STRING, NULL, 0, 0, "N|P%",
     "stop the job (exit 3, resumable) once N items failed, or P% of at "
     "least 50 recorded"},
    {"halt-on-repeat", OPT_INT, "0", 0, 1000000, "N",
     "stop the job (exit 3) when N items in a row fail with the same HTTP "
     "status, e.g. 401 (0: off)"},
    {"on-finish", OPT_STRING, NULL, 0, 0, "CMD",
     "run CMD with sh once the run ends (FANOUT_EXIT_STATUS, FANOUT_OUT, "
     "FANOUT_SUMMARY set)"},
    {"notify", OPT_STRING, NULL, 0, 0, "URL",
     "POST summary.json to URL once the run ends (3 attempts, 10 s each)"},
    {"no-worker-warning", OPT_DURATION, "30s", 0, 86400000, "DURATION",
     "warn (then every minute) when no worker has been connected this long "
     "(0: never)"},
    {"window", OPT_INT, "0", 0, 1000000, "N",
     "items outstanding at most (0: 4x the workers' concurrency + 256)"},
    {"max-window-bytes", OPT_SIZE, "32MiB", 0, 1LL << 40, "SIZE",
     "bytes of items held at most besides the calls in flight: requests "
     "read ahead or queued on workers, records not yet committed (0: no "
     "cap)"},
    {"redrive", OPT_FLAG, "false", 0, 1, NULL,
     "re-run only the items whose record is failed, replacing it"},
    {"metrics", OPT_STRING, NULL, 0, 0, "HOST:PORT",
     "serve the dashboard (/), /metrics (Prometheus), /status (JSON) and "
     "/healthz here (port 0: any)"},
    {"dashboard-token", OPT_STRING, NULL, 0, 0, "FILE",
     "allow the dashboard's pause, resume and rate buttons to anyone "
     "giving the secret in FILE (default: a read-only dashboard)"},
    {"metrics-textfile", OPT_STRING, NULL, 0, 0, "PATH",
     "write the final metrics here when the job ends (node_exporter "
     "textfile collector)"},
    {"ready-file", OPT_STRING, NULL, 0, 0, "FILE",
     "write the bound endpoints as JSON here once listening"},
    {"progress", OPT_STRING, "auto", 0, 0, "MODE",
     "auto|tty|plain|off (auto is off with --log-format json)"},
    {"log-level", OPT_STRING, "info", 0, 0, "LEVEL", "debug|info|warn|error"},
    {"log-format", OPT_STRING, "text", 0, 0, "FORMAT", "text|json"},
    {"config", OPT_STRING, NULL, 0, 0, "FILE",
     "JSON file of options (flags win)"},
    {"keep", OPT_LIST, NULL, 0, 0, "PATH",
     "store only this part of a JSON response (/a/b/0 or a.b.0): "
     "response becomes {PATH: value, ...}"},
    {"drop-response", OPT_FLAG, "false", 0, 1, NULL, "store no response body"},
    {"ok-when", OPT_STRING, NULL, 0, 0, "COND",
     "a 2xx counts as ok only if its JSON body satisfies COND: "
     "PATH==V, PATH!=V or PATH in [V1,V2]"},
    {"ok-when-retry", OPT_FLAG, "false", 0, 1, NULL,
     "retry a 2xx that fails --ok-when (with backoff, counted) instead of "
     "failing it"},
    {"batches", OPT_STRING, NULL, 0, 0, "[FILE]",
     "write one line per completed batch to FILE (alone, or 'out': "
     "--out/batches.jsonl)"},
};

/* Reads a repeatable N/UNIT option (each value may hold several, comma
 * separated) into out; returns 0, or -1 after printing what is wrong. */
static int parse_rates(opts *o, const char *name, gcra_rate *out, size_t *n)
{
    size_t nr;
    char err[300];
    char *const *rates = opts_list(o, name, &nr);
    *n = 0;
    for (size_t i = 0; i < nr; i++) {
        char *copy = xstrdup(rates[i]), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            if (*n == GCRA_MAX_LIMITS) {
                fprintf(stderr, "fanout-master: %s: at most %d limits\n",
                        opts_origin(o, name), GCRA_MAX_LIMITS);
                free(copy);
                return -1;
            }
            if (gcra_parse_rate(tok, &out[*n], err, sizeof err)) {
                fprintf(stderr, "fanout-master: %s: %s\n", opts_origin(o, name),
                        err);
                free(copy);
                return -1;
            }
            (*n)++;
        }
        free(copy);
    }
    return 0;
}

static const char usage[] =
    "usage: fanout-master --input items.jsonl --url 'https://api/x/{id}' "
    "--out DIR\n"
    "                     [--rate 1000/min] [--max-in-flight 32] "
    "[--spawn-workers 4] ...\n"
    "\nPushes every item through an HTTP API as fast as the rate limit "
    "allows, never\nfaster, across all workers that connect, and records "
    "each item's outcome exactly\nonce in DIR/results.jsonl. Re-run the "
    "same command after a crash to resume.\n"
    "Exit status: 0 all ok, 1 some items failed or were invalid, 2 usage "
    "or\nconfiguration error (also: --out in use by another master), 3 "
    "fatal error or\nstopped by a signal (re-run the same command to "
    "resume).\n";

static int is_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "localhost") ||
           !strcmp(host, "[::1]") || !strcmp(host, "::1");
}

static int check_bind(const char *bind, int insecure, int keys, char *err,
                      size_t errlen)
{
    if (strncmp(bind, "tcp://", 6) != 0) {
        snprintf(err, errlen, "'%s' is not tcp://ADDR:PORT", bind);
        return -1;
    }
    const char *hp = bind + 6;
    const char *colon = strrchr(hp, ':');
    int64_t port;
    if (!colon || colon == hp ||
        util_parse_i64(colon + 1, 0, 65533, &port) < 0) {
        snprintf(err, errlen, "'%s' is not tcp://ADDR:PORT (PORT 0..65533)",
                 bind);
        return -1;
    }
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
    if (!is_loopback(host) && !insecure && !keys) {
        snprintf(err, errlen,
                 "'%s' is not a loopback address: without Curve keys anyone "
                 "who can reach it could join the job and read its items; "
                 "give --curve-secret and --curve-allow, bind 127.0.0.1, or "
                 "give --insecure on a network you trust",
                 bind);
        return -1;
    }
    return 0;
}

/* Runs the job and maps how it ended to the exit status: only this file
 * decides exit statuses. */
static int run(const master_config *c)
{
    char err[2048] = "";
    master *m = NULL;
    /* --out holds the items' results: its files are 0600, including the
     * ones SQLite creates itself (state.db-wal, state.db-shm). */
    umask(077);
    fo_err rc = master_open(c, &m, err, sizeof err);
    if (rc) {
        if (!strcmp(c->log_format, "json"))
            LOG_ERROR("master.open_failed", "%s", err);
        else
            fprintf(stderr, "fanout-master: %s\n", err);
        return rc == FO_EUSAGE || rc == FO_EMISMATCH ? EXIT_USAGE : EXIT_FATAL;
    }
    master_end end;
    rc = master_run(m, &end, err, sizeof err);
    /* A signal's stop is 3 too: resumable, nothing committed is lost. */
    int status = rc == FO_EUSAGE ? EXIT_USAGE : EXIT_FATAL;
    if (rc == FO_OK &&
        (end == MASTER_FINISHED || (c->follow && end == MASTER_STOPPED)))
        /* Following a queue has no end but a signal (a second signal cut
         * its drain short: 3). */
        status = master_some_failed(m) ? EXIT_SOME_FAILED : EXIT_ALL_OK;
    master_close(&m);
    if (c->on_finish)
        finish_run_hook(c->on_finish, c->out, status);
    if (c->notify)
        finish_notify(c->notify, c->out, status);
    return status;
}

/* "--batches" with no value (last, or before another option) means
 * "--batches=out": the options table has no optional values, and would
 * take the next option as the file. Returns a copy of argv to parse (the
 * strings are borrowed; the caller frees the array). */
static char **batches_default(int argc, char **argv)
{
    char **args = xcalloc((size_t)argc + 1, sizeof *args);
    static char batches_out[] = "--batches=out";
    for (int i = 0; i < argc; i++) {
        int bare = i > 0 && !strcmp(argv[i], "--batches") &&
                   (i + 1 == argc || argv[i + 1][0] == '-');
        args[i] = bare ? batches_out : argv[i];
    }
    return args;
}

int main(int argc, char **argv)
{
    char err[1024] = "";
    int status;
    char **args = batches_default(argc, argv);
    opts *o = opts_parse(
        master_opts, sizeof master_opts / sizeof master_opts[0], argc, args,
        usage, "fanout-master " FANOUT_VERSION, &status, err, sizeof err);
    free(args);
    int rc = EXIT_USAGE;
    char *out_dir = NULL;
    master_config c;
    char batches_path[4200];
    memset(&c, 0, sizeof c);
    if (status == 1) {
        rc = 0;
        goto out;
    }
    if (status == 2) {
        fprintf(stderr, "fanout-master: %s\n", err);
        goto out;
    }
    size_t npos;
    char *const *pos = opts_positional(o, &npos);
    if (npos) {
        fprintf(stderr,
                "fanout-master: unexpected argument '%s' (see "
                "--help)\n",
                pos[0]);
        goto out;
    }
    static const char *const required[] = {"input", "url", "out"};
    for (size_t i = 0; i < 3; i++) {
        if (!opts_str(o, required[i]) || !*opts_str(o, required[i])) {
            fprintf(stderr, "fanout-master: --%s is required (see --help)\n",
                    required[i]);
            goto out;
        }
    }
    log_level lvl;
    log_format fmt;
    if (log_parse_level(opts_str(o, "log-level"), &lvl) < 0) {
        fprintf(stderr,
                "fanout-master: %s: '%s' is not one of debug, info, "
                "warn, error\n",
                opts_origin(o, "log-level"), opts_str(o, "log-level"));
        goto out;
    }
    if (log_parse_format(opts_str(o, "log-format"), &fmt) < 0) {
        fprintf(stderr, "fanout-master: %s: '%s' is not text or json\n",
                opts_origin(o, "log-format"), opts_str(o, "log-format"));
        goto out;
    }
    log_init("master", lvl, fmt);

    c.input = opts_str(o, "input");
    c.url = opts_str(o, "url");
    /* "out/" and "out" are one directory: drop trailing slashes once, so
     * no message says "out//results.jsonl". */
    out_dir = xstrdup(opts_str(o, "out"));
    for (size_t n = strlen(out_dir); n > 1 && out_dir[n - 1] == '/'; n--)
        out_dir[n - 1] = '\0';
    c.out = out_dir;
    c.method = opts_str(o, "method");
    c.headers = opts_list(o, "header", &c.nheaders);
    c.body = opts_str(o, "body");
    c.key = opts_str(o, "key");
    if (parse_rates(o, "rate", c.rates, &c.nrates) ||
        parse_rates(o, "key-rate", c.krates, &c.nkrates))
        goto out;
    c.rate_key = opts_str(o, "rate-key");
    c.key_max_in_flight = opts_num(o, "key-max-in-flight");
    if (!c.rate_key && (c.nkrates || c.key_max_in_flight)) {
        fprintf(stderr,
                "fanout-master: %s needs --rate-key (which part of "
                "an item is its key)\n",
                c.nkrates ? opts_origin(o, "key-rate")
                          : opts_origin(o, "key-max-in-flight"));
        goto out;
    }
    for (char *p = (char *)c.method; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    for (const char *p = c.method; *p; p++)
        if (*p < 'A' || *p > 'Z') {
            fprintf(stderr, "fanout-master: %s: '%s' is not an HTTP method\n",
                    opts_origin(o, "method"), c.method);
            goto out;
        }
    if (strncmp(c.url, "http://", 7) != 0 &&
        strncmp(c.url, "https://", 8) != 0) {
        fprintf(stderr,
                "fanout-master: %s: '%s' must start with http:// "
                "or https://\n",
                opts_origin(o, "url"), c.url);
        goto out;
    }
    for (size_t i = 0; i < c.nheaders; i++) {
        const char *h = c.headers[i];
        const char *colon = strchr(h, ':');
        if (!colon || colon == h || strchr(h, '\n') || strchr(h, '\r')) {
            fprintf(stderr, "fanout-master: %s: '%s' is not 'Name: value'\n",
                    opts_origin(o, "header"), h);
            goto out;
        }
    }
    c.metrics = opts_str(o, "metrics");
    c.metrics_textfile = opts_str(o, "metrics-textfile");
    static char token[OBSERVE_TOKEN_MAX_BYTES + 1];
    if (opts_str(o, "dashboard-token")) {
        if (!c.metrics) {
            fprintf(stderr, "fanout-master: --dashboard-token needs "
                            "--metrics (the dashboard's address)\n");
            goto out;
        }
        if (observe_read_token(opts_str(o, "dashboard-token"), token,
                               sizeof token, err, sizeof err)) {
            fprintf(stderr, "fanout-master: %s: %s\n",
                    opts_origin(o, "dashboard-token"), err);
            goto out;
        }
        c.dashboard_token = token;
    }
    c.curve_secret = opts_str(o, "curve-secret");
    c.curve_allow = opts_str(o, "curve-allow");
    c.ctl_allow = opts_str(o, "ctl-allow");
    if (!c.curve_secret != !c.curve_allow) {
        fprintf(stderr, "fanout-master: %s needs %s too\n",
                c.curve_secret ? "--curve-secret" : "--curve-allow",
                c.curve_secret ? "--curve-allow" : "--curve-secret");
        goto out;
    }
    if (opts_str(o, "ctl-allow") && !c.curve_secret) {
        fprintf(stderr, "fanout-master: --ctl-allow needs --curve-secret and "
                        "--curve-allow: operator keys are Curve keys\n");
        goto out;
    }
    if (check_bind(opts_str(o, "bind"), (int)opts_num(o, "insecure"),
                   c.curve_secret != NULL, err, sizeof err)) {
        fprintf(stderr, "fanout-master: %s: %s\n", opts_origin(o, "bind"), err);
        goto out;
    }
    c.burst = opts_num(o, "burst");
    c.rate_margin_ms = opts_num(o, "rate-margin");
    c.max_in_flight = opts_num(o, "max-in-flight");
    c.batch_size = opts_num(o, "batch-size");
    c.max_attempts = opts_num(o, "max-attempts");
    c.max_throttled = opts_num(o, "max-throttled");
    c.backoff_base_ms = opts_num(o, "backoff-base");
    c.backoff_max_ms = opts_num(o, "backoff-max");
    c.timeout_ms = opts_num(o, "timeout");
    c.connect_timeout_ms = opts_num(o, "connect-timeout");
    c.max_response_bytes = opts_num(o, "max-response-bytes");
    c.max_line_bytes = opts_num(o, "max-line-bytes");
    c.spawn_workers = opts_num(o, "spawn-workers");
    c.worker_concurrency = opts_num(o, "worker-concurrency");
    c.max_worker_concurrency = opts_num(o, "max-worker-concurrency");
    c.bind = opts_str(o, "bind");
    c.insecure = (int)opts_num(o, "insecure");
    c.lease_ms = opts_num(o, "lease");
    c.heartbeat_ms = opts_num(o, "heartbeat");
    c.drain_timeout_ms = opts_num(o, "drain-timeout");
    c.window = opts_num(o, "window");
    c.max_window_bytes = opts_num(o, "max-window-bytes");
    c.ready_file = opts_str(o, "ready-file");
    c.progress = opts_str(o, "progress");
    /* A JSON log is read by machines: progress lines would break it, so
     * "auto" means off (an explicit plain or tty still draws). */
    if (fmt == LOG_FMT_JSON && !strcmp(c.progress, "auto"))
        c.progress = "off";
    c.log_level = opts_str(o, "log-level");
    c.log_format = opts_str(o, "log-format");
    c.no_worker_warning_ms = opts_num(o, "no-worker-warning");
    c.halt_on_repeat = opts_num(o, "halt-on-repeat");
    c.on_finish = opts_str(o, "on-finish");
    c.notify = opts_str(o, "notify");
    if (c.notify) {
        char uerr[512];
        if (finish_check_url(c.notify, uerr, sizeof uerr)) {
            fprintf(stderr, "fanout-master: %s\n", uerr);
            goto out;
        }
    }
    const char *ha = opts_str(o, "halt-after");
    if (ha) {
        size_t hl = strlen(ha);
        int pct = hl > 1 && ha[hl - 1] == '%';
        char num[32];
        int64_t v;
        snprintf(num, sizeof num, "%.*s", (int)(pct ? hl - 1 : hl), ha);
        if (hl > 30 ||
            util_parse_i64(num, 1, pct ? 100 : INT64_C(1000000000000), &v)) {
            fprintf(stderr,
                    "fanout-master: %s: '%s' is not a count of failed items "
                    "(N) or a share of recorded ones (P%%, 1 to 100)\n",
                    opts_origin(o, "halt-after"), ha);
            goto out;
        }
        if (pct)
            c.halt_after_pct = v;
        else
            c.halt_after_n = v;
    }
    c.redrive = (int)opts_num(o, "redrive");
    c.adaptive = (int)opts_num(o, "adaptive");
    c.follow = (int)opts_num(o, "follow");
    c.idle_grace_ms = opts_num(o, "idle-grace");
    if (c.redrive && queue_is_url(c.input)) {
        fprintf(stderr,
                "fanout-master: --redrive needs a file --input: a queue's "
                "messages are gone once acknowledged (enqueue the failed "
                "items again instead)\n");
        goto out;
    }
    if (c.follow && !queue_is_url(c.input)) {
        fprintf(stderr, "fanout-master: --follow is for queue inputs "
                        "(redis://, azure-queue://)\n");
        goto out;
    }
    c.keep = opts_list(o, "keep", &c.nkeep);
    c.drop_response = (int)opts_num(o, "drop-response");
    c.ok_when = opts_str(o, "ok-when");
    c.ok_when_retry = (int)opts_num(o, "ok-when-retry");
    if (c.nkeep > JPATH_MAX_KEEP) {
        fprintf(stderr, "fanout-master: %s: at most %d paths\n",
                opts_origin(o, "keep"), JPATH_MAX_KEEP);
        goto out;
    }
    for (size_t i = 0; i < c.nkeep; i++) {
        jpath jp;
        if (jpath_parse(c.keep[i], &jp, err, sizeof err)) {
            fprintf(stderr, "fanout-master: %s: %s\n", opts_origin(o, "keep"),
                    err);
            goto out;
        }
        jpath_fini(&jp);
    }
    if (c.nkeep && c.drop_response) {
        fprintf(stderr, "fanout-master: --keep and --drop-response "
                        "contradict each other; give one\n");
        goto out;
    }
    if (c.ok_when) {
        jpath_cond jc;
        if (jpath_cond_parse(c.ok_when, &jc, err, sizeof err)) {
            fprintf(stderr, "fanout-master: %s: %s\n",
                    opts_origin(o, "ok-when"), err);
            goto out;
        }
        jpath_cond_fini(&jc);
    } else if (c.ok_when_retry) {
        fprintf(stderr, "fanout-master: --ok-when-retry needs --ok-when\n");
        goto out;
    }
    c.batches = opts_str(o, "batches");
    if (c.batches && !strcmp(c.batches, "out")) {
        snprintf(batches_path, sizeof batches_path, "%s/batches.jsonl", c.out);
        c.batches = batches_path;
    } else if (c.batches && !*c.batches) {
        fprintf(stderr,
                "fanout-master: %s: give a file, or 'out' for "
                "--out/batches.jsonl\n",
                opts_origin(o, "batches"));
        goto out;
    }
    if (c.heartbeat_ms * 2 > c.lease_ms) {
        fprintf(stderr,
                "fanout-master: --lease (%lld ms) must be at least "
                "twice --heartbeat (%lld ms)\n",
                (long long)c.lease_ms, (long long)c.heartbeat_ms);
        goto out;
    }
    rc = run(&c);
out:
    free(out_dir);
    opts_destroy(&o);
    return rc;
}
