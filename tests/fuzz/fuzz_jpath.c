/*
 * fuzz_jpath.c - the --keep path and --ok-when condition parsers, and
 * their evaluation against a JSON document, on arbitrary input.
 *
 * Input: a selector byte, then a path or condition text, a NUL, and a JSON
 * document. The contract: parsing either succeeds or fails with a reason;
 * a parsed path or condition is evaluated against the document (or none,
 * when it is not JSON) without crashing, and freeing twice is safe.
 */
#include "fmacros.h"
#include "jpath.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    const char *text = buf;
    size_t tlen = strlen(text);
    json_t *doc = NULL;
    if (tlen + 1 < size - 1)
        doc = json_loadb(buf + tlen + 1, size - 1 - tlen - 1, 0, NULL);
    char err[256] = "";
    if (data[0] & 1) {
        jpath_cond c;
        if (jpath_cond_parse(text, &c, err, sizeof err) == FO_OK) {
            (void)jpath_cond_eval(&c, doc);
            (void)jpath_cond_eval(&c, NULL);
        } else if (!err[0]) {
            abort();
        }
        jpath_cond_fini(&c);
        jpath_cond_fini(&c);
    } else {
        jpath p;
        if (jpath_parse(text, &p, err, sizeof err) == FO_OK) {
            (void)jpath_get(&p, doc);
        } else if (!err[0]) {
            abort();
        }
        jpath_fini(&p);
        jpath_fini(&p);
    }
    json_decref(doc);
    free(buf);
    return 0;
}
