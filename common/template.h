/*
 * template.h - request templates: "{field}" from the item, "${ENV}" from
 * the environment.
 *
 * A template is parsed once ("https://api/x/{id}?q={user.name}") into
 * literal and field segments, then rendered per item. Field paths may be
 * dotted to reach into nested objects. "{*}" stands for the whole item as
 * JSON. "{{" and "}}" are literal braces. How a value is inserted depends on
 * the mode:
 *  - URL mode percent-encodes it (RFC 3986 unreserved characters stay as
 *    they are), and where the value makes a path segment "." or ".." (alone
 *    or with the template's own text), its dots become "%2E", so an item can
 *    never climb the path ("/users/{id}/delete" with id ".." renders
 *    "/users/%2E%2E/delete"). Dot segments written in the template stay.
 *  - JSON mode reads the template as JSON text. A field inside a string
 *    literal ('{{"name":"{name}"}}') always becomes string content: strings
 *    JSON-escaped, other values as their JSON text escaped ({"a":1} becomes
 *    {\"a\":1}). A field outside strings gets strings JSON-escaped without
 *    quotes and other values as JSON text. A field right after a backslash
 *    inside a string is refused (FO_EINVAL).
 *  - RAW mode inserts strings as they are.
 *
 * Environment expansion ("${API_TOKEN}") is separate and happens on the
 * worker, so secrets never travel over the wire or into the master's logs.
 */
#ifndef FANOUT_TEMPLATE_H
#define FANOUT_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"

typedef enum {
    TEMPLATE_URL = 0,  /* percent-encode values */
    TEMPLATE_JSON = 1, /* JSON-escape string values, JSON text otherwise */
    TEMPLATE_RAW = 2,  /* strings as they are */
} template_mode;

typedef struct template template;

/* Parses src. Returns FO_OK and a template the caller frees with
 * template_destroy(), or FO_EINVAL with the reason and column in err. */
FO_WUR fo_err template_parse(const char *src, template **out, char *err,
                             size_t errlen);
/* Frees *t and NULLs it; safe on NULL. */
void template_destroy(template **t);
/* Number of field references (0: the template is a constant). */
size_t template_nfields(const template *t);
/* Renders t for item into out (appended). Returns FO_OK, FO_EMISSING with
 * the missing field's name in err, FO_EINVAL when a value cannot be
 * inserted (an object in a URL, a field after a backslash in a JSON
 * string), or FO_ETOOBIG when out's cap is hit. On an error out may hold
 * part of the rendering. */
FO_WUR fo_err template_render(const template *t, const json_t *item,
                              template_mode mode, fo_buf *out, char *err,
                              size_t errlen);

/* Expands ${NAME} from the environment into out. "$$" is a literal '$'.
 * Returns FO_OK, FO_EMISSING naming an unset variable in err, or FO_EINVAL
 * for an unclosed "${". */
FO_WUR fo_err template_expand_env(const char *src, fo_buf *out, char *err,
                                  size_t errlen);
/* Finds the next ${NAME} reference in src at or after *pos, skipping "$$"
 * as template_expand_env() does. Returns 1 with *name (pointing into src,
 * not NUL-terminated), *len and *pos moved past it, or 0 when there is no
 * further complete reference. */
int template_env_next(const char *src, size_t *pos, const char **name,
                      size_t *len);
/* Returns 1 when src contains a ${...} reference (its values are secret). */
int template_has_env(const char *src);

#endif
