/* keys.c - CurveZMQ key files; see keys.h. */
#include "fmacros.h"
#include "keys.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHI"
                                "JKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int keys_valid_z85(const char *s)
{
    size_t n = strlen(s);
    if (n != KEYS_Z85_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(z85_chars, s[i]) || s[i] == '\0')
            return 0;
    return 1;
}

static int write_text(const char *path, mode_t mode, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    if (util_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

/* Creates the missing directories above path ("keys/ops/master" makes keys/
 * and keys/ops/), each 0700 because they hold secret keys; directories that
 * exist keep their mode. Returns 0, or -1 with errno and err naming the
 * directory. */
static int make_parents(const char *path, char *err, size_t errlen)
{
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s", path);
    if (n < 0 || (size_t)n >= sizeof dir) {
        errno = ENAMETOOLONG;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %s: %s", dir,
                     strerror(errno));
            return -1;
        }
        *p = '/';
    }
    return 0;
}

fo_err keys_write(const char *path, const keys_pair *kp, char *err,
                  size_t errlen)
{
    char key[4200], pub[4200], text[512];
    if (make_parents(path, err, errlen) != 0)
        return FO_EIO;
    snprintf(key, sizeof key, "%s.key", path);
    snprintf(pub, sizeof pub, "%s.pub", path);
    snprintf(text, sizeof text,
             "# fanout CurveZMQ key pair (keep this file secret)\n"
             "public-key = \"%s\"\nsecret-key = \"%s\"\n",
             kp->public_key, kp->secret_key);
    if (write_text(key, 0600, text) != 0) {
        snprintf(err, errlen, "%s: %s", key, strerror(errno));
        return FO_EIO;
    }
    snprintf(text, sizeof text,
             "# fanout CurveZMQ public key\npublic-key = \"%s\"\n",
             kp->public_key);
    if (write_text(pub, 0644, text) != 0) {
        snprintf(err, errlen, "%s: %s", pub, strerror(errno));
        unlink(key);
        return FO_EIO;
    }
    return FO_OK;
}

/* Finds `name = "value"` in text and copies a valid key into out. */
static int field(const char *text, const char *name, char *out)
{
    const char *p = text;
    size_t nl = strlen(name);
    while ((p = strstr(p, name))) {
        if (p != text && p[-1] != '\n') {
            p += nl;
            continue;
        }
        const char *q = p + nl;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q++ != '=')
            return 0;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q++ != '"')
            return 0;
        const char *end = strchr(q, '"');
        if (!end || end - q != KEYS_Z85_LEN)
            return 0;
        memcpy(out, q, KEYS_Z85_LEN);
        out[KEYS_Z85_LEN] = '\0';
        return keys_valid_z85(out);
    }
    return 0;
}

fo_err keys_read(const char *file, int need_secret, keys_pair *out, char *err,
                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return FO_EIO;
    }
    char text[2048];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return FO_EIO;
    }
    text[n] = '\0';
    if (!field(text, "public-key", out->public_key)) {
        snprintf(err, errlen,
                 "%s: no valid public-key = \"...\" line (40 Z85 "
                 "characters); make keys with fanout-keygen",
                 file);
        return FO_EINVAL;
    }
    if (!field(text, "secret-key", out->secret_key) && need_secret) {
        snprintf(err, errlen,
                 "%s: no secret-key line: give the .key file, not the .pub",
                 file);
        return FO_EINVAL;
    }
    return FO_OK;
}

fo_err keys_read_dir(const char *dir, keys_pair **out, size_t *n, char *err,
                     size_t errlen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return FO_EIO;
    }
    struct dirent *e;
    fo_err rc = FO_OK;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".pub") != 0)
            continue;
        if (*n >= KEYS_MAX_ALLOWED) {
            snprintf(err, errlen, "%s: more than %d keys", dir,
                     KEYS_MAX_ALLOWED);
            rc = FO_ETOOBIG;
            break;
        }
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        keys_pair kp;
        if ((rc = keys_read(path, 0, &kp, err, errlen)) != FO_OK)
            break;
        *out = xrealloc(*out, (*n + 1) * sizeof **out);
        memset(&(*out)[*n], 0, sizeof **out);
        memcpy((*out)[*n].public_key, kp.public_key, sizeof kp.public_key);
        (*n)++;
    }
    closedir(d);
    if (rc == FO_OK && *n == 0) {
        snprintf(err, errlen,
                 "%s holds no *.pub files: no worker could join (copy each "
                 "worker's NAME.pub there)",
                 dir);
        rc = FO_EINVAL;
    }
    if (rc) {
        FO_FREE(out);
        *n = 0;
    }
    return rc;
}
