/*
 * fuzz_jsonw.c - the copyable check and the string writer against jansson,
 * on arbitrary bytes.
 *
 * The contract (jsonw.h): whatever jsonw_copyable() accepts, jansson reads,
 * alone and embedded in a record line the way results.jsonl holds it (the
 * repair scan reads those lines with jansson's default flags); and every
 * string jsonw_str() writes reads back as a JSON string.
 */
#include "fmacros.h"
#include "jsonw.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const char *s = (const char *)data;
    size_t at, len;
    if (jsonw_copyable(s, size, &at, &len)) {
        if (at + len > size || len == 0)
            abort();
        jsonw line = {0};
        jsonw_lit(&line, "{\"id\":\"x\",\"response\":");
        jsonw_raw(&line, s + at, len);
        jsonw_lit(&line, "}");
        json_error_t e;
        json_t *o = json_loadb(line.p, line.len, 0, &e);
        if (!o)
            abort(); /* copyable, yet the repair scan would refuse it */
        json_decref(o);
        free(line.p);
    }
    jsonw w = {0};
    jsonw_str(&w, s, size);
    json_t *v = json_loadb(w.p, w.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!v || !json_is_string(v))
        abort();
    /* Valid UTF-8 comes back byte for byte. */
    if (jsonw_utf8_valid(s, size) && (json_string_length(v) != size ||
                                      memcmp(json_string_value(v), s, size)))
        abort();
    json_decref(v);
    free(w.p);
    return 0;
}
