/*
 * jpath.h - paths into a JSON document, and the --ok-when condition.
 *
 * A path is either a JSON Pointer (RFC 6901, "/a/b/0", with "~1" for '/'
 * and "~0" for '~') or a dotted path ("a.b.0", no escapes: a key holding
 * '.' needs the pointer form). A segment names an object member, or an
 * array element when the value reached so far is an array and the segment
 * is a decimal index without leading zeros. "" (the empty pointer) is the
 * whole document; a dotted path may not be empty or have empty segments.
 *
 * The condition language of --ok-when is one comparison:
 *
 *   COND  := PATH WS* OP WS* VALUE
 *   OP    := "==" | "!=" | "in"         ("in" needs a space before it)
 *   VALUE := LIT | "[" LIT ("," LIT)* "]"   (a list only after "in")
 *   LIT   := a JSON string ("ok"), or a bare word: the text up to the end,
 *            or up to ',' or ']' inside a list, spaces around it trimmed
 *
 * A quoted LIT matches only a JSON string equal to it. A bare word matches
 * a string with the same text, and also true, false or null when it is
 * that word, and any number equal to it when it reads as a number
 * ("200" matches 200, 200.0 and "200"). A path that is missing (or a body
 * that is not JSON) equals nothing: "==" and "in" are false, "!=" is true.
 *
 * Used by the master to check flags early (usage errors name the flag) and
 * by the worker to apply them. Parsers never print; err says what is wrong
 * and where.
 */
#ifndef FANOUT_JPATH_H
#define FANOUT_JPATH_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

/* A path's text is at most this long, and has at most this many segments. */
#define JPATH_MAX_BYTES 1024
#define JPATH_MAX_SEGMENTS 64
/* A job may keep at most this many paths (--keep). */
#define JPATH_MAX_KEEP 64
/* A condition's text is at most this long. */
#define JPATH_MAX_COND_BYTES 4096
/* An "in" list holds at most this many values. */
#define JPATH_MAX_VALUES 64

/* A parsed path. Visible only so it can be embedded. */
typedef struct jpath {
    char **seg; /* n unescaped segments, owned */
    size_t n;   /* their count (0: the whole document) */
    char *text; /* the path as written, owned */
} jpath;

typedef enum jpath_op {
    JPATH_EQ, /* == */
    JPATH_NE, /* != */
    JPATH_IN  /* in [...] */
} jpath_op;

/* One literal of a condition. */
typedef struct jpath_lit {
    char *text; /* its text, unquoted and unescaped, owned */
    int quoted; /* 1: a JSON string, matches only strings */
} jpath_lit;

/* A parsed condition. Visible only so it can be embedded. */
typedef struct jpath_cond {
    jpath path;      /* what is compared */
    jpath_op op;     /* how */
    jpath_lit *vals; /* nvals literals, owned (1 unless op is JPATH_IN) */
    size_t nvals;    /* their count */
    char *text;      /* the condition as written, owned */
} jpath_cond;

/* Parses text into *p (freed with jpath_fini). On error *p is empty and
 * err says why. Returns FO_OK or FO_EINVAL. */
FO_WUR fo_err jpath_parse(const char *text, jpath *p, char *err, size_t errlen);
/* Frees what *p owns and zeroes it; safe on a zeroed path and twice. */
void jpath_fini(jpath *p);
/* The value at p inside doc (borrowed from doc), or NULL when missing. */
json_t *jpath_get(const jpath *p, json_t *doc);

/* Parses an --ok-when condition into *c (freed with jpath_cond_fini). On
 * error *c is empty and err says why. Returns FO_OK or FO_EINVAL. */
FO_WUR fo_err jpath_cond_parse(const char *text, jpath_cond *c, char *err,
                               size_t errlen);
/* Frees what *c owns and zeroes it; safe on a zeroed condition and twice. */
void jpath_cond_fini(jpath_cond *c);
/* 1 when doc satisfies c, else 0. doc NULL means "not JSON": every path is
 * missing. */
int jpath_cond_eval(const jpath_cond *c, json_t *doc);

#endif
