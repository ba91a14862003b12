/*
 * options.h - one table of options drives flags, environment, config file
 * and --help.
 *
 * Each program declares its options once (name, type, bounds, default,
 * help). Values are applied in order of precedence: the default, then the
 * JSON config file (--config, keys are option names), then the environment
 * (FANOUT_<NAME>, '-' becoming '_'), then the command line, so flags always
 * win. Every error names the option and where its value came from
 * ("--batch-size", "FANOUT_RATE", "job.json: rate"), because "invalid value"
 * alone sends a user hunting through three places.
 *
 * The same table, with the usage text, also makes the man page and the
 * shell completion the build installs (--help-man, --help-completion), so
 * they cannot drift from --help either.
 */
#ifndef FANOUT_OPTIONS_H
#define FANOUT_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    OPT_STRING,   /* any text */
    OPT_INT,      /* integer within [min, max] */
    OPT_FLAG,     /* boolean; "--name" sets it, "--no-name" clears it */
    OPT_DURATION, /* "250ms", "5s", "2m" or bare milliseconds */
    OPT_SIZE,     /* "1048576", "64k", "1MiB" */
    OPT_LIST,     /* repeatable text; each source replaces the last */
} opt_type;

typedef struct opt_def {
    const char *name;    /* long name without "--" */
    opt_type type;       /* how the value is parsed */
    const char *def;     /* default as text, or NULL for none */
    int64_t min, max;    /* bounds for INT, DURATION (ms) and SIZE */
    const char *metavar; /* placeholder in --help ("N/UNIT") */
    const char *help;    /* one line for --help */
} opt_def;

typedef struct opts opts;

/* Parses argv (argv[0] is the program) against defs. Returns a table the
 * caller frees with opts_destroy(), and sets *status: 0 on success, 1 when
 * --help, --version, --help-man (the table as a man page) or
 * --help-completion bash|zsh (as a completion script) was printed (exit
 * 0), 2 on a usage error whose
 * message (naming the option) is in err. Positional arguments are kept for
 * opts_positional(); the caller decides whether any are allowed. */
opts *opts_parse(const opt_def *defs, size_t ndefs, int argc, char **argv,
                 const char *usage, const char *version, int *status, char *err,
                 size_t errlen);
/* Frees *o and NULLs it; safe on NULL. */
void opts_destroy(opts **o);

/* The value of a STRING option, or NULL when unset and without default. */
const char *opts_str(const opts *o, const char *name);
/* The value of an INT, FLAG, DURATION (ms) or SIZE option. */
int64_t opts_num(const opts *o, const char *name);
/* The items of a LIST option; *n is set to their count. */
char *const *opts_list(const opts *o, const char *name, size_t *n);
/* 1 when the option was given by a config file, environment or flag. */
int opts_given(const opts *o, const char *name);
/* Where the value came from, for messages: "--rate", "FANOUT_RATE", ... */
const char *opts_origin(const opts *o, const char *name);
/* Positional arguments. */
char *const *opts_positional(const opts *o, size_t *n);

#endif
