/* outlock.c - the --out lock; see outlock.h. */
#include "fmacros.h"
#include "outlock.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

void outlock_init(outlock *l)
{
    l->fd = -1;
}

/* The pid written in the lock file, or 0 when it holds none. */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : 0;
}

fo_err outlock_acquire(outlock *l, const char *dir, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "--out %s: cannot open %s: %s", dir, path,
                 strerror(errno));
        return FO_EIO;
    }
    int r;
    while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (r != 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
        close(fd);
        if (e != EWOULDBLOCK) {
            snprintf(err, errlen, "--out %s: flock %s: %s", dir, path,
                     strerror(e));
            return FO_EIO;
        }
        if (pid)
            snprintf(err, errlen,
                     "--out %s is in use by fanout-master pid %ld (lock %s)",
                     dir, pid, path);
        else
            snprintf(err, errlen,
                     "--out %s is in use by another fanout-master (lock %s)",
                     dir, path);
        return FO_EUSAGE;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "--out %s: writing %s: %s", dir, path,
                 strerror(errno));
        close(fd);
        return FO_EIO;
    }
    l->fd = fd;
    return FO_OK;
}

void outlock_release(outlock *l)
{
    if (l->fd < 0)
        return;
    /* A stale pid in a file nobody locks is harmless: the next holder
     * rewrites it. Closing drops the lock. */
    close(l->fd);
    l->fd = -1;
}
