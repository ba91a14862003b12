/* bare_client.c - the reference for the overhead benchmark: the least a
 * program can do to make the same HTTP calls fanout makes.
 *
 * It fetches PREFIX<id> for ids ID_PREFIX1 .. ID_PREFIXN from one libcurl
 * multi handle, keeping CONCURRENCY transfers in flight over keep-alive
 * connections, in one thread, and prints one JSON line with its counts,
 * wall time and CPU time. There is no queue, no durability and no
 * coordination: whatever fanout's items/s falls short of this client's,
 * measured against the same server in the same run, is fanout's overhead.
 *
 * To stay comparable it sends what a fanout worker sends (a User-Agent and
 * an Idempotency-Key header of the same length) and reads every response
 * body, but it reuses easy handles and discards bodies, which is what a
 * hand-written client would do.
 *
 * Usage: bare_client --prefix http://127.0.0.1:PORT/i/ --count N
 *                    [--concurrency C] [--id-prefix it-]
 * Exit status: 0 when every call answered 200, 1 otherwise, 2 usage. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BARE_MAX_CONCURRENCY 4096
#define BARE_MAX_URL_BYTES 2048

/* One transfer slot: an easy handle reused for call after call. */
typedef struct slot {
    CURL *easy;                   /* the reused handle */
    char url[BARE_MAX_URL_BYTES]; /* its current URL */
} slot;

/* What the run counted. */
typedef struct tally {
    long long ok;          /* answered 200 */
    long long bad_status;  /* answered something else */
    long long errors;      /* transport errors */
    long long body_bytes;  /* response bytes read */
    long long next_id;     /* the next id to fetch */
    long long count;       /* ids to fetch in all */
    const char *prefix;    /* URL prefix */
    const char *id_prefix; /* id prefix */
} tally;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
    tally *t = userp;
    (void)ptr;
    t->body_bytes += (long long)(size * nmemb);
    return size * nmemb;
}

/* Parses a positive decimal into *out; returns 0, or -1 naming nothing. */
static int parse_count(const char *s, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Points the slot at the next id and adds it to the multi handle; returns
 * 0 when there was no id left. */
static int start_next(CURLM *multi, slot *s, tally *t)
{
    if (t->next_id > t->count)
        return 0;
    snprintf(s->url, sizeof s->url, "%s%s%lld", t->prefix, t->id_prefix,
             t->next_id);
    t->next_id++;
    curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
    if (curl_multi_add_handle(multi, s->easy) != CURLM_OK) {
        t->errors++;
        return 0;
    }
    return 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: bare_client --prefix URL --count N "
                    "[--concurrency C] [--id-prefix S]\n");
}

int main(int argc, char **argv)
{
    tally t;
    memset(&t, 0, sizeof t);
    t.id_prefix = "it-";
    t.next_id = 1;
    long long conc = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bare_client: %s needs a value\n", a);
            usage();
            return 2;
        }
        if (!strcmp(a, "--prefix")) {
            t.prefix = v;
        } else if (!strcmp(a, "--id-prefix")) {
            t.id_prefix = v;
        } else if (!strcmp(a, "--count")) {
            if (parse_count(v, LLONG_MAX / 2, &t.count)) {
                fprintf(stderr,
                        "bare_client: --count: '%s' is not a "
                        "positive number\n",
                        v);
                return 2;
            }
        } else if (!strcmp(a, "--concurrency")) {
            if (parse_count(v, BARE_MAX_CONCURRENCY, &conc)) {
                fprintf(stderr,
                        "bare_client: --concurrency: '%s' is not "
                        "in 1..%d\n",
                        v, BARE_MAX_CONCURRENCY);
                return 2;
            }
        } else {
            fprintf(stderr, "bare_client: unknown option %s\n", a);
            usage();
            return 2;
        }
        i++;
    }
    if (!t.prefix || !t.count) {
        usage();
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "bare_client: curl_global_init failed\n");
        return 1;
    }

    int rc = 1;
    CURLM *multi = curl_multi_init();
    slot *slots = calloc((size_t)conc, sizeof *slots);
    /* Same header bytes as a worker's "Idempotency-Key: fo-<16>-<16>". */
    struct curl_slist *hdrs = curl_slist_append(
        NULL, "Idempotency-Key: fo-0123456789abcdef-0123456789abcdef");
    if (!multi || !slots || !hdrs) {
        fprintf(stderr, "bare_client: out of memory\n");
        goto out;
    }
    /* Keep every connection alive between calls. */
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc);
    for (long long i = 0; i < conc; i++) {
        CURL *e = curl_easy_init();
        if (!e) {
            fprintf(stderr, "bare_client: curl_easy_init failed\n");
            goto out;
        }
        slots[i].easy = e;
        curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "fanout/0.1.0");
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    }

    double t0 = now_s();
    long long running_slots = 0;
    for (long long i = 0; i < conc; i++)
        running_slots += start_next(multi, &slots[i], &t);
    while (running_slots > 0) {
        int still = 0;
        if (curl_multi_perform(multi, &still) != CURLM_OK) {
            fprintf(stderr, "bare_client: curl_multi_perform failed\n");
            goto out;
        }
        CURLMsg *msg;
        int queued = 0;
        while ((msg = curl_multi_info_read(multi, &queued))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            CURLcode res = msg->data.result;
            slot *s = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
            if (res != CURLE_OK) {
                t.errors++;
            } else {
                long code = 0;
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
                if (code == 200)
                    t.ok++;
                else
                    t.bad_status++;
            }
            curl_multi_remove_handle(multi, e);
            running_slots--;
            running_slots += start_next(multi, s, &t);
        }
        if (running_slots > 0 &&
            curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK) {
            fprintf(stderr, "bare_client: curl_multi_poll failed\n");
            goto out;
        }
    }
    double elapsed = now_s() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec +
                 (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    long long done = t.ok + t.bad_status + t.errors;
    printf("{\"items\":%lld,\"ok\":%lld,\"bad_status\":%lld,\"errors\":%lld,"
           "\"body_bytes\":%lld,\"concurrency\":%lld,\"elapsed_s\":%.6f,"
           "\"items_per_s\":%.1f,\"cpu_s\":%.6f,\"max_rss_kib\":%ld}\n",
           done, t.ok, t.bad_status, t.errors, t.body_bytes, conc, elapsed,
           elapsed > 0 ? (double)done / elapsed : 0.0, cpu, ru.ru_maxrss);
    rc = (t.ok == t.count) ? 0 : 1;
out:
    if (slots) {
        for (long long i = 0; i < conc; i++) {
            if (slots[i].easy) {
                curl_multi_remove_handle(multi, slots[i].easy);
                curl_easy_cleanup(slots[i].easy);
            }
        }
        free(slots);
    }
    curl_slist_free_all(hdrs);
    if (multi)
        curl_multi_cleanup(multi);
    curl_global_cleanup();
    return rc;
}
