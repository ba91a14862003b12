/*
 * fmacros.h - feature macros every fanout .c file includes first.
 *
 * One place decides which libc surface we build against, so no file sees a
 * different <stdio.h> from its neighbour (the Redis src/fmacros.h habit).
 * It also bans the string functions that have caused overflows elsewhere:
 * use snprintf, memcpy with an explicit size, strtol and friends instead.
 */
#ifndef FANOUT_FMACROS_H
#define FANOUT_FMACROS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define _FILE_OFFSET_BITS 64

#include <string.h>
#include <stdlib.h>
#include <stdio.h>

#undef sprintf
#undef strcpy
#undef strcat
#undef strtok
#undef atoi
#define sprintf(...) fanout_banned_sprintf_use_snprintf
#define strcpy(...) fanout_banned_strcpy_use_memcpy
#define strcat(...) fanout_banned_strcat_use_snprintf
#define strtok(...) fanout_banned_strtok_use_strtok_r
#define atoi(...) fanout_banned_atoi_use_strtol

#endif
