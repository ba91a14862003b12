/*
 * util.h - allocation that aborts on exhaustion, and small string helpers.
 *
 * Running out of memory is not a condition fanout can recover from
 * meaningfully, so xmalloc and friends abort with a message (the Redis
 * zmalloc habit). This is only safe because every size that comes from the
 * network or from input is capped before it reaches an allocator.
 */
#ifndef FANOUT_UTIL_H
#define FANOUT_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Aborting allocators; never return NULL. Free with free(). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
/* Returns a heap copy of s (caller frees); NULL in gives NULL out. */
char *xstrdup(const char *s);
/* Returns a NUL-terminated heap copy of n bytes at s (caller frees). */
char *xstrndup(const char *s, size_t n);

/* free(*pp) and set *pp to NULL; safe on NULL and when called twice. */
#define FO_FREE(pp)                                                            \
    do {                                                                       \
        free(*(pp));                                                           \
        *(pp) = NULL;                                                          \
    } while (0)

/* Parses a whole decimal string into *out; returns 0, or -1 when s is not
 * entirely a number or is outside [min, max]. */
int util_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses a duration: "250ms", "5s", "2m", "1h", or a bare number of
 * milliseconds. Returns 0 and sets *out_ms, or -1 on malformed input. */
int util_parse_duration_ms(const char *s, int64_t *out_ms);

/* Parses a size: "1048576", "64k", "1MiB", "2m", "1g" (powers of 1024).
 * Returns 0 and sets *out, or -1. */
int util_parse_size(const char *s, int64_t *out);

/* Writes a 64-bit FNV-1a hash of data into 16 lowercase hex chars + NUL. */
void util_hash_hex(const void *data, size_t len, uint64_t seed, char out[17]);

/* Writes all n bytes to fd, retrying short writes and EINTR. Returns 0,
 * or -1 with errno set (EIO if the fd accepted nothing). */
int util_write_all(int fd, const void *data, size_t n);

/* Writes url into out (NUL-terminated, truncated to cap) with its secrets
 * masked, for error and log messages: the password of a userinfo part
 * (":pw@host" becomes ":***@host", "user:pw@" becomes "user:***@", and a
 * lone "pw@", which Redis reads as a password, becomes "***@") and the
 * values of query parameters that carry credentials (sig, as in an Azure
 * SAS token, and password, secret, token, access_token, key, apikey,
 * api_key): "?sv=2024-01-01&sig=***". Text without "://" is copied
 * unchanged, so any --input may be passed through it. Returns out. */
char *util_redact_url(const char *url, char *out, size_t cap);

/* The length of the valid UTF-8 sequence at s (1-4), or 0 when the bytes
 * there are not one (overlong, surrogate, above U+10FFFF, cut short by n or
 * by a NUL). n may be SIZE_MAX for a NUL-terminated string. */
size_t util_utf8_len(const unsigned char *s, size_t n);

/* Returns the directory of the running executable in buf, or "." */
void util_self_dir(char *buf, size_t cap);

#endif
