/*
 * fuzz_options.c - opts_parse() with a fuzzed --config file and argv.
 *
 * Input layout: byte 0 chooses how the config file is named (not at all,
 * "--config PATH" or "--config=PATH", before or after the other arguments);
 * the bytes up to the first NUL are the config file's contents; the rest,
 * split on NUL, are argv[1..]. The config file lives in a memfd reached as
 * /proc/self/fd/N, so nothing touches the disk.
 *
 * Checked besides crashes: the documented status values, an error message on
 * every usage error, and that every accepted number lies within its option's
 * bounds.
 */
#include "fmacros.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "options.h"

#define MAX_ARGS 64

static const opt_def defs[] = {
    {"config", OPT_STRING, NULL, 0, 0, "FILE", "JSON file of options"},
    {"name", OPT_STRING, "dflt", 0, 0, "TEXT", "a string"},
    {"count", OPT_INT, "5", 0, 100, "N", "an integer"},
    {"neg", OPT_INT, "-3", -10, 10, "N", "a signed integer"},
    {"flag", OPT_FLAG, "false", 0, 1, NULL, "a flag"},
    {"wait", OPT_DURATION, "1s", 0, 3600000, "DURATION", "a duration"},
    {"size", OPT_SIZE, "1MiB", 16, 64LL << 20, "SIZE", "a size"},
    {"header", OPT_LIST, NULL, 0, 0, "'K: V'", "repeatable"},
    {"rate", OPT_LIST, NULL, 0, 0, "N/UNIT", "repeatable"},
};
#define NDEFS (sizeof defs / sizeof defs[0])

static int cfg_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* --help and --version print to stdout; keep the fuzzer's output
     * readable. The environment is a source too: start from none. */
    if (!freopen("/dev/null", "w", stdout))
        abort();
    unsetenv("FANOUT_CONFIG");
    for (size_t i = 0; i < NDEFS; i++) {
        char en[64];
        size_t n = (size_t)snprintf(en, sizeof en, "FANOUT_");
        for (const char *p = defs[i].name; *p && n + 1 < sizeof en; p++)
            en[n++] = *p == '-' ? '_' : (char)(*p - 'a' + 'A');
        en[n] = '\0';
        unsetenv(en);
    }
    cfg_fd = memfd_create("fuzz-config", 0);
    if (cfg_fd < 0)
        abort();
    return 0;
}

static void check(const opts *o)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const opt_def *d = &defs[i];
        if (!opts_origin(o, d->name))
            abort();
        (void)opts_given(o, d->name);
        switch (d->type) {
        case OPT_STRING:
            (void)opts_str(o, d->name);
            break;
        case OPT_LIST: {
            size_t n;
            char *const *l = opts_list(o, d->name, &n);
            for (size_t k = 0; k < n; k++)
                if (!l[k])
                    abort();
            break;
        }
        default: {
            int64_t v = opts_num(o, d->name);
            if (v < d->min || v > d->max) {
                fprintf(stderr,
                        "fuzz_options: --%s = %lld, outside [%lld, "
                        "%lld]\n",
                        d->name, (long long)v, (long long)d->min,
                        (long long)d->max);
                abort();
            }
        }
        }
    }
    size_t npos;
    char *const *pos = opts_positional(o, &npos);
    for (size_t k = 0; k < npos; k++)
        if (!pos[k])
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 5;
    const uint8_t *p = data + 1, *end = data + size;
    const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));
    size_t clen = nul ? (size_t)(nul - p) : (size_t)(end - p);
    if (ftruncate(cfg_fd, 0) != 0 ||
        pwrite(cfg_fd, p, clen, 0) != (ssize_t)clen)
        abort();
    p += clen + (nul ? 1 : 0);

    /* Copies, so that the product sees NUL-terminated strings only. */
    char *copy = malloc((size_t)(end - p) + 1);
    memcpy(copy, p, (size_t)(end - p));
    copy[end - p] = '\0';
    char path[64], eqform[80];
    snprintf(path, sizeof path, "/proc/self/fd/%d", cfg_fd);
    snprintf(eqform, sizeof eqform, "--config=%s", path);

    char *argv[MAX_ARGS + 4];
    int argc = 0;
    argv[argc++] = "fuzz_options";
    if (mode == 1) {
        argv[argc++] = "--config";
        argv[argc++] = path;
    } else if (mode == 2) {
        argv[argc++] = eqform;
    }
    char *q = copy, *qend = copy + (end - p);
    while (q < qend && argc < MAX_ARGS) {
        argv[argc++] = q;
        q += strlen(q) + 1;
    }
    if (mode == 3) {
        argv[argc++] = "--config";
        argv[argc++] = path;
    } else if (mode == 4) {
        argv[argc++] = eqform;
    }
    argv[argc] = NULL;

    int status = -1;
    char err[512] = "";
    opts *o = opts_parse(defs, NDEFS, argc, argv, "usage: fuzz", "fuzz 0",
                         &status, err, sizeof err);
    if (!o)
        abort();
    if (status < 0 || status > 2)
        abort();
    if (status == 2 && err[0] == '\0') {
        fprintf(stderr, "fuzz_options: usage error without a message\n");
        abort();
    }
    if (status == 0)
        check(o);
    opts_destroy(&o);
    opts_destroy(&o);
    free(copy);
    return 0;
}
