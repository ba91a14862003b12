/* spawn.c - local worker processes; see spawn.h. */
#include "fmacros.h"
#include "spawn.h"
#include "clock.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

char **spawn_env_names(char *const *headers, size_t nheaders, size_t *n)
{
    char **names = NULL;
    *n = 0;
    for (size_t h = 0; h < nheaders; h++) {
        const char *p = headers[h];
        /* The worker's syntax (template_expand_env): "$$" is a literal
         * '$', "${NAME}" a variable. */
        while ((p = strchr(p, '$')) != NULL) {
            if (p[1] == '$') {
                p += 2;
                continue;
            }
            const char *close = p[1] == '{' ? strchr(p + 2, '}') : NULL;
            if (!close || close == p + 2) {
                p++;
                continue;
            }
            char *name = xstrndup(p + 2, (size_t)(close - (p + 2)));
            int dup = 0;
            for (size_t i = 0; i < *n && !dup; i++)
                dup = !strcmp(names[i], name);
            if (dup) {
                free(name);
            } else {
                names = xrealloc(names, (*n + 1) * sizeof *names);
                names[(*n)++] = name;
            }
            p = close + 1;
        }
    }
    return names;
}

/* The master's environment without FANOUT_* (a heap array of borrowed
 * strings, NULL-terminated). */
static char **worker_env(void)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = xcalloc(n + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FANOUT_", 7) != 0)
            env[k++] = environ[i];
    return env;
}

int spawn_start(spawn_set *s, size_t n, const spawn_cfg *cfg, char *err,
                size_t errlen)
{
    char dir[4096], exe[4200], conc[32];
    util_self_dir(dir, sizeof dir);
    snprintf(exe, sizeof exe, "%s/fanout-worker", dir);
    if (access(exe, X_OK) != 0) {
        snprintf(err, errlen, "--spawn-workers: cannot run %s: %s", exe,
                 strerror(errno));
        return -1;
    }
    snprintf(conc, sizeof conc, "%lld", (long long)cfg->concurrency);
    size_t nnames;
    char **names = spawn_env_names(cfg->headers, cfg->nheaders, &nnames);
    /* Built before fork: the child of a threaded process may only make
     * async-signal-safe calls. */
    char **argv = xcalloc(16 + 2 * nnames, sizeof *argv);
    size_t a = 0;
    argv[a++] = exe;
    argv[a++] = "--master";
    argv[a++] = (char *)cfg->endpoint;
    argv[a++] = "--concurrency";
    argv[a++] = conc;
    argv[a++] = "--log-level";
    argv[a++] = (char *)cfg->log_level;
    argv[a++] = "--log-format";
    argv[a++] = (char *)cfg->log_format;
    argv[a++] = "--once";
    if (cfg->curve_secret) {
        argv[a++] = "--curve-secret";
        argv[a++] = (char *)cfg->curve_secret;
        argv[a++] = "--curve-server-key";
        argv[a++] = (char *)cfg->curve_server_key;
    }
    for (size_t i = 0; i < nnames; i++) {
        argv[a++] = "--allow-env";
        argv[a++] = names[i];
    }
    argv[a] = NULL;
    char **env = worker_env();
    s->kids = xcalloc(n, sizeof *s->kids);
    s->json_log = cfg->json_log;
    pid_t parent = getpid();
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            snprintf(err, errlen, "--spawn-workers: pipe: %s", strerror(errno));
            rc = -1;
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(err, errlen, "--spawn-workers: fork: %s", strerror(errno));
            close(p[0]);
            close(p[1]);
            rc = -1;
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(0);
            /* dup2 clears O_CLOEXEC on the copy. */
            if (dup2(p[1], STDERR_FILENO) < 0)
                _exit(127);
            execve(exe, argv, env);
            _exit(127);
        }
        close(p[1]);
        fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
        s->kids[s->n++] = (spawn_child){.pid = pid, .fd = p[0], .status = 0};
    }
    free(env);
    free(argv);
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    if (rc == 0)
        LOG_INFO("workers.spawned", "started %zu local workers (%s)", n, exe);
    return rc;
}

/* 1 for a line a worker wrote at level error, or its last word. */
static int is_error_line(const char *l)
{
    return strstr(l, "\"level\":\"error\"") || strstr(l, "] error ") ||
           !strncmp(l, "fanout-worker: ", 15);
}

/* Forwards the worker's line to our stderr and remembers it if it is an
 * error. */
static void forward(spawn_set *s, spawn_child *k)
{
    k->line[k->len] = '\0';
    if (k->len == 0)
        return;
    if (is_error_line(k->line))
        snprintf(s->last_err, sizeof s->last_err, "%.1000s", k->line);
    if (s->json_log && k->line[0] != '{') {
        LOG_WARN("worker.stderr", "worker %d: %s", (int)k->pid, k->line);
    } else {
        k->line[k->len] = '\n';
        if (util_write_all(STDERR_FILENO, k->line, k->len + 1) != 0) {
            /* Our own stderr is gone: nothing better to do. */
        }
    }
    k->len = 0;
}

/* Reads what the worker's pipe holds now, forwarding whole lines. */
static void pump(spawn_set *s, spawn_child *k)
{
    while (k->fd >= 0) {
        char buf[4096];
        ssize_t r = read(k->fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            forward(s, k); /* a last line without newline */
            close(k->fd);
            k->fd = -1;
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n') {
                forward(s, k);
                continue;
            }
            /* One byte stays free for the newline forward() adds. */
            if (k->len == SPAWN_LINE_MAX_BYTES - 1)
                forward(s, k);
            k->line[k->len++] = buf[i];
        }
    }
}

size_t spawn_reap(spawn_set *s)
{
    size_t running = 0;
    for (size_t i = 0; i < s->n; i++) {
        spawn_child *k = &s->kids[i];
        pump(s, k);
        if (!k->pid)
            continue;
        int st;
        pid_t r = waitpid(k->pid, &st, WNOHANG);
        if (r == k->pid) {
            /* Whatever it wrote last is in the pipe: read it now, so
             * that spawn_all_unusable() sees its last words. */
            pump(s, k);
            if (WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0))
                LOG_WARN("worker.exited", "spawned worker %d exited (%s %d)",
                         (int)k->pid, WIFSIGNALED(st) ? "signal" : "status",
                         WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            k->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            k->pid = 0;
        } else {
            running++;
        }
    }
    return running;
}

int spawn_all_unusable(const spawn_set *s, char *line, size_t cap)
{
    if (s->n == 0)
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->kids[i].pid || s->kids[i].status != 2)
            return 0;
    snprintf(line, cap, "%s", s->last_err);
    return 1;
}

void spawn_stop(spawn_set *s, int64_t timeout_ms)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->kids[i].pid)
            kill(s->kids[i].pid, SIGTERM);
    int64_t deadline = clock_now_ns() + timeout_ms * FO_NS_PER_MS;
    while (spawn_reap(s) > 0 && clock_now_ns() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < s->n; i++) {
        spawn_child *k = &s->kids[i];
        if (k->pid) {
            kill(k->pid, SIGKILL);
            waitpid(k->pid, NULL, 0);
            k->pid = 0;
        }
        pump(s, k);
        if (k->fd >= 0)
            close(k->fd);
        k->fd = -1;
    }
    FO_FREE(&s->kids);
    s->n = 0;
}
