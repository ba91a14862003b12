/*
 * keys.h - CurveZMQ key files.
 *
 * fanout-keygen DIR/NAME writes two text files in ZeroMQ's Z85 encoding:
 * NAME.key (mode 0600) holds the public and the secret key, NAME.pub (0644)
 * only the public one, to be copied to the other side:
 *
 *     # fanout CurveZMQ key pair (keep this file secret)
 *     public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
 *     secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
 *
 * A master admits the workers whose NAME.pub is in its --curve-allow
 * directory. Keys are checked for form (40 Z85 characters) when read.
 */
#ifndef FANOUT_KEYS_H
#define FANOUT_KEYS_H

#include <stddef.h>

#include "error.h"

#define KEYS_Z85_LEN 40
#define KEYS_MAX_ALLOWED 10000

typedef struct keys_pair {
    char public_key[KEYS_Z85_LEN + 1]; /* Z85, NUL-terminated */
    char secret_key[KEYS_Z85_LEN + 1]; /* Z85, or "" when only public */
} keys_pair;

/* 1 when s is exactly 40 characters of the Z85 alphabet. */
int keys_valid_z85(const char *s);
/* Writes DIR/NAME.key and DIR/NAME.pub for kp (path is "DIR/NAME"),
 * creating DIR and its missing parents with mode 0700 first. Never
 * overwrites: an existing file fails with errno EEXIST. Returns FO_OK or
 * FO_EIO with err naming the file or directory and errno set. */
FO_WUR fo_err keys_write(const char *path, const keys_pair *kp, char *err,
                         size_t errlen);
/* Reads a .key or .pub file. need_secret: fail when there is no secret.
 * Returns FO_OK or FO_EINVAL/FO_EIO with err naming the file. */
FO_WUR fo_err keys_read(const char *file, int need_secret, keys_pair *out,
                        char *err, size_t errlen);
/* Reads every *.pub (and *.key) in dir into a heap array of public keys
 * (the caller frees it). Returns FO_OK, or an error naming the file; an
 * empty directory is an error (nobody could join). */
FO_WUR fo_err keys_read_dir(const char *dir, keys_pair **out, size_t *n,
                            char *err, size_t errlen);

#endif
