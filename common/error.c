/* error.c - names and messages for fo_err, generated from FO_ERRNO_MAP. */
#include "fmacros.h"
#include "error.h"

const char *fo_strerror(fo_err err)
{
    switch (err) {
#define FO_ERR_MSG(name, num, msg)                                             \
    case FO_##name:                                                            \
        return msg;
        FO_ERRNO_MAP(FO_ERR_MSG)
#undef FO_ERR_MSG
    }
    return "unknown error";
}

const char *fo_errname(fo_err err)
{
    switch (err) {
#define FO_ERR_NAME(name, num, msg)                                            \
    case FO_##name:                                                            \
        return #name;
        FO_ERRNO_MAP(FO_ERR_NAME)
#undef FO_ERR_NAME
    }
    return "UNKNOWN";
}
