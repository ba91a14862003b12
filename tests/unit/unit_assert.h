/*
 * unit_assert.h - shared assertions for the cmocka unit tests.
 *
 * Included after <cmocka.h> and error.h. assert_fo() compares fo_err codes
 * and prints both names on a mismatch, so a failure reads "expected
 * ETOOBIG, got OK" instead of "0x3 != 0".
 */
#ifndef FANOUT_UNIT_ASSERT_H
#define FANOUT_UNIT_ASSERT_H

#define assert_fo(expected, actual)                                            \
    do {                                                                       \
        fo_err want_ = (expected);                                             \
        fo_err got_ = (actual);                                                \
        if (want_ != got_)                                                     \
            fail_msg("%s:%d: expected %s, got %s", __FILE__, __LINE__,         \
                     fo_errname(want_), fo_errname(got_));                     \
    } while (0)

/* Asserts that haystack contains needle, printing both when it does not. */
#define assert_contains(haystack, needle)                                      \
    do {                                                                       \
        const char *h_ = (haystack);                                           \
        const char *n_ = (needle);                                             \
        if (!h_ || !strstr(h_, n_))                                            \
            fail_msg("%s:%d: '%s' does not contain '%s'", __FILE__, __LINE__,  \
                     h_ ? h_ : "(null)", n_);                                  \
    } while (0)

#endif
