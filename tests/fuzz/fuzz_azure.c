/*
 * fuzz_azure.c - what the master makes of an Azure Queue Storage response.
 *
 * The Get Messages body comes from the network: master/queue_azure.c reads
 * its XML with a small tag reader (parse_messages, static: reached by
 * including the file), decodes entities, and turns each message's text
 * into an item (queue_set_body: JSON, or base64 of it). The first input
 * byte picks the encoding mode and the item cap; the rest is the body.
 * Checked: at most max messages come back, each with an id and a receipt,
 * and exactly one of body / too_big / bad, a body within the cap.
 */
#include "fmacros.h"

#include "queue_azure.c" /* NOLINT(bugprone-suspicious-include) */

#include <stddef.h>
#include <stdint.h>

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_azure: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const modes[] = {"auto", "base64", "none"};
    az a;
    memset(&a, 0, sizeof a);
    snprintf(a.encoding, sizeof a.encoding, "%s", modes[data[0] % 3]);
    a.max_item_bytes = (size_t)16 << (data[0] / 3 % 8);
    fo_buf body;
    buf_init(&body, 1 << 20);
    if (buf_append(&body, (const char *)data + 1, size - 1) != FO_OK) {
        buf_fini(&body);
        return 0;
    }
    enum { MAX = 4 };
    queue_msg out[MAX];
    size_t n = 0;
    parse_messages(&a, &body, out, MAX, &n);
    if (n > MAX)
        fail("more messages than asked for");
    for (size_t i = 0; i < n; i++) {
        queue_msg *m = &out[i];
        if (!m->id || !*m->id || !m->receipt || !*m->receipt)
            fail("a message without an id or a receipt");
        int kinds = (m->body != NULL) + (m->too_big != 0) + (m->bad != NULL);
        if (kinds != 1)
            fail("not exactly one of body, too_big, bad");
        if (m->body && m->body[m->len] != '\0')
            fail("body is not NUL-terminated at its length");
        if (m->body && m->len > a.max_item_bytes)
            fail("body over the cap");
        queue_msg_fini(m);
    }
    buf_fini(&body);
    return 0;
}
