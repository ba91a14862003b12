/* options.c - table-driven flags, environment and config file; options.h */
#include "fmacros.h"
#include "options.h"
#include "util.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>

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

static void env_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "FANOUT_");
    for (; *name && n + 1 < cap; name++)
        out[n++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    out[n] = '\0';
}

static int load_config(opts *o, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "--config %s: line %d: %s", path, jerr.line,
                 jerr.text);
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
            snprintf(err, errlen, "%s: unknown option '%s'", path, key);
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
