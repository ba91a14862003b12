/* spawn.c - local worker processes; see spawn.h. */
#include "fmacros.h"
#include "spawn.h"
#include "clock.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int spawn_start(spawn_set *s, size_t n, const char *endpoint,
                int64_t concurrency, const char *level, char *err,
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
    snprintf(conc, sizeof conc, "%lld", (long long)concurrency);
    s->pids = xcalloc(n, sizeof *s->pids);
    s->n = n;
    pid_t parent = getpid();
    for (size_t i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(err, errlen, "--spawn-workers: fork: %s", strerror(errno));
            return -1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(0);
            char *argv[] = {
                exe,  "--master",    (char *)endpoint, "--concurrency",
                conc, "--log-level", (char *)level,    "--once",
                NULL};
            execv(exe, argv);
            _exit(127);
        }
        s->pids[i] = pid;
    }
    LOG_INFO("workers.spawned", "started %zu local workers (%s)", n, exe);
    return 0;
}

size_t spawn_reap(spawn_set *s)
{
    size_t running = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->pids[i])
            continue;
        int st;
        pid_t r = waitpid(s->pids[i], &st, WNOHANG);
        if (r == s->pids[i]) {
            if (WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0))
                LOG_WARN("worker.exited", "spawned worker %d exited (%s %d)",
                         (int)s->pids[i], WIFSIGNALED(st) ? "signal" : "status",
                         WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            s->pids[i] = 0;
        } else {
            running++;
        }
    }
    return running;
}

void spawn_stop(spawn_set *s, int64_t timeout_ms)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->pids[i])
            kill(s->pids[i], SIGTERM);
    int64_t deadline = clock_now_ns() + timeout_ms * FO_NS_PER_MS;
    while (spawn_reap(s) > 0 && clock_now_ns() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->pids[i]) {
            kill(s->pids[i], SIGKILL);
            waitpid(s->pids[i], NULL, 0);
            s->pids[i] = 0;
        }
    }
    FO_FREE(&s->pids);
    s->n = 0;
}
