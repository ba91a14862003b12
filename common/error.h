/*
 * error.h - fanout's one error enum.
 *
 * Every function that can fail returns an fo_err; 0 is success. Codes are
 * generated from one X-macro list together with their names and messages, so
 * the enum, fo_strerror() and fo_errname() never drift apart. Never renumber
 * a code: retired codes keep their slot (the curl CURLcode habit). Human
 * detail (which flag, which line) goes into a caller-supplied buffer, not
 * into the code.
 */
#ifndef FANOUT_ERROR_H
#define FANOUT_ERROR_H

#define FO_ERRNO_MAP(X)                                                        \
    X(OK, 0, "success")                                                        \
    X(EINVAL, 1, "invalid argument or value")                                  \
    X(ENOMEM, 2, "out of memory")                                              \
    X(ETOOBIG, 3, "size exceeds its cap")                                      \
    X(EPROTO, 4, "malformed protocol message")                                 \
    X(EVERSION, 5, "unsupported protocol version")                             \
    X(EIO, 6, "input/output error")                                            \
    X(EMISSING, 7, "required field is missing")                                \
    X(EAGAIN, 8, "try again later")                                            \
    X(EEOF, 9, "end of input")                                                 \
    X(ESTORE, 10, "state store error")                                         \
    X(EMISMATCH, 11, "state belongs to a different job")                       \
    X(EUSAGE, 12, "usage error")                                               \
    X(EDENIED, 13, "not permitted")

typedef enum {
#define FO_ERR_ENUM(name, num, msg) FO_##name = num,
    FO_ERRNO_MAP(FO_ERR_ENUM)
#undef FO_ERR_ENUM
} fo_err;

/* Returns a static sentence describing err; never NULL. */
const char *fo_strerror(fo_err err);
/* Returns the code's name without prefix ("EINVAL"); never NULL. */
const char *fo_errname(fo_err err);

#if defined(__GNUC__)
#define FO_WUR __attribute__((warn_unused_result))
#define FO_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define FO_WUR
#define FO_PRINTF(fmt, args)
#endif

#endif
