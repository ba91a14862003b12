/*
 * fuzz_jsonl_template.c - the master's input path: the capped JSONL reader,
 * jansson on each line, and the URL and body templates.
 *
 * Input layout:
 *   byte 0      the reader's max_line (1..200), small so that the overlong
 *               line path runs often
 *   byte 1      seeds the sizes of the pieces the input arrives in
 *   line 1      a URL template (parsed with template_parse)
 *   line 2      a body template
 *   the rest    JSONL items
 * The items go through a non-blocking pipe in small pieces, so the reader
 * sees partial lines, FO_EAGAIN and lines split across reads, as it does
 * when the master reads stdin. Besides crashes, the reader's promises are
 * checked against the bytes written: line numbers and offsets follow each
 * other, a stored line is exactly the bytes of the source, never longer than
 * max_line, and an overlong line is reported with its true length. An
 * item's "id", when a string, is also put where an attacker would aim it: a
 * URL path segment must not become "." or "..", and a quoted JSON slot must
 * give valid JSON holding exactly the value.
 */
#include "fmacros.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "jsonl.h"
#include "template.h"
#include "util.h"

#define FIRST_LINE 3
#define START_OFFSET 7

static void fail(const char *what, int64_t line)
{
    fprintf(stderr, "fuzz_jsonl_template: line %lld: %s\n", (long long)line,
            what);
    abort();
}

/* Takes the next line of [*p, end) as a NUL-terminated heap string. */
static char *take_line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = xstrndup((const char *)*p, n);
    *p += nl ? n + 1 : n;
    return s;
}

typedef struct checker {
    const uint8_t *src; /* all the JSONL bytes */
    size_t len;         /* their count */
    size_t max_line;    /* the reader's cap */
    int64_t line;       /* expected next line number */
    int64_t off;        /* expected next offset (relative to src) */
    template *url_t;    /* parsed URL template, or NULL */
    template *body_t;   /* parsed body template, or NULL */
} checker;

static void render_all(checker *c, const json_t *obj)
{
    static const template_mode modes[] = {TEMPLATE_URL, TEMPLATE_JSON,
                                          TEMPLATE_RAW};
    template *ts[2] = {c->url_t, c->body_t};
    for (int t = 0; t < 2; t++) {
        if (!ts[t])
            continue;
        for (int k = 0; k < 3; k++) {
            fo_buf out;
            char err[300] = "";
            /* Small caps make FO_ETOOBIG common. */
            buf_init(&out, k == 0 ? 64 : 4096);
            fo_err rc =
                template_render(ts[t], obj, modes[k], &out, err, sizeof err);
            if (rc != FO_OK && rc != FO_EMISSING && rc != FO_EINVAL &&
                rc != FO_ETOOBIG)
                fail("template_render returned an undocumented code", 0);
            if (rc != FO_OK && err[0] == '\0' && rc != FO_EINVAL)
                fail("template_render failed without a reason", 0);
            if (out.len > out.max || (out.data && strlen(out.data) > out.len))
                fail("template_render overran its buffer", 0);
            buf_fini(&out);
        }
    }
}

/* Renders one fixed template for obj into a heap string; NULL on error. */
static char *render_fixed(const char *src, const json_t *obj,
                          template_mode mode)
{
    template *t = NULL;
    char err[300];
    if (template_parse(src, &t, err, sizeof err) != FO_OK)
        fail("a fixed template did not parse", 0);
    fo_buf out;
    buf_init(&out, 1 << 20);
    fo_err rc = template_render(t, obj, mode, &out, err, sizeof err);
    template_destroy(&t);
    if (rc != FO_OK) {
        buf_fini(&out);
        return NULL;
    }
    return buf_take(&out);
}

/* The two rules that keep a value from changing the request's shape. */
static void check_shape(const json_t *obj)
{
    const json_t *id = json_object_get(obj, "id");
    if (!json_is_string(id))
        return;
    char *url = render_fixed("http://h/a/{id}/b?q={id}", obj, TEMPLATE_URL);
    if (url) {
        const char *seg = url + strlen("http://h/a/");
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : 0;
        if (!end || strncmp(url, "http://h/a/", 11) != 0 ||
            strncmp(end, "/b?q=", 5) != 0 || memchr(seg, '?', n))
            fail("a URL value changed the URL's structure", 0);
        if ((n == 1 && seg[0] == '.') || (n == 2 && !memcmp(seg, "..", 2)))
            fail("a URL value made a dot segment", 0);
        free(url);
    }
    char *body =
        render_fixed("{{\"v\":\"<{id}>\",\"k\":1}}", obj, TEMPLATE_JSON);
    if (!body)
        fail("a string in a quoted JSON slot did not render", 0);
    json_error_t jerr;
    json_t *doc = json_loads(body, JSON_ALLOW_NUL, &jerr);
    if (!doc || json_object_size(doc) != 2)
        fail("a quoted JSON slot broke out of its string", 0);
    const json_t *v = json_object_get(doc, "v");
    size_t idlen = json_string_length(id);
    if (!json_is_string(v) || json_string_length(v) != idlen + 2 ||
        memcmp(json_string_value(v) + 1, json_string_value(id), idlen) != 0)
        fail("a quoted JSON slot does not hold the value", 0);
    json_decref(doc);
    free(body);
}

static void check_line(checker *c, fo_err rc, const jsonl_line *ln)
{
    int64_t l = ln->line_no;
    if (ln->line_no != c->line)
        fail("line numbers are not consecutive", l);
    if (ln->offset != START_OFFSET + c->off)
        fail("the line does not start where the last one ended", l);
    size_t at = (size_t)c->off;
    const uint8_t *nl = memchr(c->src + at, '\n', c->len - at);
    size_t real = nl ? (size_t)(nl - (c->src + at)) : c->len - at;
    int64_t end = START_OFFSET + (int64_t)(at + real + (nl ? 1 : 0));
    if (ln->end_offset != end)
        fail("end_offset is not just past the newline", l);
    if (rc == FO_OK) {
        if (ln->len != real || ln->len > c->max_line)
            fail("a stored line has the wrong length", l);
        if (ln->len && memcmp(ln->data, c->src + at, ln->len) != 0)
            fail("a stored line differs from the source bytes", l);
        json_error_t jerr;
        json_t *obj = json_loadb(ln->data, ln->len, 0, &jerr);
        if (obj && json_is_object(obj)) {
            render_all(c, obj);
            check_shape(obj);
        }
        json_decref(obj);
    } else {
        if (real <= c->max_line)
            fail("a line within the cap was reported too long", l);
        if (ln->len != real)
            fail("an overlong line's length is wrong", l);
    }
    c->line++;
    c->off = ln->end_offset - START_OFFSET;
}

/* Drains the reader until it would block or the input ends. */
static int drain(checker *c, jsonl *r)
{
    for (;;) {
        jsonl_line ln;
        fo_err rc = jsonl_next(r, &ln);
        if (rc == FO_EAGAIN)
            return 0;
        if (rc == FO_EEOF)
            return 1;
        if (rc == FO_EIO)
            fail("FO_EIO from a pipe", c->line);
        if (rc != FO_OK && rc != FO_ETOOBIG)
            fail("jsonl_next returned an undocumented code", c->line);
        check_line(c, rc, &ln);
    }
}

static void exercise_template(const char *src)
{
    template *t = NULL;
    char err[300] = "";
    fo_err rc = template_parse(src, &t, err, sizeof err);
    if (rc == FO_OK) {
        (void)template_nfields(t);
        template_destroy(&t);
    } else if (rc != FO_EINVAL || t != NULL || err[0] == '\0') {
        fail("template_parse broke its contract", 0);
    }
    template_destroy(&t); /* safe when already NULL */
    fo_buf out;
    buf_init(&out, 256);
    (void)template_has_env(src);
    fo_err e = template_expand_env(src, &out, err, sizeof err);
    if (e != FO_OK && e != FO_EINVAL && e != FO_EMISSING && e != FO_ETOOBIG)
        fail("template_expand_env returned an undocumented code", 0);
    buf_fini(&out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("FUZZ_TOKEN", "s3cr3t/value with spaces", 1);
    setenv("A", "", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    checker c;
    memset(&c, 0, sizeof c);
    c.max_line = 1 + data[0] % 200;
    uint32_t seed = data[1] * 2654435761u + 1;
    const uint8_t *p = data + 2, *end = data + size;
    char *url_src = take_line(&p, end);
    char *body_src = take_line(&p, end);
    exercise_template(url_src);
    exercise_template(body_src);
    char err[300];
    if (template_parse(url_src, &c.url_t, err, sizeof err) != FO_OK)
        c.url_t = NULL;
    if (template_parse(body_src, &c.body_t, err, sizeof err) != FO_OK)
        c.body_t = NULL;
    c.src = p;
    c.len = (size_t)(end - p);
    c.line = FIRST_LINE;

    int fds[2];
    if (pipe(fds) != 0)
        abort();
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    jsonl *r = jsonl_new(fds[0], c.max_line, START_OFFSET, FIRST_LINE);
    size_t sent = 0;
    while (sent < c.len) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = 1 + (seed >> 16) % 97;
        if (piece > c.len - sent)
            piece = c.len - sent;
        ssize_t w = write(fds[1], c.src + sent, piece);
        if (w <= 0)
            abort();
        sent += (size_t)w;
        if (drain(&c, r))
            fail("end of input before the writer closed the pipe", c.line);
    }
    close(fds[1]);
    if (!drain(&c, r))
        fail("FO_EAGAIN after the writer closed the pipe", c.line);
    if ((size_t)c.off != c.len)
        fail("the reader did not account for every byte", c.line);
    jsonl_line ln;
    if (jsonl_next(r, &ln) != FO_EEOF)
        fail("a second call after the end did not return FO_EEOF", c.line);
    jsonl_destroy(&r);
    jsonl_destroy(&r);
    close(fds[0]);
    template_destroy(&c.url_t);
    template_destroy(&c.body_t);
    free(url_src);
    free(body_src);
    return 0;
}
