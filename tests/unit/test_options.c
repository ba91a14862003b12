/* test_options.c - table-driven options: flags, environment, config file
 * and their precedence (common/options.h). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "keys.h"
#include "options.h"
#include "unit_assert.h"

static const opt_def defs[] = {
    {"config", OPT_STRING, NULL, 0, 0, "FILE", "JSON config file"},
    {"name", OPT_STRING, "anon", 0, 0, "NAME", "a name"},
    {"workers", OPT_INT, "4", 1, 64, "N", "worker processes"},
    {"verbose", OPT_FLAG, "false", 0, 1, NULL, "talk more"},
    {"timeout", OPT_DURATION, "5s", 1, 3600000, "DUR", "per-call timeout"},
    {"max-body", OPT_SIZE, "1MiB", 1, INT64_C(1) << 30, "SIZE", "body cap"},
    {"header", OPT_LIST, NULL, 0, 0, "H", "extra header"},
};
#define NDEFS (sizeof defs / sizeof defs[0])

static const char *const env_vars[] = {
    "FANOUT_CONFIG",  "FANOUT_NAME",     "FANOUT_WORKERS", "FANOUT_VERBOSE",
    "FANOUT_TIMEOUT", "FANOUT_MAX_BODY", "FANOUT_HEADER",
};

/* Every test starts and ends with no FANOUT_* variable set at all, so
 * that one in the caller's environment cannot draw a warning. */
static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
        unsetenv(env_vars[i]);
    extern char **environ;
    for (size_t i = 0; environ && environ[i];) {
        if (strncmp(environ[i], "FANOUT_", 7) != 0) {
            i++;
            continue;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(environ[i], "="),
                 environ[i]);
        unsetenv(name); /* environ shifts down: look at i again */
    }
    return 0;
}

/* Parses "prog" + the NULL-terminated arguments. */
static opts *parse(int *status, char *err, size_t errlen, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"prog";
    va_list ap;
    va_start(ap, errlen);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    opts *o = opts_parse(defs, NDEFS, argc, argv, "usage: prog [options]",
                         "prog 0.0.1", status, err, errlen);
    assert_non_null(o);
    return o;
}

/* Parses and asserts success. */
#define PARSE_OK(...)                                                          \
    do {                                                                       \
        o = parse(&status, err, sizeof err, __VA_ARGS__, (char *)NULL);        \
        if (status != 0)                                                       \
            fail_msg("status %d: %s", status, err);                            \
    } while (0)

/* Parses, asserts a usage error, and that err mentions each string. */
static void expect_usage_error(const char *m1, const char *m2, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"prog";
    va_list ap;
    va_start(ap, m2);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    int status = -1;
    char err[256] = "";
    opts *o = opts_parse(defs, NDEFS, argc, argv, "usage", "v", &status, err,
                         sizeof err);
    assert_int_equal(status, 2);
    assert_contains(err, m1);
    if (m2)
        assert_contains(err, m2);
    opts_destroy(&o);
}

/* Writes text to a new temp file; path must hold 32 bytes. */
static void write_config(char *path, const char *text)
{
    snprintf(path, 32, "/tmp/fo_unit_opts_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void test_defaults(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o;
    PARSE_OK(NULL);
    assert_string_equal(opts_str(o, "name"), "anon");
    assert_null(opts_str(o, "config"));
    assert_int_equal(opts_num(o, "workers"), 4);
    assert_int_equal(opts_num(o, "verbose"), 0);
    assert_int_equal(opts_num(o, "timeout"), 5000);
    assert_int_equal(opts_num(o, "max-body"), 1048576);
    size_t n = 99;
    (void)opts_list(o, "header", &n);
    assert_int_equal(n, 0);
    assert_int_equal(opts_given(o, "workers"), 0);
    opts_positional(o, &n);
    assert_int_equal(n, 0);
    opts_destroy(&o);
    assert_null(o);
    opts_destroy(&o); /* NULL-safe */
}

static void test_value_forms(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o;
    PARSE_OK("--name", "bob", "--workers=8");
    assert_string_equal(opts_str(o, "name"), "bob");
    assert_int_equal(opts_num(o, "workers"), 8);
    assert_int_equal(opts_given(o, "name"), 1);
    assert_string_equal(opts_origin(o, "workers"), "--workers");
    opts_destroy(&o);
    /* The last of a repeated scalar wins; "=" may carry an empty value. */
    PARSE_OK("--workers", "2", "--workers", "3", "--name=");
    assert_int_equal(opts_num(o, "workers"), 3);
    assert_string_equal(opts_str(o, "name"), "");
    opts_destroy(&o);
}

static void test_flags_and_negation(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o;
    PARSE_OK("--verbose");
    assert_int_equal(opts_num(o, "verbose"), 1);
    opts_destroy(&o);
    PARSE_OK("--verbose", "--no-verbose");
    assert_int_equal(opts_num(o, "verbose"), 0);
    assert_int_equal(opts_given(o, "verbose"), 1);
    opts_destroy(&o);
    PARSE_OK("--verbose=yes");
    assert_int_equal(opts_num(o, "verbose"), 1);
    opts_destroy(&o);
    expect_usage_error("--verbose", "maybe", "--verbose=maybe", NULL);
    /* "--no-" only applies to flags. */
    expect_usage_error("--no-workers", NULL, "--no-workers", NULL);
}

static void test_repeatable_list(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o;
    PARSE_OK("--header", "A: 1", "--header=B: 2,3", "--header", "C");
    size_t n;
    char *const *l = opts_list(o, "header", &n);
    assert_int_equal(n, 3);
    assert_string_equal(l[0], "A: 1");
    assert_string_equal(l[1], "B: 2,3");
    assert_string_equal(l[2], "C");
    opts_destroy(&o);
}

static void test_unknown_option(void **state)
{
    (void)state;
    expect_usage_error("--bogus", NULL, "--bogus", NULL);
    expect_usage_error("--bogus", NULL, "--bogus=1", NULL);
    expect_usage_error("-x", NULL, "-x", NULL);
}

static void test_missing_value(void **state)
{
    (void)state;
    expect_usage_error("--name", NULL, "--name", NULL);
    expect_usage_error("--workers", "N", "--verbose", "--workers", NULL);
}

static void test_int_out_of_range_names_flag_and_range(void **state)
{
    (void)state;
    expect_usage_error("--workers", "1 to 64", "--workers", "0", NULL);
    expect_usage_error("--workers", "1 to 64", "--workers=65", NULL);
    expect_usage_error("--workers", "abc", "--workers=abc", NULL);
    expect_usage_error("--workers", "whole number", "--workers=2.5", NULL);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int64_t ms;
    } cases[] = {{"250ms", 250}, {"5s", 5000},    {"2m", 120000},
                 {"1500", 1500}, {"1h", 3600000}, {"1.5s", 1500}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status;
        char err[256];
        opts *o;
        PARSE_OK("--timeout", cases[i].v);
        assert_int_equal(opts_num(o, "timeout"), cases[i].ms);
        opts_destroy(&o);
    }
    expect_usage_error("--timeout", "5x", "--timeout=5x", NULL);
    expect_usage_error("--timeout", "range", "--timeout=0", NULL);
    expect_usage_error("--timeout", "range", "--timeout=2h", NULL);
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int64_t n;
    } cases[] = {{"64k", 65536},
                 {"1MiB", 1048576},
                 {"100", 100},
                 {"2m", 2097152},
                 {"1g", 1073741824}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status;
        char err[256];
        opts *o;
        PARSE_OK("--max-body", cases[i].v);
        assert_int_equal(opts_num(o, "max-body"), cases[i].n);
        opts_destroy(&o);
    }
    expect_usage_error("--max-body", "range", "--max-body=2g", NULL);
    expect_usage_error("--max-body", "12q", "--max-body=12q", NULL);
}

static void test_env_and_flag_precedence(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o;
    assert_int_equal(setenv("FANOUT_WORKERS", "16", 1), 0);
    assert_int_equal(setenv("FANOUT_MAX_BODY", "64k", 1), 0);
    assert_int_equal(setenv("FANOUT_VERBOSE", "true", 1), 0);
    PARSE_OK(NULL);
    assert_int_equal(opts_num(o, "workers"), 16);
    assert_int_equal(opts_num(o, "max-body"), 65536);
    assert_int_equal(opts_num(o, "verbose"), 1);
    assert_int_equal(opts_given(o, "workers"), 1);
    assert_string_equal(opts_origin(o, "workers"), "FANOUT_WORKERS");
    assert_string_equal(opts_origin(o, "max-body"), "FANOUT_MAX_BODY");
    opts_destroy(&o);
    PARSE_OK("--workers", "2", "--no-verbose");
    assert_int_equal(opts_num(o, "workers"), 2);
    assert_int_equal(opts_num(o, "verbose"), 0);
    assert_string_equal(opts_origin(o, "workers"), "--workers");
    opts_destroy(&o);
}

static void test_env_bad_value_names_variable(void **state)
{
    (void)state;
    assert_int_equal(setenv("FANOUT_WORKERS", "100", 1), 0);
    expect_usage_error("FANOUT_WORKERS", "1 to 64", NULL, NULL);
    assert_int_equal(setenv("FANOUT_WORKERS", "lots", 1), 0);
    expect_usage_error("FANOUT_WORKERS", "lots", NULL, NULL);
}

static void test_env_list_is_one_item_per_line(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o;
    assert_int_equal(setenv("FANOUT_HEADER", "A: 1,2\nB: 3", 1), 0);
    PARSE_OK(NULL);
    size_t n;
    char *const *l = opts_list(o, "header", &n);
    assert_int_equal(n, 2);
    assert_string_equal(l[0], "A: 1,2");
    assert_string_equal(l[1], "B: 3");
    opts_destroy(&o);
    /* Flags replace the environment's list rather than adding to it. */
    PARSE_OK("--header", "C: 4");
    l = opts_list(o, "header", &n);
    assert_int_equal(n, 1);
    assert_string_equal(l[0], "C: 4");
    opts_destroy(&o);
}

static void test_config_file_then_env_then_flags(void **state)
{
    (void)state;
    char path[32], origin[64];
    write_config(path, "{\"workers\": 10, \"name\": \"cfg\", \"verbose\": "
                       "true, \"timeout\": \"2s\", \"max-body\": 2048, "
                       "\"header\": [\"X: 1\", \"Y: 2\"]}");
    int status;
    char err[256];
    opts *o;
    PARSE_OK("--config", path);
    assert_int_equal(opts_num(o, "workers"), 10);
    assert_string_equal(opts_str(o, "name"), "cfg");
    assert_int_equal(opts_num(o, "verbose"), 1);
    assert_int_equal(opts_num(o, "timeout"), 2000);
    assert_int_equal(opts_num(o, "max-body"), 2048);
    size_t n;
    char *const *l = opts_list(o, "header", &n);
    assert_int_equal(n, 2);
    assert_string_equal(l[1], "Y: 2");
    snprintf(origin, sizeof origin, "%s: workers", path);
    assert_string_equal(opts_origin(o, "workers"), origin);
    assert_string_equal(opts_str(o, "config"), path);
    opts_destroy(&o);
    /* The environment beats the file ... */
    assert_int_equal(setenv("FANOUT_WORKERS", "12", 1), 0);
    assert_int_equal(setenv("FANOUT_HEADER", "Z: 9", 1), 0);
    char arg[64];
    snprintf(arg, sizeof arg, "--config=%s", path);
    PARSE_OK(arg);
    assert_int_equal(opts_num(o, "workers"), 12);
    assert_string_equal(opts_str(o, "name"), "cfg");
    l = opts_list(o, "header", &n);
    assert_int_equal(n, 1);
    assert_string_equal(l[0], "Z: 9");
    opts_destroy(&o);
    /* ... and flags beat both; FANOUT_CONFIG names the file too. */
    assert_int_equal(setenv("FANOUT_CONFIG", path, 1), 0);
    PARSE_OK("--workers", "3", "--name", "flag");
    assert_int_equal(opts_num(o, "workers"), 3);
    assert_string_equal(opts_str(o, "name"), "flag");
    assert_int_equal(opts_num(o, "timeout"), 2000);
    opts_destroy(&o);
    unlink(path);
}

static void expect_config_error(const char *json, const char *mention)
{
    char path[32];
    write_config(path, json);
    char arg[64];
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_usage_error(path, mention, arg, NULL);
    unlink(path);
}

static void test_config_errors_name_file_and_key(void **state)
{
    (void)state;
    expect_config_error("{\"colour\": \"red\"}", "colour");
    expect_config_error("{\"workers\": {\"n\": 1}}", "workers");
    expect_config_error("{\"workers\": \"many\"}", "workers");
    expect_config_error("{\"workers\": 99}", "workers");
    expect_config_error("{\"name\": [\"a\", \"b\"]}", "name");
    expect_config_error("{\"header\": [\"ok\", null]}", "header");
    expect_config_error("[1, 2]", "object");
    expect_config_error("{\"workers\": ", "line");
    expect_usage_error("/nonexistent/fo.json", NULL, "--config",
                       "/nonexistent/fo.json", NULL);
}

static void test_config_missing_file_says_why(void **state)
{
    (void)state;
    expect_usage_error("--config /nonexistent/fo.json: cannot open",
                       "No such file or directory", "--config",
                       "/nonexistent/fo.json", NULL);
}

static void test_config_syntax_error_names_line_and_column(void **state)
{
    (void)state;
    expect_config_error("{\"name\": \"x\",\n \"workers\": oops}",
                        "line 2, column ");
}

static void test_config_unknown_key_suggests_nearest(void **state)
{
    (void)state;
    expect_config_error("{\"wrokers\": 3}",
                        "unknown option 'wrokers' (did you mean 'workers'?)");
}

/* Runs parse with stderr sent to a file; returns what was written there
 * (at most cap - 1 bytes) and the status. */
static int parse_capturing_stderr(char *out, size_t cap, const char *arg)
{
    char path[] = "/tmp/fo_unit_stderr_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    int status;
    char err[256];
    opts *o = parse(&status, err, sizeof err, arg, (char *)NULL);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    opts_destroy(&o);
    ssize_t n = pread(fd, out, cap - 1, 0);
    close(fd);
    unlink(path);
    out[n > 0 ? n : 0] = '\0';
    return status;
}

static void test_env_misspelling_warns_with_nearest(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(setenv("FANOUT_WROKERS", "3", 1), 0);
    assert_int_equal(setenv("FANOUT_QQQQQQQQ", "1", 1), 0);
    assert_int_equal(parse_capturing_stderr(out, sizeof out, "--verbose"), 0);
    unsetenv("FANOUT_WROKERS");
    unsetenv("FANOUT_QQQQQQQQ");
    assert_contains(out, "warning: FANOUT_WROKERS is not an option of prog "
                         "(did you mean FANOUT_WORKERS?)\n");
    /* Nothing near: named, without a guess. */
    assert_contains(out, "warning: FANOUT_QQQQQQQQ is not an option of "
                         "prog\n");
    /* One line each. */
    size_t lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
}

static void test_env_options_and_family_names_do_not_warn(void **state)
{
    (void)state;
    char out[1024];
    /* Our own option, another program's option (a spawned worker inherits
     * the master's FANOUT_RATE), and names the tests and scripts use. */
    static const char *const quiet[] = {"FANOUT_WORKERS",
                                        "FANOUT_RATE",
                                        "FANOUT_MASTER",
                                        "FANOUT_BIN",
                                        "FANOUT_TIMEOUT_MULTIPLIER",
                                        "FANOUT_VERSION",
                                        "FANOUT_REQUIRE_CLUSTER",
                                        "FANOUT_COMPOSE_RATE",
                                        "FANOUT_FUZZ_TARGETS"};
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
        assert_int_equal(setenv(quiet[i], "2", 1), 0);
    int status = parse_capturing_stderr(out, sizeof out, "--verbose");
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
        unsetenv(quiet[i]);
    assert_int_equal(status, 0);
    assert_string_equal(out, "");
}

static void test_keys_write_creates_missing_directories(void **state)
{
    (void)state;
    char dir[] = "/tmp/fo_unit_keys_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], file[160];
    snprintf(path, sizeof path, "%s/a/b/master", dir);
    keys_pair kp;
    memset(&kp, 0, sizeof kp);
    memset(kp.public_key, 'a', KEYS_Z85_LEN);
    memset(kp.secret_key, 'b', KEYS_Z85_LEN);
    char err[256] = "";
    assert_fo(FO_OK, keys_write(path, &kp, err, sizeof err));
    struct stat st;
    snprintf(file, sizeof file, "%s/a/b", dir);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(file, sizeof file, "%s.key", path);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A second write refuses to overwrite the key. */
    assert_fo(FO_EIO, keys_write(path, &kp, err, sizeof err));
    assert_contains(err, "master.key");
    snprintf(file, sizeof file, "%s.key", path);
    unlink(file);
    snprintf(file, sizeof file, "%s.pub", path);
    unlink(file);
    snprintf(file, sizeof file, "%s/a/b", dir);
    rmdir(file);
    snprintf(file, sizeof file, "%s/a", dir);
    rmdir(file);
    rmdir(dir);
}

static void test_help_and_version_return_status_1(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o = parse(&status, err, sizeof err, "--help", (char *)NULL);
    assert_int_equal(status, 1);
    opts_destroy(&o);
    o = parse(&status, err, sizeof err, "--workers", "2", "-h", (char *)NULL);
    assert_int_equal(status, 1);
    opts_destroy(&o);
    o = parse(&status, err, sizeof err, "--version", (char *)NULL);
    assert_int_equal(status, 1);
    opts_destroy(&o);
}

static void test_positional_arguments(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o;
    PARSE_OK("in.jsonl", "--name", "x", "-", "out", "--", "--workers", "z");
    size_t n;
    char *const *p = opts_positional(o, &n);
    assert_int_equal(n, 5);
    assert_string_equal(p[0], "in.jsonl");
    assert_string_equal(p[1], "-");
    assert_string_equal(p[2], "out");
    assert_string_equal(p[3], "--workers");
    assert_string_equal(p[4], "z");
    assert_string_equal(opts_str(o, "name"), "x");
    assert_int_equal(opts_num(o, "workers"), 4);
    opts_destroy(&o);
}

/* After "--" every argument is positional, including "--help". */
static void test_help_after_double_dash_is_positional(void **state)
{
    (void)state;
    int status;
    char err[256];
    opts *o = parse(&status, err, sizeof err, "--", "--help", (char *)NULL);
    size_t n;
    char *const *p = opts_positional(o, &n);
    int got_positional = n == 1 && strcmp(p[0], "--help") == 0;
    opts_destroy(&o); /* before asserting, so a failure does not leak */
    assert_int_equal(status, 0);
    assert_true(got_positional);
}

/* Runs opts_parse over a small table and usage with stdout sent to a
 * file; returns what was printed (at most cap - 1 bytes) and the status
 * through *status. */
static void print_capturing_stdout(char *out, size_t cap, int *status,
                                   const char *a1, const char *a2)
{
    static const opt_def gen_defs[] = {
        {"out", OPT_STRING, NULL, 0, 0, "DIR", "results go here"},
        {"key", OPT_STRING, NULL, 0, 0, "FILE", "a key file"},
        {"level", OPT_STRING, "info", 0, 0, "LEVEL", "debug|info|warn"},
        {"rate", OPT_LIST, NULL, 0, 0, "N/UNIT", "rate; a-b \\ c [x]"},
        {"fast", OPT_FLAG, "true", 0, 1, NULL, "go fast"},
    };
    static const char gen_usage[] =
        "usage: prog [--out DIR] start\n"
        "       prog [--key FILE] stop [--rate N/UNIT]...\n"
        "\nStarts or stops things, fast. Second sentence.\n"
        ".dot at a line start\n";
    char path[] = "/tmp/fo_unit_stdout_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    char *argv[] = {(char *)"prog", (char *)a1, (char *)a2, NULL};
    char err[256] = "";
    opts *o =
        opts_parse(gen_defs, sizeof gen_defs / sizeof gen_defs[0], a2 ? 3 : 2,
                   argv, gen_usage, "prog 1.2.3", status, err, sizeof err);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    opts_destroy(&o);
    ssize_t n = pread(fd, out, cap - 1, 0);
    close(fd);
    unlink(path);
    out[n > 0 ? n : 0] = '\0';
}

#define ASSERT_HAS(hay, needle)                                                \
    do {                                                                       \
        if (!strstr((hay), (needle)))                                          \
            fail_msg("no '%s' in:\n%s", (needle), (hay));                      \
    } while (0)

/* --help-man: the table as a man page, roff-escaped. */
static void test_help_man_prints_the_table_as_roff(void **state)
{
    (void)state;
    char out[8192];
    int status;
    print_capturing_stdout(out, sizeof out, &status, "--help-man", NULL);
    assert_int_equal(status, 1);
    ASSERT_HAS(out, ".TH PROG 1 \"\" \"fanout 1.2.3\"");
    ASSERT_HAS(out, ".SH NAME\nprog \\- starts or stops things\n");
    ASSERT_HAS(out, ".B prog\n[\\-\\-out DIR] start\n.br\n.B prog\n");
    ASSERT_HAS(out, "Second sentence. .dot"); /* not a request */
    ASSERT_HAS(out, "\\fB\\-\\-out\\fR \\fIDIR\\fR\nResults go here.\n");
    ASSERT_HAS(out, "One of \\fBdebug\\fR, \\fBinfo\\fR, \\fBwarn\\fR.\n"
                    "Default: info.\n");
    ASSERT_HAS(out, "Rate; a\\-b \\e c [x].\nRepeatable.\n");
    ASSERT_HAS(out, "\\fB\\-\\-fast\\fR, \\fB\\-\\-no\\-fast\\fR\n"
                    "Go fast.\nDefault: on.\n");
    ASSERT_HAS(out, "Environment: \\fB\\%FANOUT_RATE\\fR (one value a line)");
    ASSERT_HAS(out, ".SH OPTIONS\n");
}

/* --help-completion: bash and zsh scripts from the same table. */
static void test_help_completion_bash_and_zsh(void **state)
{
    (void)state;
    char out[8192];
    int status;
    print_capturing_stdout(out, sizeof out, &status, "--help-completion",
                           "bash");
    assert_int_equal(status, 1);
    ASSERT_HAS(out, "_prog()\n");
    ASSERT_HAS(out, "        --out)\n            compopt -o filenames");
    ASSERT_HAS(out, "COMPREPLY=($(compgen -d -- \"$cur\"))");
    ASSERT_HAS(out, "        --key)\n");
    ASSERT_HAS(out, "--level)\n            COMPREPLY=($(compgen -W "
                    "'debug info warn'");
    ASSERT_HAS(out, "'--out --key --level --rate --fast --no-fast --help "
                    "--version'");
    ASSERT_HAS(out, "compgen -W 'start stop'");
    ASSERT_HAS(out, "complete -F _prog prog\n");

    print_capturing_stdout(out, sizeof out, &status, "--help-completion=zsh",
                           NULL);
    assert_int_equal(status, 1);
    ASSERT_HAS(out, "#compdef prog\n");
    ASSERT_HAS(out, "'--out=[results go here]:DIR:_files -/'");
    ASSERT_HAS(out, "'*--rate=[rate; a-b \\ c \\[x\\]]:N/UNIT: '");
    ASSERT_HAS(out, "'(--no-fast)--fast[go fast]'");
    ASSERT_HAS(out, "'--level=[debug|info|warn]:LEVEL:(debug info warn)'");
    ASSERT_HAS(out, "'1:command:(start stop)'");

    print_capturing_stdout(out, sizeof out, &status, "--help-completion",
                           "fish");
    assert_int_equal(status, 2);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_value_forms),
        T(test_flags_and_negation),
        T(test_repeatable_list),
        T(test_unknown_option),
        T(test_missing_value),
        T(test_int_out_of_range_names_flag_and_range),
        T(test_durations),
        T(test_sizes),
        T(test_env_and_flag_precedence),
        T(test_env_bad_value_names_variable),
        T(test_env_list_is_one_item_per_line),
        T(test_config_file_then_env_then_flags),
        T(test_config_errors_name_file_and_key),
        T(test_config_missing_file_says_why),
        T(test_config_syntax_error_names_line_and_column),
        T(test_config_unknown_key_suggests_nearest),
        T(test_env_misspelling_warns_with_nearest),
        T(test_env_options_and_family_names_do_not_warn),
        T(test_keys_write_creates_missing_directories),
        T(test_help_and_version_return_status_1),
        T(test_positional_arguments),
        T(test_help_after_double_dash_is_positional),
        T(test_help_man_prints_the_table_as_roff),
        T(test_help_completion_bash_and_zsh),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
