/*
 * queue_azure.c - Azure Queue Storage as a source, over its REST API.
 *
 * Pull is Get Messages (the visibility timeout is our lease), ack is Delete
 * Message and renew is Update Message with no body, which only moves the
 * visibility timeout and hands back a new pop receipt. Requests are signed
 * with Shared Key (HMAC-SHA256 of the canonical request, keyed with the
 * account key) or carry a SAS token in their query instead.
 *
 * One libcurl easy handle serves every call, so the connection is reused;
 * the driver only runs in the master's source thread (queue.h), which owns
 * the handle. The XML of Get Messages is flat and fixed, so a few lines of
 * tag extraction read it instead of an XML library. Every byte from the
 * network goes into a capped buffer first.
 */
#include "fmacros.h"
#include "queue.h"
#include "buf.h"
#include "util.h"
#include "xmlmini.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>
#include <time.h>

#define AZ_VERSION "2021-12-02"           /* x-ms-version; Azurite knows it */
#define AZ_BATCH_MAX 32                   /* Get Messages returns at most 32 */
#define AZ_LEASE_MAX_S (7LL * 86400)      /* the longest visibility timeout */
#define AZ_RESPONSE_MAX_BYTES (64u << 20) /* a Get Messages response */
#define AZ_ERROR_MAX_BYTES (64u << 10)    /* any other response body */
#define AZ_CONNECT_MAX_MS 5000            /* connect timeout cap */
#define AZ_TIMEOUT_DEFAULT_MS 10000       /* when opts.timeout_ms is not set */
#define AZ_KEY_MAX_BYTES 256   /* a decoded account key (64 in Azure) */
#define AZ_ID_MAX 256          /* a message id (a GUID in Azure) */
#define AZ_RECEIPT_MAX 1024    /* a pop receipt (~28 chars in Azure) */
#define AZ_URL_MAX_BYTES 16384 /* a request URL or string to sign */
#define AZ_ENDPOINT_MAX 1024   /* the endpoint= parameter */

/* Azurite's and the storage emulator's published development account. */
#define AZ_DEV_ACCOUNT "devstoreaccount1"
#define AZ_DEV_KEY                                                             \
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"          \
    "K1SZFPTOtr/KBHBeksoGMGw=="
#define AZ_DEV_ENDPOINT "http://127.0.0.1:10001/devstoreaccount1"

#define CS_VAR "AZURE_STORAGE_CONNECTION_STRING"

typedef struct az {
    queue base;            /* must stay first: the API hands us &base */
    CURL *curl;            /* the one handle, for connection reuse */
    char *account;         /* storage account name, from the URL */
    char *queue;           /* queue name, from the URL */
    char *endpoint;        /* scheme://host[:port][/path], no '/' at end */
    const char *path;      /* the endpoint's path part ("" or "/acct"),
                              inside endpoint */
    unsigned char *key;    /* decoded account key, or NULL with a SAS */
    size_t keylen;         /* its length */
    char *sas;             /* SAS query string without '?', or NULL */
    const char *cred_var;  /* the environment variable it came from */
    char encoding[8];      /* auto, base64 or none (queue_set_body) */
    long lease_s;          /* visibility timeout we ask for */
    size_t max_item_bytes; /* body cap, from the options */
    long timeout_ms;       /* whole-call timeout */
    long connect_ms;       /* connect timeout */
    char *desc;            /* describe()'s text */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's detail on a failed call */
} az;

/* One response: status, capped body and the two headers we read. */
typedef struct resp {
    long status;                      /* HTTP status; 0 before one arrived */
    fo_buf body;                      /* body, capped per call */
    int body_over;                    /* the body hit its cap (call fails) */
    char code[128];                   /* x-ms-error-code, or "" */
    char receipt[AZ_RECEIPT_MAX + 1]; /* x-ms-popreceipt, or "" */
    int receipt_over;                 /* it was longer than we keep */
} resp;

/* A query parameter with its raw (not percent-encoded) value. */
typedef struct qparam {
    const char *name;  /* lowercase, as Shared Key canonicalizes it */
    const char *value; /* raw value */
} qparam;

/* ---- small text helpers ---- */

static int is_unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/* Appends s percent-encoded (everything but RFC 3986 unreserved), which is
 * what pop receipts need: they are base64 with '+', '/' and '='. */
static fo_err put_encoded(fo_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        fo_err err =
            is_unreserved(c) ? buf_append(b, s, 1) : buf_append(b, e, sizeof e);
        if (err)
            return err;
    }
    return FO_OK;
}

/* Returns a heap copy of the whitespace-trimmed [s, s + n). */
static char *trimmed(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                 s[n - 1] == '\n'))
        n--;
    return xstrndup(s, n);
}

/* Writes an RFC 1123 date. strftime's %a/%b follow the locale, and the
 * signature needs the English names whatever the process's locale is. */
static void rfc1123_now(char *out, size_t cap)
{
    static const char *const day[] = {"Sun", "Mon", "Tue", "Wed",
                                      "Thu", "Fri", "Sat"};
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", day[tm.tm_wday],
             tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
             tm.tm_min, tm.tm_sec);
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *userp)
{
    resp *r = userp;
    if (buf_append(&r->body, p, size * n) != FO_OK) {
        r->body_over = 1;
        return 0; /* aborts the transfer rather than read an endless body */
    }
    return size * n;
}

/* Copies a header's value, trimmed, into out; 0 when it did not fit. */
static int header_value(const char *line, size_t n, size_t nl, char *out,
                        size_t cap)
{
    char *v = trimmed(line + nl, n - nl);
    size_t vl = strlen(v);
    int fits = vl < cap;
    if (fits)
        memcpy(out, v, vl + 1);
    free(v);
    return fits;
}

static size_t on_header(char *line, size_t size, size_t n, void *userp)
{
    resp *r = userp;
    size_t len = size * n;
    static const char code[] = "x-ms-error-code:";
    static const char receipt[] = "x-ms-popreceipt:";
    if (len >= sizeof code - 1 && strncasecmp(line, code, sizeof code - 1) == 0)
        header_value(line, len, sizeof code - 1, r->code, sizeof r->code);
    else if (len >= sizeof receipt - 1 &&
             strncasecmp(line, receipt, sizeof receipt - 1) == 0)
        r->receipt_over = !header_value(line, len, sizeof receipt - 1,
                                        r->receipt, sizeof r->receipt);
    return len;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(((const qparam *)x)->name, ((const qparam *)y)->name);
}

/* Writes the Authorization header for the request into out. */
static int sign(az *a, const char *verb, const char *date, const char *rel,
                qparam *qp, size_t nqp, char *out, size_t cap)
{
    fo_buf s;
    buf_init(&s, AZ_URL_MAX_BYTES);
    /* Content-Encoding, -Language, -Length, -MD5, -Type, Date, the four
     * conditionals and Range are all empty: we send none of them but
     * Content-Length: 0 with PUT, and since version 2015-02-21 a zero
     * length signs as an empty one. */
    fo_err err = buf_printf(&s, "%s\n\n\n\n\n\n\n\n\n\n\n\n", verb);
    if (!err)
        err = buf_printf(&s, "x-ms-date:%s\nx-ms-version:%s\n/%s%s/%s%s", date,
                         AZ_VERSION, a->account, a->path, a->queue, rel);
    for (size_t i = 0; i < nqp && !err; i++)
        err = buf_printf(&s, "\n%s:%s", qp[i].name, qp[i].value);
    if (err) {
        buf_fini(&s);
        return -1;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned char sig[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    int ok = HMAC(EVP_sha256(), a->key, (int)a->keylen,
                  (const unsigned char *)s.data, s.len, mac, &maclen) != NULL;
    buf_fini(&s);
    if (!ok)
        return -1;
    EVP_EncodeBlock(sig, mac, (int)maclen);
    snprintf(out, cap, "Authorization: SharedKey %s:%s", a->account,
             (const char *)sig);
    return 0;
}

/* Runs one request on the queue: verb on {endpoint}/{queue}{rel}?{qp}
 * (rel already percent-encoded, qp raw values). Returns 0 when a response
 * arrived, whatever its status, with r filled (the caller finis r->body);
 * -1 with err when none did. */
static int az_call(az *a, const char *verb, const char *rel, qparam *qp,
                   size_t nqp, size_t body_max, resp *r, char *err,
                   size_t errlen)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, body_max);
    /* Shared Key wants the parameters in name order; sorting here keeps
     * the callers from having to know. */
    qsort(qp, nqp, sizeof *qp, by_name);

    fo_buf url;
    buf_init(&url, AZ_URL_MAX_BYTES);
    fo_err ferr = buf_printf(&url, "%s/%s%s", a->endpoint, a->queue, rel);
    for (size_t i = 0; i < nqp && !ferr; i++) {
        ferr = buf_printf(&url, "%c%s=", i ? '&' : '?', qp[i].name);
        if (!ferr)
            ferr = put_encoded(&url, qp[i].value);
    }
    if (!ferr && a->sas)
        ferr = buf_printf(&url, "%c%s", nqp ? '&' : '?', a->sas);

    int put = strcmp(verb, "PUT") == 0;
    char date[64], xdate[80], auth[512];
    rfc1123_now(date, sizeof date);
    snprintf(xdate, sizeof xdate, "x-ms-date: %s", date);
    struct curl_slist *h = NULL, *t;
    int bad = ferr != FO_OK;
    if (!bad && a->key)
        bad = sign(a, verb, date, rel, qp, nqp, auth, sizeof auth) != 0;
    const char *hdrs[] = {xdate, "x-ms-version: " AZ_VERSION,
                          a->key ? auth : NULL,
                          /* libcurl would label the empty PUT body a form,
                           * and Content-Type is part of the signature. */
                          put ? "Content-Type:" : NULL};
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0] && !bad; i++) {
        if (!hdrs[i])
            continue;
        t = curl_slist_append(h, hdrs[i]);
        bad = !t;
        h = t ? t : h;
    }
    if (bad) {
        snprintf(err, errlen, "%s %s/%s%s: cannot build the request", verb,
                 a->account, a->queue, rel);
        curl_slist_free_all(h);
        buf_fini(&url);
        return -1;
    }

    CURL *c = a->curl;
    a->errbuf[0] = '\0';
    /* The handle is reused: reset what the previous call may have set. */
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST,
                     strcmp(verb, "GET") == 0 ? NULL : verb);
    if (put) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    buf_fini(&url);
    if (r->body_over) {
        snprintf(err, errlen,
                 "%s %s/%s%s: response larger than %zu bytes (HTTP %ld)", verb,
                 a->account, a->queue, rel, body_max, r->status);
        r->status = 0;
        buf_fini(&r->body);
        return -1;
    }
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s %s/%s%s at %s: %s", verb, a->account,
                 a->queue, rel, a->endpoint,
                 a->errbuf[0] ? a->errbuf : curl_easy_strerror(cc));
        r->status = 0;
        buf_fini(&r->body);
        return -1;
    }
    /* An error body names its code too; the header is the reliable one. */
    if (!r->code[0] && r->body.len) {
        char *code = xmlmini_string(r->body.data, r->body.data + r->body.len,
                                    "Code", sizeof r->code - 1);
        if (code)
            snprintf(r->code, sizeof r->code, "%s", code);
        free(code);
    }
    return 0;
}

/* Describes the non-2xx response to verb on rel in err. */
static void status_error(az *a, const char *verb, const char *rel,
                         const resp *r, char *err, size_t errlen)
{
    const char *code = r->code[0] ? r->code : "no error code";
    if (r->status == 404 &&
        (!r->code[0] || strcmp(r->code, "QueueNotFound") == 0))
        snprintf(err, errlen,
                 "%s %s/%s%s: queue '%s' does not exist in account '%s' at "
                 "%s (HTTP 404 %s)",
                 verb, a->account, a->queue, rel, a->queue, a->account,
                 a->endpoint, code);
    else if (r->status == 401 || r->status == 403)
        snprintf(err, errlen,
                 "%s %s/%s%s: authentication failed for account '%s' with "
                 "the credential from %s (HTTP %ld %s)",
                 verb, a->account, a->queue, rel, a->account, a->cred_var,
                 r->status, code);
    else
        snprintf(err, errlen, "%s %s/%s%s: HTTP %ld %s", verb, a->account,
                 a->queue, rel, r->status, code);
}

/* ---- the driver ---- */

/* Parses the messages of one Get Messages response into out[*n..max).
 * Returns how many it found (including any it had no room for, and ones it
 * skipped), or -1 when the body is not a message list. */
static int parse_messages(az *a, const fo_buf *body, queue_msg *out, size_t max,
                          size_t *n)
{
    const char *p = body->data, *end = body->data + body->len, *blk;
    size_t bl;
    if (!body->len || !strstr(body->data, "<QueueMessagesList"))
        return -1;
    int found = 0;
    while ((p = xmlmini_elem(p, end, "QueueMessage", &blk, &bl))) {
        found++;
        if (*n >= max)
            continue;
        const char *bend = blk + bl, *text;
        size_t tl = 0;
        char *id = xmlmini_string(blk, bend, "MessageId", AZ_ID_MAX);
        char *receipt = xmlmini_string(blk, bend, "PopReceipt", AZ_RECEIPT_MAX);
        char *count = xmlmini_string(blk, bend, "DequeueCount", 32);
        if (!id || !*id || !receipt || !*receipt) {
            /* Never from a real server. Without these it cannot be acked;
             * it shows up again after the lease and is skipped again. */
            free(id);
            free(receipt);
            free(count);
            continue;
        }
        queue_msg *m = &out[(*n)++];
        memset(m, 0, sizeof *m);
        m->id = id;
        m->receipt = receipt;
        int64_t dc = 0;
        if (count && util_parse_i64(count, 0, INT64_MAX, &dc) == 0)
            m->deliveries = dc;
        free(count);
        if (!xmlmini_elem(blk, bend, "MessageText", &text, &tl)) {
            text = blk; /* no text: queue_set_body says why it is bad */
            tl = 0;
        }
        /* queue_set_body calls anything over twice the item cap too big;
         * stop decoding there instead of copying the rest. */
        fo_buf t;
        buf_init(&t, a->max_item_bytes * 2 + 9);
        if (xmlmini_text(&t, text, tl) != FO_OK)
            m->too_big = 1;
        else
            queue_set_body(m, buf_str(&t), t.len, a->encoding,
                           a->max_item_bytes);
        buf_fini(&t);
    }
    return found;
}

static int az_pull(queue *q, size_t max, queue_msg *out, size_t *n, char *err,
                   size_t errlen)
{
    az *a = (az *)q;
    *n = 0;
    char vis[24];
    snprintf(vis, sizeof vis, "%ld", a->lease_s);
    /* Only ask again while the queue keeps filling whole batches. */
    while (*n < max) {
        size_t want = max - *n < AZ_BATCH_MAX ? max - *n : AZ_BATCH_MAX;
        char num[24];
        snprintf(num, sizeof num, "%zu", want);
        qparam qp[] = {{"numofmessages", num}, {"visibilitytimeout", vis}};
        resp r;
        char why[512] = "";
        int rc = az_call(a, "GET", "/messages", qp, 2, AZ_RESPONSE_MAX_BYTES,
                         &r, why, sizeof why);
        int found = -1;
        if (rc == 0 && r.status / 100 == 2) {
            found = parse_messages(a, &r.body, out, max, n);
            if (found < 0)
                snprintf(why, sizeof why,
                         "GET %s/%s/messages: HTTP %ld but the body is "
                         "not a QueueMessagesList",
                         a->account, a->queue, r.status);
        } else if (rc == 0) {
            status_error(a, "GET", "/messages", &r, why, sizeof why);
        }
        buf_fini(&r.body);
        if (found < 0) {
            /* Messages from an earlier batch are leased to us already:
             * hand them over and let the next pull meet the error. */
            if (*n)
                return 0;
            snprintf(err, errlen, "%s", why);
            return -1;
        }
        if ((size_t)found < want)
            break;
    }
    return 0;
}

/* What a failed Delete or Update Message means for the message. */
static int outcome_of(long status)
{
    if (status == 0 || status == 401 || status == 403 || status == 408 ||
        status == 429 || status >= 500)
        return QUEUE_RETRY; /* transport, credentials, throttling, server */
    /* 400 PopReceiptMismatch: re-leased by someone else; any other 4xx is
     * about this message and will not get better by retrying it, while a
     * fresh delivery brings a fresh receipt. */
    return QUEUE_STALE;
}

/* Deletes (renew == 0) or extends (renew == 1) each message in turn. */
static int each_message(az *a, int renew, queue_msg *msgs, size_t n,
                        int *outcome, char *err, size_t errlen)
{
    char vis[24], why[512] = "";
    size_t retries = 0;
    int give_up = 0;
    snprintf(vis, sizeof vis, "%ld", a->lease_s);
    for (size_t i = 0; i < n; i++) {
        if (give_up) {
            outcome[i] = QUEUE_RETRY;
            retries++;
            continue;
        }
        if (!msgs[i].id || !msgs[i].receipt) {
            outcome[i] = QUEUE_STALE; /* nothing to act with */
            continue;
        }
        fo_buf rel;
        buf_init(&rel, AZ_ID_MAX * 3 + 16);
        if (buf_puts(&rel, "/messages/") != FO_OK ||
            put_encoded(&rel, msgs[i].id) != FO_OK) {
            buf_fini(&rel);
            outcome[i] = QUEUE_STALE;
            continue;
        }
        qparam qp[] = {{"popreceipt", msgs[i].receipt},
                       {"visibilitytimeout", vis}};
        resp r;
        const char *verb = renew ? "PUT" : "DELETE";
        int rc = az_call(a, verb, rel.data, qp, renew ? 2 : 1,
                         AZ_ERROR_MAX_BYTES, &r, why, sizeof why);
        buf_fini(&r.body);
        if (rc == 0 && r.status / 100 == 2 && renew &&
            (!r.receipt[0] || r.receipt_over)) {
            /* Extended, but without the new receipt the old one is void. */
            outcome[i] = QUEUE_STALE;
        } else if (rc == 0 && r.status / 100 == 2) {
            outcome[i] = QUEUE_DONE;
            if (renew) {
                free(msgs[i].receipt);
                msgs[i].receipt = xstrdup(r.receipt);
            }
        } else if (rc == 0 && r.status == 404 && !renew) {
            outcome[i] = QUEUE_DONE; /* MessageNotFound: already deleted */
        } else {
            outcome[i] = outcome_of(r.status);
            if (rc == 0)
                status_error(a, verb, rel.data, &r, why, sizeof why);
        }
        buf_fini(&rel);
        if (outcome[i] == QUEUE_RETRY) {
            retries++;
            /* An unreachable or throttling server would cost a timeout or
             * another refusal per message; leave the rest for later. */
            give_up = r.status == 0 || r.status == 429 || r.status >= 500;
        }
    }
    if (n && retries == n) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

static int az_ack(queue *q, queue_msg *msgs, size_t n, int *outcome, char *err,
                  size_t errlen)
{
    return each_message((az *)q, 0, msgs, n, outcome, err, errlen);
}

static int az_renew(queue *q, queue_msg *msgs, size_t n, int *outcome,
                    char *err, size_t errlen)
{
    return each_message((az *)q, 1, msgs, n, outcome, err, errlen);
}

static const char *az_describe(queue *q)
{
    return ((az *)q)->desc;
}

static void az_destroy(queue *q)
{
    az *a = (az *)q;
    if (!a)
        return;
    if (a->curl) {
        curl_easy_cleanup(a->curl);
        curl_global_cleanup(); /* balances the init in az_open */
    }
    if (a->key)
        OPENSSL_cleanse(a->key, a->keylen);
    free(a->key);
    if (a->sas)
        OPENSSL_cleanse(a->sas, strlen(a->sas));
    free(a->sas);
    free(a->account);
    free(a->queue);
    free(a->endpoint);
    free(a->desc);
    free(a);
}

/* ---- configuration ---- */

/* The parts of a connection string we use; each a heap string or NULL. */
typedef struct conn {
    char *name;     /* AccountName */
    char *key;      /* AccountKey */
    char *sas;      /* SharedAccessSignature */
    char *endpoint; /* QueueEndpoint */
    char *protocol; /* DefaultEndpointsProtocol */
    char *suffix;   /* EndpointSuffix */
    int dev;        /* UseDevelopmentStorage=true */
} conn;

static void conn_fini(conn *c)
{
    if (c->key)
        OPENSSL_cleanse(c->key, strlen(c->key));
    if (c->sas)
        OPENSSL_cleanse(c->sas, strlen(c->sas));
    free(c->name);
    free(c->key);
    free(c->sas);
    free(c->endpoint);
    free(c->protocol);
    free(c->suffix);
    memset(c, 0, sizeof *c);
}

/* Parses "Name=value;Name=value" (values may hold '='). Error messages
 * name the part, never its value: it may be the key. */
static int conn_parse(const char *s, conn *c, char *err, size_t errlen)
{
    static const char var[] = CS_VAR;
    while (*s) {
        size_t pl = strcspn(s, ";");
        const char *eq = memchr(s, '=', pl);
        char *name = eq ? trimmed(s, (size_t)(eq - s)) : NULL;
        char **slot = NULL;
        if (!eq) {
            char *part = trimmed(s, pl);
            int empty = !*part;
            free(part);
            if (!empty) {
                snprintf(err, errlen,
                         "%s: a part has no '=' (want Name=value;...)", var);
                return -1;
            }
        } else if (strcasecmp(name, "AccountName") == 0) {
            slot = &c->name;
        } else if (strcasecmp(name, "AccountKey") == 0) {
            slot = &c->key;
        } else if (strcasecmp(name, "SharedAccessSignature") == 0) {
            slot = &c->sas;
        } else if (strcasecmp(name, "QueueEndpoint") == 0) {
            slot = &c->endpoint;
        } else if (strcasecmp(name, "DefaultEndpointsProtocol") == 0) {
            slot = &c->protocol;
        } else if (strcasecmp(name, "EndpointSuffix") == 0) {
            slot = &c->suffix;
        } else if (strcasecmp(name, "UseDevelopmentStorage") == 0) {
            char *v = trimmed(eq + 1, pl - (size_t)(eq + 1 - s));
            c->dev = strcasecmp(v, "true") == 0;
            free(v);
        } /* others (BlobEndpoint, ...) are for other services */
        if (slot) {
            free(*slot);
            *slot = trimmed(eq + 1, pl - (size_t)(eq + 1 - s));
        }
        free(name);
        s += pl + (s[pl] == ';');
    }
    return 0;
}

/* Decodes a base64 account key into a->key. */
static int set_key(az *a, const char *b64, const char *var, char *err,
                   size_t errlen)
{
    size_t n = strlen(b64);
    size_t pad =
        (size_t)(n && b64[n - 1] == '=') + (size_t)(n > 1 && b64[n - 2] == '=');
    if (n == 0 || n % 4 || n / 4 * 3 > AZ_KEY_MAX_BYTES) {
        snprintf(err, errlen,
                 "%s: the account key is not base64 of at most %d bytes", var,
                 AZ_KEY_MAX_BYTES);
        return -1;
    }
    a->key = xmalloc(n / 4 * 3 + 1);
    int got = EVP_DecodeBlock(a->key, (const unsigned char *)b64, (int)n);
    if (got < 0 || (size_t)got <= pad) {
        snprintf(err, errlen, "%s: the account key is not base64", var);
        return -1;
    }
    a->keylen = (size_t)got - pad;
    return 0;
}

/* Keeps a SAS token (with or without its '?') after a sanity check. */
static int set_sas(az *a, const char *sas, const char *var, char *err,
                   size_t errlen)
{
    if (*sas == '?')
        sas++;
    for (const char *p = sas; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '#' || *p == 0x7f) {
            snprintf(err, errlen,
                     "%s: the SAS token holds a space, a control character "
                     "or '#'",
                     var);
            return -1;
        }
    if (!strstr(sas, "sig=")) {
        snprintf(err, errlen, "%s: not a SAS token (it has no sig=)", var);
        return -1;
    }
    a->sas = xstrdup(sas);
    return 0;
}

/* Picks the credential from the environment: AZURE_STORAGE_CONNECTION_STRING,
 * AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, the first one set wins. A
 * connection string may name an endpoint too: then *endpoint is a heap
 * string the caller frees, and *from says where it came from. */
static int credentials(az *a, char **endpoint, const char **from, char *err,
                       size_t errlen)
{
    const char *cs = getenv(CS_VAR);
    const char *key = getenv("AZURE_STORAGE_KEY");
    const char *sas = getenv("AZURE_STORAGE_SAS_TOKEN");
    if (cs && *cs) {
        const char *var = CS_VAR;
        conn c = {0};
        int rc = -1, dev_ep = 0; /* dev_ep: the emulator's default endpoint */
        a->cred_var = var;
        if (conn_parse(cs, &c, err, errlen) != 0)
            goto out;
        if (c.dev && !c.name && !c.key && !c.sas) {
            c.name = xstrdup(AZ_DEV_ACCOUNT);
            c.key = xstrdup(AZ_DEV_KEY);
            dev_ep = !c.endpoint;
            c.endpoint = dev_ep ? xstrdup(AZ_DEV_ENDPOINT) : c.endpoint;
        }
        if (c.name && strcmp(c.name, a->account) != 0) {
            snprintf(err, errlen,
                     "%s names account '%s' but the queue URL names '%s'", var,
                     c.name, a->account);
            goto out;
        }
        if (!c.key && !c.sas) {
            snprintf(err, errlen,
                     "%s has neither AccountKey nor SharedAccessSignature",
                     var);
            goto out;
        }
        /* An account key can do everything a SAS can, and more. */
        if (c.key ? set_key(a, c.key, var, err, errlen)
                  : set_sas(a, c.sas, var, err, errlen))
            goto out;
        if (c.endpoint && *c.endpoint) {
            *endpoint = c.endpoint;
            c.endpoint = NULL;
            *from = dev_ep ? "UseDevelopmentStorage in " CS_VAR
                           : "QueueEndpoint in " CS_VAR;
        } else if (c.protocol || c.suffix) {
            *from = "DefaultEndpointsProtocol/EndpointSuffix in " CS_VAR;
            size_t cap = strlen(a->account) + 64 +
                         (c.protocol ? strlen(c.protocol) : 0) +
                         (c.suffix ? strlen(c.suffix) : 0);
            *endpoint = xmalloc(cap);
            snprintf(*endpoint, cap, "%s://%s.queue.%s",
                     c.protocol ? c.protocol : "https", a->account,
                     c.suffix ? c.suffix : "core.windows.net");
        }
        rc = 0;
    out:
        conn_fini(&c);
        return rc;
    }
    if (key && *key) {
        a->cred_var = "AZURE_STORAGE_KEY";
        return set_key(a, key, a->cred_var, err, errlen);
    }
    if (sas && *sas) {
        a->cred_var = "AZURE_STORAGE_SAS_TOKEN";
        return set_sas(a, sas, a->cred_var, err, errlen);
    }
    snprintf(err, errlen,
             "no credentials: set AZURE_STORAGE_CONNECTION_STRING, "
             "AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN");
    return -1;
}

/* Checks a name against Azure's rules: 3 to max characters from allowed
 * (lowercase letters, digits, and '-' for queues). */
static int valid_name(const char *s, size_t max, int dash)
{
    size_t n = strlen(s);
    if (n < 3 || n > max)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              (dash && *p == '-')))
            return 0;
    return 1;
}

/* Takes the endpoint (moving it into a), checks it and finds its path. */
static int set_endpoint(az *a, char *ep, const char *from, char *err,
                        size_t errlen)
{
    size_t n = strlen(ep);
    while (n && ep[n - 1] == '/')
        ep[--n] = '\0';
    a->endpoint = ep;
    const char *host = strncmp(ep, "https://", 8) == 0  ? ep + 8
                       : strncmp(ep, "http://", 7) == 0 ? ep + 7
                                                        : NULL;
    if (!host || !*host || *host == '/') {
        snprintf(err, errlen,
                 "%s: the endpoint must be "
                 "http://HOST[:PORT][/PATH] or https://...",
                 from);
        return -1;
    }
    /* A query would end up in front of ours, and it may be a secret. */
    if (strpbrk(ep, "?#@ ")) {
        snprintf(err, errlen,
                 "%s: the endpoint must not hold '?', '#', '@' "
                 "or spaces (put a SAS in AZURE_STORAGE_SAS_TOKEN)",
                 from);
        return -1;
    }
    const char *slash = strchr(host, '/');
    a->path = slash ? slash : ep + n;
    return 0;
}

static const char *const az_params[] = {"encoding", "endpoint", "lease",
                                        "follow"};

/* Rejects query parameters nobody reads, so a typo is not silently
 * ignored. */
static int check_params(const char *q, char *err, size_t errlen)
{
    while (q && *q) {
        size_t pl = strcspn(q, "&"), nl = strcspn(q, "=&");
        int known = pl == 0;
        for (size_t i = 0; i < sizeof az_params / sizeof az_params[0]; i++)
            known |=
                strlen(az_params[i]) == nl && strncmp(q, az_params[i], nl) == 0;
        if (!known) {
            snprintf(err, errlen,
                     "unknown URL parameter '%.*s' (known: "
                     "encoding, endpoint, lease, follow)",
                     (int)(nl < 64 ? nl : 64), q);
            return -1;
        }
        q += pl + (q[pl] == '&');
    }
    return 0;
}

static queue *az_open(const char *url, const queue_opts *o, char *err,
                      size_t errlen)
{
    static const char scheme[] = "azure-queue://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(err, errlen, "not an azure-queue:// URL");
        return NULL;
    }
    const char *s = url + sizeof scheme - 1;
    size_t tail = strcspn(s, "?");
    size_t al = strcspn(s, "/?");
    const char *query = s[tail] == '?' ? s + tail + 1 : NULL;

    az *a = xcalloc(1, sizeof *a);
    char *ep = NULL, epparam[AZ_ENDPOINT_MAX];
    a->account = xstrndup(s, al);
    a->queue = xstrndup(s + al + (al < tail), tail - al - (al < tail));
    a->base.driver = &queue_azure_driver;

    if (!*a->account) {
        snprintf(err, errlen,
                 "no storage account (want "
                 "azure-queue://ACCOUNT/QUEUE)");
        goto fail;
    }
    if (!valid_name(a->account, 24, 0)) {
        snprintf(err, errlen,
                 "account '%.64s' is not 3-24 lowercase letters "
                 "and digits",
                 a->account);
        goto fail;
    }
    if (!*a->queue) {
        snprintf(err, errlen,
                 "no queue name (want "
                 "azure-queue://ACCOUNT/QUEUE)");
        goto fail;
    }
    if (!valid_name(a->queue, 63, 1)) {
        snprintf(err, errlen,
                 "queue '%.64s' is not 3-63 lowercase letters, "
                 "digits and '-'",
                 a->queue);
        goto fail;
    }
    if (check_params(query, err, errlen) != 0)
        goto fail;
    int got = queue_url_param(url, "encoding", a->encoding, sizeof a->encoding);
    if (got == 0)
        snprintf(a->encoding, sizeof a->encoding, "auto");
    if (got < 0 || (strcmp(a->encoding, "auto") != 0 &&
                    strcmp(a->encoding, "base64") != 0 &&
                    strcmp(a->encoding, "none") != 0)) {
        snprintf(err, errlen, "encoding must be auto, base64 or none");
        goto fail;
    }
    got = queue_url_param(url, "endpoint", epparam, sizeof epparam);
    if (got < 0) {
        snprintf(err, errlen, "endpoint is over %d bytes", AZ_ENDPOINT_MAX - 1);
        goto fail;
    }
    const char *from = "the default endpoint";
    if (credentials(a, &ep, &from, err, errlen) != 0)
        goto fail;
    /* The URL's endpoint= wins over the connection string's. */
    if (got) {
        free(ep);
        ep = xstrdup(epparam);
        from = "the URL's endpoint= parameter";
    } else if (!ep) {
        size_t cap = strlen(a->account) + 40;
        ep = xmalloc(cap);
        snprintf(ep, cap, "https://%s.queue.core.windows.net", a->account);
    }
    int bad_ep = set_endpoint(a, ep, from, err, errlen);
    ep = NULL; /* a owns it now */
    if (bad_ep)
        goto fail;

    /* Whole seconds, rounded up, within what Get Messages accepts. */
    a->lease_s = o->lease_ms <= 1000 ? 1
                 : o->lease_ms >= AZ_LEASE_MAX_S * 1000LL
                     ? AZ_LEASE_MAX_S
                     : (long)((o->lease_ms + 999) / 1000);
    a->max_item_bytes = o->max_item_bytes;
    a->timeout_ms =
        o->timeout_ms > 0 ? (long)o->timeout_ms : AZ_TIMEOUT_DEFAULT_MS;
    a->connect_ms =
        a->timeout_ms < AZ_CONNECT_MAX_MS ? a->timeout_ms : AZ_CONNECT_MAX_MS;
    size_t dl =
        strlen(a->account) + strlen(a->queue) + strlen(a->endpoint) + 32;
    a->desc = xmalloc(dl);
    snprintf(a->desc, dl, "azure-queue %s/%s at %s", a->account, a->queue,
             a->endpoint);

    /* Counted by libcurl, so this and az_destroy's cleanup pair up with
     * whatever else in the process initialises it. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl failed to initialise");
        goto fail;
    }
    a->curl = curl_easy_init();
    if (!a->curl) {
        curl_global_cleanup();
        snprintf(err, errlen, "libcurl failed to initialise");
        goto fail;
    }
    CURL *c = a->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we are not the main thread */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, a->connect_ms);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "fanout-master");
    return &a->base;

fail:
    free(ep);
    az_destroy(&a->base);
    /* Name the flag and the queue (not the parameters) in every message. */
    char *why = xstrdup(err);
    char shown[256];
    util_redact_url(url, shown, sizeof shown);
    size_t ul = strcspn(shown, "?");
    snprintf(err, errlen, "--input %.*s: %s", (int)(ul < 160 ? ul : 160), shown,
             why);
    free(why);
    return NULL;
}

/* A dead master's messages come back only when their visibility timeout
 * runs out: a restarted master waits for the leases it recorded. */
const queue_driver queue_azure_driver = {
    .scheme = "azure-queue",
    .caps = QUEUE_CAP_LEASE_TIMEOUT_ONLY | QUEUE_CAP_RENEW,
    .open = az_open,
    .pull = az_pull,
    .ack = az_ack,
    .renew = az_renew,
    .describe = az_describe,
    .destroy = az_destroy,
};
