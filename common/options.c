/* options.c - table-driven flags, environment and config file; options.h */
#include "fmacros.h"
#include "options.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <unistd.h>

extern char **environ;

typedef struct opt_value {
    int given;       /* set by a source other than the default */
    char origin[96]; /* where the value came from */
    char *str;       /* STRING value */
    int64_t num;     /* INT/FLAG/DURATION/SIZE value */
    char **list;     /* LIST items */
    size_t nlist;    /* LIST count */
    int list_src;    /* which source filled the list (replace on change) */
} opt_value;

struct opts {
    const opt_def *defs; /* the table */
    size_t n;            /* entries in defs */
    opt_value *vals;     /* one per def */
    char **pos;          /* positional arguments */
    size_t npos;         /* their count */
};

enum { SRC_DEFAULT = 0, SRC_CONFIG = 1, SRC_ENV = 2, SRC_ARGV = 3 };

static long find(const opts *o, const char *name, size_t len)
{
    for (size_t i = 0; i < o->n; i++)
        if (strlen(o->defs[i].name) == len &&
            strncmp(o->defs[i].name, name, len) == 0)
            return (long)i;
    return -1;
}

static size_t must_find(const opts *o, const char *name)
{
    long i = find(o, name, strlen(name));
    if (i < 0) {
        fprintf(stderr, "fanout: internal error: no option '%s'\n", name);
        abort();
    }
    return (size_t)i;
}

static void clear_list(opt_value *v)
{
    for (size_t i = 0; i < v->nlist; i++)
        free(v->list[i]);
    FO_FREE(&v->list);
    v->nlist = 0;
}

static int parse_bool(const char *s, int64_t *out)
{
    if (!strcasecmp(s, "1") || !strcasecmp(s, "true") ||
        !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
        *out = 1;
    else if (!strcasecmp(s, "0") || !strcasecmp(s, "false") ||
             !strcasecmp(s, "no") || !strcasecmp(s, "off"))
        *out = 0;
    else
        return -1;
    return 0;
}

/* Applies text to option i from source src. Returns 0 or -1 with err. */
static int apply(opts *o, size_t i, const char *text, int src,
                 const char *origin, char *err, size_t errlen)
{
    const opt_def *d = &o->defs[i];
    opt_value *v = &o->vals[i];
    int64_t num = 0;
    switch (d->type) {
    case OPT_STRING:
        FO_FREE(&v->str);
        v->str = xstrdup(text);
        break;
    case OPT_LIST:
        if (v->list_src != src)
            clear_list(v);
        v->list_src = src;
        v->list = xrealloc(v->list, (v->nlist + 1) * sizeof *v->list);
        v->list[v->nlist++] = xstrdup(text);
        break;
    case OPT_FLAG:
        if (parse_bool(text, &num) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)",
                     origin, text);
            return -1;
        }
        v->num = num;
        break;
    case OPT_INT:
    case OPT_DURATION:
    case OPT_SIZE: {
        int bad;
        const char *what;
        if (d->type == OPT_INT) {
            bad = util_parse_i64(text, INT64_MIN, INT64_MAX, &num);
            what = "a whole number";
        } else if (d->type == OPT_DURATION) {
            bad = util_parse_duration_ms(text, &num);
            what = "a duration (e.g. 500ms, 5s, 2m)";
        } else {
            bad = util_parse_size(text, &num);
            what = "a size (e.g. 65536, 64k, 1MiB)";
        }
        if (bad) {
            snprintf(err, errlen, "%s: '%s' is not %s", origin, text, what);
            return -1;
        }
        if (num < d->min || num > d->max) {
            snprintf(err, errlen,
                     "%s: %s is out of range (%" PRId64 " to %" PRId64 "%s)",
                     origin, text, d->min, d->max,
                     d->type == OPT_DURATION ? " ms" : "");
            return -1;
        }
        v->num = num;
        break;
    }
    }
    if (src != SRC_DEFAULT)
        v->given = 1;
    snprintf(v->origin, sizeof v->origin, "%s", origin);
    return 0;
}

/*
 * FANOUT_* variables that are not options of the program reading them and
 * yet are no mistake, so they never draw the "not an option" warning:
 *  - the options of the other fanout programs, because one environment
 *    often serves several (a master's is inherited by the workers it
 *    spawns; one env file or compose block may feed master and ctl), and
 *    the names DESIGN.md announces for round 2;
 *  - variables read by the build, the tests and the deploy scripts.
 * An entry ending in '*' matches a prefix. When a program gains an option,
 * add it here, or the workers a master spawns warn about it (no check
 * enforces this yet).
 */
static const char *const env_family[] = {
    /* fanout-master */
    "INPUT", "FOLLOW", "IDLE_GRACE", "URL", "OUT", "METHOD", "HEADER", "BODY",
    "KEY", "RATE", "BURST", "RATE_MARGIN", "ADAPTIVE", "MAX_IN_FLIGHT",
    "BATCH_SIZE", "MAX_ATTEMPTS", "MAX_THROTTLED", "BACKOFF_BASE",
    "BACKOFF_MAX", "TIMEOUT", "CONNECT_TIMEOUT", "MAX_RESPONSE_BYTES",
    "MAX_LINE_BYTES", "SPAWN_WORKERS", "WORKER_CONCURRENCY", "BIND",
    "CURVE_SECRET", "CURVE_ALLOW", "INSECURE", "LEASE", "HEARTBEAT",
    "DRAIN_TIMEOUT", "WINDOW", "REDRIVE", "METRICS", "READY_FILE", "PROGRESS",
    "LOG_LEVEL", "LOG_FORMAT", "CONFIG",
    /* fanout-worker and fanout-ctl */
    "MASTER", "CONCURRENCY", "ID", "ONCE", "CURVE_SERVER_KEY", "JSON",
    /* round 2 (DESIGN.md) */
    "CTL_ALLOW", "ALLOW_ENV", "HALT_AFTER", "ON_FINISH", "NOTIFY", "RATE_KEY",
    "KEY_RATE", "KEY_MAX_IN_FLIGHT", "KEEP", "DROP_RESPONSE", "BATCHES",
    "NO_WORKER_WARNING", "MAX_WORKER_CONCURRENCY", "HALT_ON_REPEAT",
    /* build, tests, deploy (not options) */
    "EXIT_STATUS", "SUMMARY", "BIN", "TIMEOUT_MULTIPLIER",
    "TEST_TIMEOUT_MULTIPLIER", "REQUIRE_CLUSTER", "VERSION", "WRAP", "IMAGE",
    "INPUT_DIR", "INPUT_FILE", "METRICS_PORT", "HEALTHCHECK_TIMEOUT",
    "SANITIZER", "WERROR", "TESTS", "WARNINGS", "FUZZ*", "COMPOSE_*",
    "CLUSTER_*"};

/* 1 when suffix (after "FANOUT_", up to '=' or the end) is in env_family. */
static int in_family(const char *suffix, size_t len)
{
    for (size_t i = 0; i < sizeof env_family / sizeof env_family[0]; i++) {
        const char *f = env_family[i];
        size_t fl = strlen(f);
        if (fl && f[fl - 1] == '*'
                ? len >= fl - 1 && !strncmp(suffix, f, fl - 1)
                : len == fl && !strncmp(suffix, f, fl))
            return 1;
    }
    return 0;
}

static void env_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "FANOUT_");
    for (; *name && n + 1 < cap; name++)
        out[n++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    out[n] = '\0';
}

/* Levenshtein distance with adjacent transpositions counted as one edit
 * (optimal string alignment), case-insensitive, '-' and '_' equal: the
 * misspellings people make in option and variable names ("RAET" for
 * "RATE" is one edit). Names longer than 63 bytes are never near. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            ca = ca == '_' ? '-' : ca;
            cb = cb == '_' ? '-' : cb;
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

/* The option nearest to name, or NULL when none is near enough to be a
 * plausible misspelling (about one edit in three characters). */
static const opt_def *nearest(const opts *o, const char *name)
{
    const opt_def *best = NULL;
    size_t bestd = SIZE_MAX;
    for (size_t i = 0; i < o->n; i++) {
        size_t d = edit_distance(name, o->defs[i].name);
        if (d < bestd) {
            bestd = d;
            best = &o->defs[i];
        }
    }
    if (!best)
        return NULL;
    size_t len =
        strlen(name) > strlen(best->name) ? strlen(name) : strlen(best->name);
    return bestd * 3 <= len + 3 ? best : NULL;
}

/* The program's name: the first word of its version string. */
static void program_name(const char *version, char *out, size_t cap)
{
    size_t n = strcspn(version, " ");
    snprintf(out, cap, "%.*s", (int)n, version);
}

/* Warns once for each FANOUT_* variable in the environment that is neither
 * an option of this program nor a known name of the fanout family (see
 * env_family): a misspelt FANOUT_RAET used to be ignored in silence, and
 * the job then ran at a rate nobody asked for. A warning, not an error,
 * so that an environment shared by several programs keeps working. */
static void warn_unknown_env(const opts *o, const char *prog)
{
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "FANOUT_", 7) != 0)
            continue;
        const char *suffix = *e + 7;
        size_t len = strcspn(suffix, "=");
        int known = in_family(suffix, len);
        char en[96];
        for (size_t i = 0; i < o->n && !known; i++) {
            env_name(o->defs[i].name, en, sizeof en);
            known = strlen(en) == len + 7 && !strncmp(en + 7, suffix, len);
        }
        if (known)
            continue;
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)(len < 80 ? len : 80), suffix);
        const opt_def *near = nearest(o, name);
        if (near)
            env_name(near->name, en, sizeof en);
        fprintf(stderr, "warning: FANOUT_%s is not an option of %s%s%s%s\n",
                name, prog, near ? " (did you mean " : "", near ? en : "",
                near ? "?)" : "");
    }
}

static int load_config(opts *o, const char *path, char *err, size_t errlen)
{
    /* Opened here rather than by json_load_file(), whose message for a
     * missing file came out as "line -1". */
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "--config %s: cannot open: %s", path,
                 strerror(errno));
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!root) {
        snprintf(err, errlen, "--config %s: line %d, column %d: %s", path,
                 jerr.line, jerr.column, jerr.text);
        return -1;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "--config %s: expected a JSON object", path);
        rc = -1;
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        char origin[96];
        snprintf(origin, sizeof origin, "%s: %s", path, key);
        long i = find(o, key, strlen(key));
        if (i < 0 || !strcmp(key, "config")) {
            const opt_def *near = i < 0 ? nearest(o, key) : NULL;
            snprintf(err, errlen, "%s: unknown option '%s'%s%s%s", path, key,
                     near ? " (did you mean '" : "", near ? near->name : "",
                     near ? "'?)" : "");
            rc = -1;
            goto out;
        }
        json_t *items = val;
        size_t count = 1;
        if (json_is_array(val)) {
            if (o->defs[i].type != OPT_LIST) {
                snprintf(err, errlen,
                         "%s: a list is only allowed for "
                         "repeatable options",
                         origin);
                rc = -1;
                goto out;
            }
            count = json_array_size(val);
        }
        for (size_t k = 0; k < count; k++) {
            json_t *it = json_is_array(val) ? json_array_get(items, k) : val;
            char numbuf[64];
            const char *text;
            if (json_is_string(it))
                text = json_string_value(it);
            else if (json_is_integer(it)) {
                snprintf(numbuf, sizeof numbuf, "%" JSON_INTEGER_FORMAT,
                         json_integer_value(it));
                text = numbuf;
            } else if (json_is_real(it)) {
                snprintf(numbuf, sizeof numbuf, "%.17g", json_real_value(it));
                text = numbuf;
            } else if (json_is_boolean(it))
                text = json_is_true(it) ? "true" : "false";
            else {
                snprintf(err, errlen,
                         "%s: expected a string, number or "
                         "boolean",
                         origin);
                rc = -1;
                goto out;
            }
            if (apply(o, (size_t)i, text, SRC_CONFIG, origin, err, errlen)) {
                rc = -1;
                goto out;
            }
        }
    }
out:
    json_decref(root);
    return rc;
}

static void print_help(const opts *o, const char *usage)
{
    printf("%s\nOptions (each also FANOUT_<NAME> in the environment, or a "
           "key in --config):\n",
           usage);
    for (size_t i = 0; i < o->n; i++) {
        const opt_def *d = &o->defs[i];
        char left[64];
        if (d->type == OPT_FLAG)
            snprintf(left, sizeof left, "--%s", d->name);
        else
            snprintf(left, sizeof left, "--%s %s", d->name,
                     d->metavar ? d->metavar : "VALUE");
        printf("  %-28s %s", left, d->help);
        if (d->def && d->type != OPT_FLAG)
            printf(" (default %s)", d->def);
        if (d->type == OPT_LIST)
            printf(" [repeatable]");
        printf("\n");
    }
    printf("  %-28s %s\n  %-28s %s\n", "--help", "show this help", "--version",
           "show the version");
}

/*
 * --help-man and --help-completion SHELL: the option table and the usage
 * text printed as a man page (roff, man(7) macros) and as a bash or zsh
 * completion script. The build runs every program with them (see
 * cmake/Generated.cmake), so the installed pages and completions come from
 * the same table as --help and cannot drift from it. Neither flag is
 * listed by --help: they are for the build, not for users.
 *
 * The usage text gives the rest, by convention: the lines before the first
 * blank line are the synopsis ("usage: PROG ...", continuation lines, and
 * further "PROG ..." lines for other forms); the paragraphs after it are
 * the description, whose first clause (up to '.', ',' or ':') is the
 * page's one-line NAME summary.
 */

#define SYN_MAX 8 /* synopsis forms kept from a usage text */

typedef struct usage_info {
    char prog[64];          /* program name, from the version string */
    const char *ver;        /* version number, after the name */
    char *syn[SYN_MAX];     /* synopsis forms, without the program name */
    size_t nsyn;            /* their count */
    const char *desc;       /* description: the usage text after "\n\n" */
    char *pos[SYN_MAX * 4]; /* positional words found in the synopsis */
    size_t npos;            /* their count */
    int pos_commands;       /* 1: positional words are commands (a-z) */
} usage_info;

static const opt_def *def_by_name(const opt_def *defs, size_t n,
                                  const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(defs[i].name) == len && !strncmp(defs[i].name, name, len))
            return &defs[i];
    return NULL;
}

/* Positional words of one synopsis form: tokens that are neither options
 * ("--x", "[--x]"), their values, nor "..." ("DIR/NAME", "status"). */
static void find_positional(usage_info *u, const char *form,
                            const opt_def *defs, size_t n)
{
    char *copy = xstrdup(form), *save = NULL;
    int value_next = 0;
    for (char *t = strtok_r(copy, " ", &save); t;
         t = strtok_r(NULL, " ", &save)) {
        if (value_next) {
            value_next = 0;
            continue;
        }
        const char *opt = t[0] == '[' ? t + 1 : t;
        if (!strncmp(opt, "--", 2)) {
            size_t len = strcspn(opt + 2, "]=");
            const opt_def *d = def_by_name(defs, n, opt + 2, len);
            value_next = d && d->type != OPT_FLAG && !strchr(opt, ']') &&
                         !strchr(opt, '=');
            continue;
        }
        if (t[0] == '[' || t[0] == '-' || t[0] == '.' || t[0] == '|' ||
            u->npos == sizeof u->pos / sizeof u->pos[0])
            continue;
        t[strcspn(t, "]|")] = '\0';
        int seen = 0;
        for (size_t i = 0; i < u->npos; i++)
            seen |= !strcmp(u->pos[i], t);
        if (!seen && *t)
            u->pos[u->npos++] = xstrdup(t);
    }
    free(copy);
}

/* 1 for a command word of a synopsis ("list-failed"): lowercase. */
static int is_command_word(const char *w)
{
    for (const char *c = w; *c; c++)
        if (!islower((unsigned char)*c) && *c != '-')
            return 0;
    return 1;
}

static void usage_parse(usage_info *u, const char *usage, const char *version,
                        const opt_def *defs, size_t n)
{
    memset(u, 0, sizeof *u);
    program_name(version, u->prog, sizeof u->prog);
    u->ver = version + strlen(u->prog);
    u->ver += strspn(u->ver, " ");
    const char *end = strstr(usage, "\n\n");
    u->desc = end ? end + 2 : "";
    if (!end)
        end = usage + strlen(usage);
    size_t plen = strlen(u->prog);
    for (const char *l = usage; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t len = nl ? (size_t)(nl - l) : (size_t)(end - l);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, l);
        l += len + (nl != NULL);
        char *t = line;
        if (!strncmp(t, "usage:", 6))
            t += 6;
        t += strspn(t, " \t");
        int new_form =
            !strncmp(t, u->prog, plen) && (!t[plen] || t[plen] == ' ');
        if (new_form) {
            t += plen;
            t += strspn(t, " ");
            if (u->nsyn < SYN_MAX)
                u->syn[u->nsyn++] = xstrdup(t);
        } else if (u->nsyn && *t) {
            /* A continuation line of the last form. */
            char *prev = u->syn[u->nsyn - 1];
            size_t pl = strlen(prev);
            prev = xrealloc(prev, pl + strlen(t) + 2);
            snprintf(prev + pl, strlen(t) + 2, " %s", t);
            u->syn[u->nsyn - 1] = prev;
        }
    }
    for (size_t i = 0; i < u->nsyn; i++)
        find_positional(u, u->syn[i], defs, n);
    /* Lowercase words are commands ("status", "drain"); the others are
     * placeholders for a value ("DIR/NAME", "WORKER"). With commands, the
     * placeholders (a command's argument) are left out of the list. */
    size_t ncmd = 0;
    for (size_t i = 0; i < u->npos; i++)
        ncmd += (size_t)is_command_word(u->pos[i]);
    u->pos_commands = ncmd > 0;
    if (!u->pos_commands)
        return;
    size_t k = 0;
    for (size_t i = 0; i < u->npos; i++) {
        if (is_command_word(u->pos[i]))
            u->pos[k++] = u->pos[i];
        else
            free(u->pos[i]);
    }
    u->npos = k;
}

static void usage_fini(usage_info *u)
{
    for (size_t i = 0; i < u->nsyn; i++)
        free(u->syn[i]);
    for (size_t i = 0; i < u->npos; i++)
        free(u->pos[i]);
}

/* Writes len bytes of s for roff: backslashes and hyphens escaped, a
 * control character at the start defused, each newline as a space (the
 * usage text's line breaks are for an 80-column terminal, not the page). */
static void roff_text(const char *s, size_t len)
{
    if (len && (s[0] == '.' || s[0] == '\''))
        fputs("\\&", stdout);
    for (size_t i = 0; i < len && s[i]; i++) {
        if (s[i] == '\\')
            fputs("\\e", stdout);
        else if (s[i] == '-')
            fputs("\\-", stdout);
        else
            putchar(s[i] == '\n' ? ' ' : s[i]);
    }
}

static void roff(const char *s)
{
    roff_text(s, strlen(s));
}

/* The enumerated values of an option whose help is "a|b|c", or 0. */
static int enum_values(const opt_def *d, char *out, size_t cap)
{
    const char *h = d->help;
    if (!strchr(h, '|') || strlen(h) >= cap)
        return 0;
    for (const char *c = h; *c; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) &&
            *c != '|' && *c != '-')
            return 0;
    snprintf(out, cap, "%s", h);
    for (char *c = out; *c; c++)
        if (*c == '|')
            *c = ' ';
    return 1;
}

/* 'f' for a file, 'd' for a directory, 0 for anything else. */
static int value_kind(const opt_def *d)
{
    const char *m = d->metavar ? d->metavar : "";
    if (!strcmp(m, "FILE") || !strcmp(m, "SOURCE"))
        return 'f';
    if (!strcmp(m, "DIR"))
        return 'd';
    return 0;
}

static void print_man(const opt_def *defs, size_t n, const char *usage,
                      const char *version)
{
    usage_info u;
    usage_parse(&u, usage, version, defs, n);
    printf(".\\\" Generated by \"%s --help-man\" from its option table; "
           "do not edit.\n.TH ",
           u.prog);
    for (const char *c = u.prog; *c; c++)
        if (*c == '-')
            fputs("\\-", stdout);
        else
            putchar(toupper((unsigned char)*c));
    printf(" 1 \"\" \"fanout %s\" \"fanout manual\"\n.SH NAME\n", u.ver);
    roff(u.prog);
    fputs(" \\- ", stdout);
    size_t wl = strcspn(u.desc, ".,:");
    if (wl) {
        putchar(tolower((unsigned char)u.desc[0]));
        roff_text(u.desc + 1, wl - 1);
    }
    fputs("\n.SH SYNOPSIS\n", stdout);
    for (size_t i = 0; i < u.nsyn; i++) {
        printf("%s.B ", i ? ".br\n" : "");
        roff(u.prog);
        putchar('\n');
        if (*u.syn[i]) {
            roff(u.syn[i]);
            putchar('\n');
        }
    }
    fputs(".SH DESCRIPTION\n", stdout);
    for (const char *p = u.desc; *p;) {
        const char *par = strstr(p, "\n\n");
        size_t len = par ? (size_t)(par - p) : strlen(p);
        while (len && p[len - 1] == '\n')
            len--;
        roff_text(p, len);
        putchar('\n');
        if (!par)
            break;
        p = par + 2;
        if (*p)
            fputs(".PP\n", stdout);
    }
    fputs(".SH OPTIONS\n", stdout);
    int has_config = def_by_name(defs, n, "config", 6) != NULL;
    int has_flag = 0;
    for (size_t i = 0; i < n; i++)
        has_flag |= defs[i].type == OPT_FLAG;
    if (n) {
        fputs("Every option can also be set in the environment as "
              "\\fBFANOUT_\\fINAME\\fR\n(upper case, '\\-' becoming '_')",
              stdout);
        if (has_config)
            fputs(", or as a key of the \\fB\\-\\-config\\fR file;\n"
                  "flags override the environment, which overrides the file",
                  stdout);
        fputs(".\n", stdout);
    }
    if (has_flag)
        fputs("A flag \\fB\\-\\-\\fIname\\fR can be turned off with "
              "\\fB\\-\\-no\\-\\fIname\\fR.\n",
              stdout);
    for (size_t i = 0; i < n; i++) {
        const opt_def *d = &defs[i];
        fputs(".TP\n\\fB\\-\\-", stdout);
        roff(d->name);
        fputs("\\fR", stdout);
        if (d->type == OPT_FLAG) {
            fputs(", \\fB\\-\\-no\\-", stdout);
            roff(d->name);
            fputs("\\fR", stdout);
        } else {
            fputs(" \\fI", stdout);
            roff(d->metavar ? d->metavar : "VALUE");
            fputs("\\fR", stdout);
        }
        putchar('\n');
        char words[256];
        if (d->type != OPT_FLAG && enum_values(d, words, sizeof words)) {
            fputs("One of", stdout);
            for (char *w = words, *sp; *w; w = sp + !!*sp) {
                sp = w + strcspn(w, " ");
                fputs(w == words ? " \\fB" : ", \\fB", stdout);
                roff_text(w, (size_t)(sp - w));
                fputs("\\fR", stdout);
            }
        } else {
            putchar(toupper((unsigned char)d->help[0]));
            roff(d->help + 1);
        }
        fputs(".\n", stdout);
        if (d->def && (d->type != OPT_FLAG || !strcmp(d->def, "true"))) {
            fputs("Default: ", stdout);
            roff(d->type == OPT_FLAG ? "on" : d->def);
            fputs(".\n", stdout);
        }
        if (d->type == OPT_LIST)
            fputs("Repeatable.\n", stdout);
        char en[96];
        env_name(d->name, en, sizeof en);
        fputs("Environment: \\fB\\%", stdout);
        roff(en);
        fputs("\\fR", stdout);
        if (d->type == OPT_LIST)
            fputs(" (one value a line)", stdout);
        fputs(".\n", stdout);
    }
    fputs(".TP\n\\fB\\-\\-help\\fR, \\fB\\-h\\fR\nShow the options and exit.\n"
          ".TP\n\\fB\\-\\-version\\fR\nShow the version and exit.\n",
          stdout);
    usage_fini(&u);
}

/* A word list for bash's compgen or zsh's (...) action: "a b c". */
static void print_words(char *const *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i ? " " : "", w[i]);
}

static void print_bash(const opt_def *defs, size_t n, const usage_info *u)
{
    char fn[80];
    snprintf(fn, sizeof fn, "_%s", u->prog);
    for (char *c = fn; *c; c++)
        if (*c == '-')
            *c = '_';
    printf("# bash completion for %s; generated by \"%s --help-completion "
           "bash\"\n# from its option table. Do not edit.\n%s()\n{\n"
           "    local cur=${COMP_WORDS[COMP_CWORD]}\n"
           "    local prev=${COMP_WORDS[COMP_CWORD-1]}\n"
           "    case $prev in\n",
           u->prog, u->prog, fn);
    for (int kind = 'd'; kind; kind = kind == 'd' ? 'f' : 0) {
        int any = 0;
        for (size_t i = 0; i < n; i++)
            if (defs[i].type != OPT_FLAG && value_kind(&defs[i]) == kind)
                printf("%s--%s", any++ ? "|" : "        ", defs[i].name);
        if (any)
            printf(")\n            compopt -o filenames 2>/dev/null\n"
                   "            COMPREPLY=($(compgen -%c -- \"$cur\"))\n"
                   "            return ;;\n",
                   kind);
    }
    for (size_t i = 0; i < n; i++) {
        char words[256];
        if (defs[i].type != OPT_FLAG &&
            enum_values(&defs[i], words, sizeof words))
            printf("        --%s)\n            COMPREPLY=($(compgen -W '%s' "
                   "-- \"$cur\"))\n            return ;;\n",
                   defs[i].name, words);
    }
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        char words[256];
        if (defs[i].type != OPT_FLAG && !value_kind(&defs[i]) &&
            !enum_values(&defs[i], words, sizeof words))
            printf("%s--%s", any++ ? "|" : "        ", defs[i].name);
    }
    if (any)
        printf(")\n            return ;; # a value no list can offer\n");
    printf("    esac\n    if [[ $cur == -* ]]; then\n"
           "        COMPREPLY=($(compgen -W '");
    for (size_t i = 0; i < n; i++) {
        printf("--%s ", defs[i].name);
        if (defs[i].type == OPT_FLAG)
            printf("--no-%s ", defs[i].name);
    }
    printf("--help --version' -- \"$cur\"))\n        return\n    fi\n");
    if (u->pos_commands) {
        printf("    COMPREPLY=($(compgen -W '");
        print_words(u->pos, u->npos);
        printf("' -- \"$cur\"))\n");
    } else if (u->npos) {
        printf("    compopt -o filenames 2>/dev/null\n"
               "    COMPREPLY=($(compgen -f -- \"$cur\"))\n");
    }
    printf("}\ncomplete -F %s %s\n", fn, u->prog);
}

/* Text inside a single-quoted zsh word, with the _arguments specials
 * quoted: ']' and '[' in an explanation, ':' in a message. */
static void zsh_quoted(const char *s, const char *special)
{
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else {
            if (strchr(special, *s))
                putchar('\\');
            putchar(*s);
        }
    }
}

static void print_zsh(const opt_def *defs, size_t n, const usage_info *u)
{
    printf("#compdef %s\n# zsh completion for %s; generated by \"%s "
           "--help-completion zsh\"\n# from its option table. Do not edit.\n"
           "_arguments \\\n",
           u->prog, u->prog, u->prog);
    for (size_t i = 0; i < n; i++) {
        const opt_def *d = &defs[i];
        if (d->type == OPT_FLAG) {
            printf("  '(--no-%s)--%s[", d->name, d->name);
            zsh_quoted(d->help, "[]");
            printf("]' \\\n  '(--%s)--no-%s[turn off --%s]' \\\n", d->name,
                   d->name, d->name);
            continue;
        }
        printf("  '%s--%s=[", d->type == OPT_LIST ? "*" : "", d->name);
        zsh_quoted(d->help, "[]");
        fputs("]:", stdout);
        zsh_quoted(d->metavar ? d->metavar : "VALUE", ":");
        char words[256];
        if (value_kind(d) == 'f')
            fputs(":_files", stdout);
        else if (value_kind(d) == 'd')
            fputs(":_files -/", stdout);
        else if (enum_values(d, words, sizeof words))
            printf(":(%s)", words);
        else
            fputs(": ", stdout);
        fputs("' \\\n", stdout);
    }
    if (u->pos_commands) {
        fputs("  '1:command:(", stdout);
        print_words(u->pos, u->npos);
        fputs(")' \\\n", stdout);
    } else if (u->npos) {
        fputs("  '1:", stdout);
        zsh_quoted(u->pos[0], ":");
        fputs(":_files' \\\n", stdout);
    }
    fputs("  '(- *)'{--help,-h}'[show the options]' \\\n"
          "  '(- *)--version[show the version]'\n",
          stdout);
}

/* --help-completion SHELL. Returns 0, or -1 for an unknown shell. */
static int print_completion(const opt_def *defs, size_t n, const char *usage,
                            const char *version, const char *shell)
{
    if (strcmp(shell, "bash") != 0 && strcmp(shell, "zsh") != 0)
        return -1;
    usage_info u;
    usage_parse(&u, usage, version, defs, n);
    if (!strcmp(shell, "bash"))
        print_bash(defs, n, &u);
    else
        print_zsh(defs, n, &u);
    usage_fini(&u);
    return 0;
}

opts *opts_parse(const opt_def *defs, size_t ndefs, int argc, char **argv,
                 const char *usage, const char *version, int *status, char *err,
                 size_t errlen)
{
    opts *o = xcalloc(1, sizeof *o);
    o->defs = defs;
    o->n = ndefs;
    o->vals = xcalloc(ndefs, sizeof *o->vals);
    *status = 2;
    for (size_t i = 0; i < ndefs; i++)
        if (defs[i].def &&
            apply(o, i, defs[i].def, SRC_DEFAULT, "default", err, errlen))
            goto fail;

    /* First pass over argv: syntax, --help, and --config (which must be
     * applied before the environment and the other flags). */
    const char *config = getenv("FANOUT_CONFIG");
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--"))
            break; /* the rest is positional */
        if (!strncmp(arg, "--", 2) && !strchr(arg, '=') &&
            strcmp(arg, "--config") != 0) {
            /* Skip an option's value, so "--name --help" sets name. */
            long i = find(o, arg + 2, strlen(arg + 2));
            if (i >= 0 && defs[i].type != OPT_FLAG && a + 1 < argc) {
                a++;
                continue;
            }
        }
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            print_help(o, usage);
            *status = 1;
            return o;
        }
        if (!strcmp(arg, "--help-man")) {
            print_man(defs, ndefs, usage, version);
            *status = 1;
            return o;
        }
        if (!strncmp(arg, "--help-completion", 17) &&
            (arg[17] == '=' || !arg[17])) {
            const char *shell = arg[17] == '=' ? arg + 18
                                : a + 1 < argc ? argv[a + 1]
                                               : "";
            if (print_completion(defs, ndefs, usage, version, shell)) {
                snprintf(err, errlen,
                         "--help-completion: '%s' is not bash or zsh", shell);
                goto fail;
            }
            *status = 1;
            return o;
        }
        if (!strcmp(arg, "--version")) {
            printf("%s\n", version);
            *status = 1;
            return o;
        }
        if (!strncmp(arg, "--config", 8) && (arg[8] == '=' || !arg[8])) {
            if (arg[8] == '=')
                config = arg + 9;
            else if (a + 1 < argc)
                config = argv[++a];
            else {
                snprintf(err, errlen, "--config: needs a value");
                goto fail;
            }
        }
    }
    char prog[64];
    program_name(version, prog, sizeof prog);
    warn_unknown_env(o, prog);
    if (config && find(o, "config", 6) >= 0) {
        if (load_config(o, config, err, errlen))
            goto fail;
        size_t ci = must_find(o, "config");
        if (apply(o, ci, config, SRC_ARGV, "--config", err, errlen))
            goto fail;
    }
    for (size_t i = 0; i < ndefs; i++) {
        char en[96];
        env_name(defs[i].name, en, sizeof en);
        const char *ev = getenv(en);
        if (!ev || !strcmp(defs[i].name, "config"))
            continue;
        if (defs[i].type == OPT_LIST) {
            /* One item per line, so header values may contain commas. */
            char *copy = xstrdup(ev), *save = NULL;
            for (char *tok = strtok_r(copy, "\n", &save); tok;
                 tok = strtok_r(NULL, "\n", &save))
                if (apply(o, i, tok, SRC_ENV, en, err, errlen)) {
                    free(copy);
                    goto fail;
                }
            free(copy);
        } else if (apply(o, i, ev, SRC_ENV, en, err, errlen))
            goto fail;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (arg[0] != '-' || !strcmp(arg, "-")) {
            o->pos = xrealloc(o->pos, (o->npos + 1) * sizeof *o->pos);
            o->pos[o->npos++] = xstrdup(arg);
            continue;
        }
        if (!strcmp(arg, "--")) {
            for (a++; a < argc; a++) {
                o->pos = xrealloc(o->pos, (o->npos + 1) * sizeof *o->pos);
                o->pos[o->npos++] = xstrdup(argv[a]);
            }
            break;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
            goto fail;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        long i = find(o, name, nlen);
        int negate = 0;
        if (i < 0 && nlen > 3 && !strncmp(name, "no-", 3)) {
            i = find(o, name + 3, nlen - 3);
            negate = i >= 0 && defs[i].type == OPT_FLAG;
            if (!negate)
                i = -1;
        }
        if (i < 0) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)",
                     (int)nlen, name);
            goto fail;
        }
        char origin[96];
        snprintf(origin, sizeof origin, "--%s", defs[i].name);
        if (negate && eq) {
            snprintf(err, errlen, "--no-%s takes no value", defs[i].name);
            goto fail;
        }
        const char *val;
        if (defs[i].type == OPT_FLAG && !eq)
            val = negate ? "false" : "true";
        else if (eq)
            val = eq + 1;
        else if (a + 1 < argc)
            val = argv[++a];
        else {
            snprintf(err, errlen, "%s: needs a value (%s)", origin,
                     defs[i].metavar ? defs[i].metavar : "VALUE");
            goto fail;
        }
        if (!strcmp(defs[i].name, "config"))
            continue; /* applied above */
        if (apply(o, (size_t)i, val, SRC_ARGV, origin, err, errlen))
            goto fail;
    }
    *status = 0;
    return o;
fail:
    *status = 2;
    return o;
}

void opts_destroy(opts **op)
{
    opts *o = *op;
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->vals[i].str);
        clear_list(&o->vals[i]);
    }
    free(o->vals);
    for (size_t i = 0; i < o->npos; i++)
        free(o->pos[i]);
    free(o->pos);
    FO_FREE(op);
}

const char *opts_str(const opts *o, const char *name)
{
    return o->vals[must_find(o, name)].str;
}

int64_t opts_num(const opts *o, const char *name)
{
    return o->vals[must_find(o, name)].num;
}

char *const *opts_list(const opts *o, const char *name, size_t *n)
{
    const opt_value *v = &o->vals[must_find(o, name)];
    *n = v->nlist;
    return v->list;
}

int opts_given(const opts *o, const char *name)
{
    return o->vals[must_find(o, name)].given;
}

const char *opts_origin(const opts *o, const char *name)
{
    size_t i = must_find(o, name);
    static char buf[96];
    if (!o->vals[i].given) {
        snprintf(buf, sizeof buf, "--%s", o->defs[i].name);
        return buf;
    }
    return o->vals[i].origin;
}

char *const *opts_positional(const opts *o, size_t *n)
{
    *n = o->npos;
    return o->pos;
}
