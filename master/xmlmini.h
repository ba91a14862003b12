/*
 * xmlmini.h - just enough XML for Azure Queue Storage's responses.
 *
 * Get Messages and error bodies are flat documents of known elements, so a
 * full XML parser (and its entity expansion attacks) buys nothing here:
 * these calls find an element by name and decode its text. Split from
 * queue_azure.c so the driver holds the REST conversation only.
 */
#ifndef FANOUT_XMLMINI_H
#define FANOUT_XMLMINI_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

/* Finds the next element <name>...</name> in [s, end). Sets *v and *vl to
 * its raw content ("" for <name/>) and returns the position after it, or
 * NULL when there is none. Elements are never nested in themselves here. */
const char *xmlmini_elem(const char *s, const char *end, const char *name,
                         const char **v, size_t *vl);
/* Appends the text [s, s + n) to out with XML entities decoded; an unknown
 * entity stays as written. FO_ETOOBIG when out's cap is hit. */
FO_WUR fo_err xmlmini_text(fo_buf *out, const char *s, size_t n);
/* Copies element name's decoded text into a string of at most cap bytes:
 * returns it (caller frees), or NULL when absent or longer. */
char *xmlmini_string(const char *s, const char *end, const char *name,
                     size_t cap);

#endif
