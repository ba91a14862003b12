/* test_ctlclient.c - fanout-ctl's reading of the master's answers and of
 * failed handshakes (master/ctlclient.h). */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <zmq.h>

#include "ctlclient.h"

#define EP "tcp://10.0.0.1:5555"

static void ok_reply_is_ok(void **state)
{
    (void)state;
    char msg[512] = "";
    assert_int_equal(
        ctlclient_reply("{\"ok\":true,\"items\":3}", msg, sizeof msg),
        CTLCLIENT_OK);
}

static void forbidden_reply_says_what_key_is_needed(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(
        ctlclient_reply("{\"ok\":false,\"error\":\"forbidden: CTL from a "
                        "worker key\"}",
                        msg, sizeof msg),
        CTLCLIENT_FORBIDDEN);
    assert_non_null(
        strstr(msg, "the master refused: forbidden: CTL from a worker key"));
    assert_non_null(strstr(msg, "--ctl-allow"));
}

static void other_refusal_is_printed_as_is(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(ctlclient_reply("{\"ok\":false,\"error\":\"--rate: bad\"}",
                                     msg, sizeof msg),
                     CTLCLIENT_REFUSED);
    assert_string_equal(msg, "the master refused: --rate: bad");
    assert_int_equal(ctlclient_reply("{\"ok\":false}", msg, sizeof msg),
                     CTLCLIENT_REFUSED);
    assert_string_equal(msg, "the master refused: no reason given");
}

static void garbage_is_a_bad_answer(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(ctlclient_reply("not json", msg, sizeof msg),
                     CTLCLIENT_BAD);
    assert_int_equal(ctlclient_reply("{\"ok\":1}", msg, sizeof msg),
                     CTLCLIENT_BAD);
    assert_non_null(strstr(msg, "bad answer"));
}

static void no_keys_against_curve_says_keys_are_missing(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(
        ctlclient_handshake_failed(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                   ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH,
                                   0, EP, msg, sizeof msg),
        1);
    assert_non_null(strstr(msg, "the master at " EP " requires Curve keys: "
                                "pass --curve-secret"));
    assert_non_null(strstr(msg, "--curve-server-key"));
    /* The master may close on us before we notice the mismatch. */
    assert_int_equal(
        ctlclient_handshake_failed(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0, 0,
                                   EP, msg, sizeof msg),
        1);
    assert_non_null(strstr(msg, "requires Curve keys"));
}

static void keys_against_plain_master_says_so(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(
        ctlclient_handshake_failed(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                   ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH,
                                   1, EP, msg, sizeof msg),
        1);
    assert_non_null(strstr(msg, "does not use Curve keys"));
}

static void refused_key_names_ctl_allow(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(ctlclient_handshake_failed(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH,
                                                400, 1, EP, msg, sizeof msg),
                     1);
    assert_non_null(strstr(msg, "refused our Curve key"));
    assert_non_null(strstr(msg, "--ctl-allow"));
}

static void success_events_are_no_failure(void **state)
{
    (void)state;
    char msg[512] = "untouched";
    assert_int_equal(ctlclient_handshake_failed(ZMQ_EVENT_HANDSHAKE_SUCCEEDED,
                                                0, 1, EP, msg, sizeof msg),
                     0);
    assert_int_equal(ctlclient_handshake_failed(ZMQ_EVENT_CONNECTED, 0, 0, EP,
                                                msg, sizeof msg),
                     0);
    assert_string_equal(msg, "untouched");
}

static void silence_hints_at_keys(void **state)
{
    (void)state;
    char msg[512];
    ctlclient_no_answer(EP, 1000, 0, 0, msg, sizeof msg);
    assert_non_null(strstr(msg, "no answer from " EP " within 1000 ms"));
    assert_non_null(strstr(msg, "pass --curve-secret"));
    ctlclient_no_answer(EP, 1000, 1, 0, msg, sizeof msg);
    assert_non_null(strstr(msg, "--curve-server-key its public key"));
    ctlclient_no_answer(EP, 1000, 1, 1, msg, sizeof msg);
    assert_non_null(strstr(msg, "did not answer in time"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ok_reply_is_ok),
        cmocka_unit_test(forbidden_reply_says_what_key_is_needed),
        cmocka_unit_test(other_refusal_is_printed_as_is),
        cmocka_unit_test(garbage_is_a_bad_answer),
        cmocka_unit_test(no_keys_against_curve_says_keys_are_missing),
        cmocka_unit_test(keys_against_plain_master_says_so),
        cmocka_unit_test(refused_key_names_ctl_allow),
        cmocka_unit_test(success_events_are_no_failure),
        cmocka_unit_test(silence_hints_at_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
