/*
 * main.c - fanout-worker's command line: parse options, run the loop.
 */
#include "fmacros.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "options.h"
#include "util.h"
#include "worker.h"

#include <ctype.h>
#include <malloc.h>

/* Collects --allow-env (each item may hold several comma-separated names,
 * so FANOUT_ALLOW_ENV=A,B works too) into job_allow_env(). Returns 0, or
 * -1 after naming a malformed name on stderr. */
static int set_allow_env(const opts *o)
{
    size_t n, count = 0;
    char *const *items = opts_list(o, "allow-env", &n);
    char **names = NULL;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char *copy = xstrdup(items[i]), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok && !rc;
             tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            size_t len = strlen(tok);
            while (len && tok[len - 1] == ' ')
                tok[--len] = '\0';
            int ok = len > 0 && !isdigit((unsigned char)tok[0]);
            for (size_t k = 0; k < len && ok; k++)
                ok = isalnum((unsigned char)tok[k]) || tok[k] == '_';
            if (!ok) {
                fprintf(stderr,
                        "fanout-worker: %s: '%s' is not a variable name "
                        "(letters, digits and '_')\n",
                        opts_origin(o, "allow-env"), tok);
                rc = -1;
                break;
            }
            names = xrealloc(names, (count + 1) * sizeof *names);
            names[count++] = xstrdup(tok);
        }
        free(copy);
    }
    if (!rc)
        job_allow_env(names, count);
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}

static const opt_def worker_opts[] = {
    {"master", OPT_STRING, "tcp://127.0.0.1:5555", 0, 0, "tcp://HOST:PORT",
     "the master's control endpoint"},
    {"concurrency", OPT_INT, "16", 1, 10000, "N", "HTTP calls in flight"},
    {"id", OPT_STRING, NULL, 0, 0, "NAME",
     "worker id shown by the master (default host:pid)"},
    {"once", OPT_FLAG, "false", 0, 1, NULL,
     "exit when the master reports the job finished"},
    {"drain-timeout", OPT_DURATION, "30s", 0, 86400000, "DURATION",
     "on SIGTERM, how long to wait for calls in flight"},
    {"curve-secret", OPT_STRING, NULL, 0, 0, "FILE",
     "this worker's CurveZMQ key pair (fanout-keygen)"},
    {"curve-server-key", OPT_STRING, NULL, 0, 0, "FILE",
     "the master's public key (its NAME.pub)"},
    {"allow-env", OPT_LIST, NULL, 0, 0, "NAME",
     "let the job's headers use ${NAME} from this host's environment "
     "(comma-separated names allowed)"},
    {"log-level", OPT_STRING, "info", 0, 0, "LEVEL", "debug|info|warn|error"},
    {"log-format", OPT_STRING, "text", 0, 0, "FORMAT", "text|json"},
    {"config", OPT_STRING, NULL, 0, 0, "FILE", "JSON file of options"},
};

int main(int argc, char **argv)
{
    /* One malloc arena: libzmq's I/O thread otherwise gets its own, whose
     * fragmentation made a long job's RSS creep (the benchmark saw +18%
     * from 100k to 1M items, with a flat heap). */
    mallopt(M_ARENA_MAX, 1);
    char err[512] = "";
    int status;
    opts *o = opts_parse(
        worker_opts, sizeof worker_opts / sizeof worker_opts[0], argc, argv,
        "usage: fanout-worker --master tcp://HOST:5555 [--concurrency N]\n"
        "\nTakes items from a fanout-master, makes the HTTP calls within the "
        "master's\ncluster-wide rate limit, and sends the results back. "
        "Start as many as you like,\non any host, at any time.\n",
        "fanout-worker " FANOUT_VERSION, &status, err, sizeof err);
    if (status != 0) {
        if (status == 2)
            fprintf(stderr, "fanout-worker: %s\n", err);
        opts_destroy(&o);
        return status == 1 ? 0 : 2;
    }
    size_t npos;
    char *const *pos = opts_positional(o, &npos);
    log_level lvl;
    log_format fmt;
    int rc = 2;
    if (npos > 0) {
        fprintf(stderr,
                "fanout-worker: unexpected argument '%s' (see "
                "--help)\n",
                pos[0]);
        goto out;
    }
    if (log_parse_level(opts_str(o, "log-level"), &lvl) < 0 ||
        log_parse_format(opts_str(o, "log-format"), &fmt) < 0) {
        fprintf(stderr,
                "fanout-worker: %s: expected debug|info|warn|error "
                "and text|json\n",
                opts_origin(o, "log-level"));
        goto out;
    }
    const char *master = opts_str(o, "master");
    if (strncmp(master, "tcp://", 6) != 0 || !strrchr(master + 6, ':')) {
        fprintf(stderr, "fanout-worker: %s: '%s' is not tcp://HOST:PORT\n",
                opts_origin(o, "master"), master);
        goto out;
    }
    if (set_allow_env(o))
        goto out;
    log_init("worker", lvl, fmt);
    char herr[128];
    if (http_global_init(herr, sizeof herr) != FO_OK) {
        fprintf(stderr, "fanout-worker: %s\n", herr);
        rc = 3;
        goto out;
    }
    if (!opts_str(o, "curve-secret") != !opts_str(o, "curve-server-key")) {
        fprintf(stderr, "fanout-worker: %s needs %s too\n",
                opts_str(o, "curve-secret") ? "--curve-secret"
                                            : "--curve-server-key",
                opts_str(o, "curve-secret") ? "--curve-server-key"
                                            : "--curve-secret");
        rc = 2;
        goto out;
    }
    worker_config cfg = {
        .master = master,
        .concurrency = (int)opts_num(o, "concurrency"),
        .id = opts_str(o, "id"),
        .once = (int)opts_num(o, "once"),
        .drain_timeout_ms = opts_num(o, "drain-timeout"),
        .curve_secret = opts_str(o, "curve-secret"),
        .curve_server_key = opts_str(o, "curve-server-key"),
    };
    char werr[1024];
    fo_err wrc = worker_run(&cfg, werr, sizeof werr);
    /* 2: the configuration or the job cannot work; 3: a runtime failure
     * (as the master's exit statuses). */
    rc = wrc == FO_OK ? 0 : wrc == FO_EIO ? 3 : 2;
    if (wrc != FO_OK && werr[0])
        fprintf(stderr, "fanout-worker: %s\n", werr);
    http_global_fini();
out:
    job_allow_env(NULL, 0);
    opts_destroy(&o);
    return rc;
}
