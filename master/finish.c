/*
 * finish.c - the --on-finish hook and the --notify POST (see finish.h).
 */
#include "fmacros.h"

#include "finish.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* summary.json is a few KiB; anything bigger is not ours. */
#define NOTIFY_MAX_BODY ((size_t)1024 * 1024)
#define NOTIFY_ATTEMPTS 3
#define NOTIFY_TIMEOUT_S 10L

void finish_run_hook(const char *cmd, const char *out, int status)
{
    char st[16], summary[4200];
    snprintf(st, sizeof st, "%d", status);
    snprintf(summary, sizeof summary, "%s/summary.json", out);
    pid_t pid = fork();
    if (pid < 0) {
        LOG_ERROR("master.on_finish_failed", "--on-finish: fork: %s",
                  strerror(errno));
        return;
    }
    if (pid == 0) {
        setenv("FANOUT_EXIT_STATUS", st, 1);
        setenv("FANOUT_OUT", out, 1);
        setenv("FANOUT_SUMMARY", summary, 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        LOG_WARN("master.on_finish_failed", "--on-finish '%s' ended with %s %d",
                 cmd, WIFEXITED(ws) ? "status" : "signal",
                 WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
}

int finish_check_url(const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        snprintf(err, errlen,
                 "--notify '%s': expected an http:// or https:// URL", url);
        return -1;
    }
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen,
                     "--notify '%s': a URL may not contain spaces or control "
                     "characters",
                     url);
            return -1;
        }
    return 0;
}

/* Reads the summary whole; NULL (logged) when it cannot. */
static char *read_summary(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        LOG_ERROR("master.notify_failed", "--notify: cannot read %s: %s", path,
                  strerror(errno));
        return NULL;
    }
    char *buf = malloc(NOTIFY_MAX_BODY + 1);
    size_t n = buf ? fread(buf, 1, NOTIFY_MAX_BODY + 1, f) : 0;
    int bad = !buf || ferror(f) || n > NOTIFY_MAX_BODY;
    fclose(f);
    if (bad) {
        LOG_ERROR("master.notify_failed",
                  "--notify: %s is unreadable or "
                  "larger than %zu bytes",
                  path, NOTIFY_MAX_BODY);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

int finish_notify(const char *url, const char *out, int status)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", out);
    size_t len = 0;
    char *body = read_summary(path, &len);
    if (!body)
        return -1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        LOG_ERROR("master.notify_failed", "--notify: libcurl init failed");
        free(body);
        return -1;
    }
    CURL *h = curl_easy_init();
    char st[64];
    snprintf(st, sizeof st, "Fanout-Exit-Status: %d", status);
    struct curl_slist *hdr =
        curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = hdr ? curl_slist_append(hdr, st) : NULL;
    int rc = -1;
    if (!h || !h2) {
        LOG_ERROR("master.notify_failed", "--notify: out of memory");
        goto done;
    }
    hdr = h2;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "fanout-master/" FANOUT_VERSION);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, NOTIFY_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    for (int attempt = 1; attempt <= NOTIFY_ATTEMPTS; attempt++) {
        CURLcode cc = curl_easy_perform(h);
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (cc == CURLE_OK && code >= 200 && code < 300) {
            LOG_INFO("master.notified",
                     "--notify: POSTed summary.json to %s "
                     "(HTTP %ld)",
                     url, code);
            rc = 0;
            break;
        }
        int again = cc != CURLE_OK || code >= 500 || code == 429;
        if (cc != CURLE_OK)
            LOG_WARN("master.notify_failed",
                     "--notify %s: attempt %d of %d: "
                     "%s",
                     url, attempt, NOTIFY_ATTEMPTS, curl_easy_strerror(cc));
        else
            LOG_WARN("master.notify_failed",
                     "--notify %s: attempt %d of %d: "
                     "HTTP %ld",
                     url, attempt, NOTIFY_ATTEMPTS, code);
        if (!again || attempt == NOTIFY_ATTEMPTS)
            break;
        struct timespec ts = {attempt, 0}; /* 1 s, then 2 s */
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
done:
    curl_slist_free_all(hdr);
    if (h)
        curl_easy_cleanup(h);
    curl_global_cleanup();
    free(body);
    return rc;
}
