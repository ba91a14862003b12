/* test_curve.c - the master's key roles (master/curve.h): the real ZAP
 * handler over inproc answers with the key's role as user id, a key with
 * two roles is refused, and each role may send only its own messages. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"
#include "keys.h"
#include "log.h"
#include "proto.h"

typedef struct fixture {
    char dir[64];       /* temp directory */
    char allow[96];     /* worker keys */
    char ctl[96];       /* operator keys */
    char secret[128];   /* master key pair file */
    keys_pair worker;   /* a worker's pair */
    keys_pair op;       /* an operator's pair */
    keys_pair stranger; /* listed nowhere */
    void *zctx;         /* the context the ZAP handler binds in */
} fixture;

static void make_pair(const char *path, keys_pair *kp)
{
    char err[600];
    assert_int_equal(zmq_curve_keypair(kp->public_key, kp->secret_key), 0);
    if (keys_write(path, kp, err, sizeof err))
        fail_msg("%s", err);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fanout-test-curve-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->allow, sizeof f->allow, "%s/allow", f->dir);
    snprintf(f->ctl, sizeof f->ctl, "%s/ctl", f->dir);
    char path[160];
    keys_pair m;
    snprintf(path, sizeof path, "%s/master", f->dir);
    make_pair(path, &m);
    snprintf(f->secret, sizeof f->secret, "%s/master.key", f->dir);
    snprintf(path, sizeof path, "%s/w1", f->allow);
    make_pair(path, &f->worker);
    snprintf(path, sizeof path, "%s/alice", f->ctl);
    make_pair(path, &f->op);
    snprintf(path, sizeof path, "%s/stranger", f->dir);
    make_pair(path, &f->stranger);
    f->zctx = zmq_ctx_new();
    log_init("test", LOG_LVL_ERROR, LOG_FMT_TEXT);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zmq_ctx_term(f->zctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Sends one ZAP request for the client key z85 and returns the status code
 * ("200"/"400") and user id of the handler's answer. */
static void zap_ask(curve *c, void *zctx, const char *z85, char status[4],
                    char *user, size_t userlen)
{
    void *req = zmq_socket(zctx, ZMQ_REQ);
    assert_int_equal(zmq_connect(req, "inproc://zeromq.zap.01"), 0);
    uint8_t key[32];
    assert_non_null(zmq_z85_decode(key, z85));
    const char *fr[] = {"1.0", "7", "fanout", "127.0.0.1", "", "CURVE"};
    for (int i = 0; i < 6; i++)
        assert_true(zmq_send(req, fr[i], strlen(fr[i]), ZMQ_SNDMORE) >= 0);
    assert_int_equal(zmq_send(req, key, 32, 0), 32);
    zmq_pollitem_t pi = {c->zap, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&pi, 1, 5000), 1);
    curve_handle(c);
    char buf[6][256];
    int len[6];
    for (int i = 0; i < 6; i++) {
        len[i] = zmq_recv(req, buf[i], sizeof buf[i] - 1, 0);
        assert_true(len[i] >= 0);
        buf[i][len[i]] = '\0';
    }
    assert_string_equal(buf[0], "1.0");
    assert_string_equal(buf[1], "7");
    snprintf(status, 4, "%.3s", buf[2]);
    snprintf(user, userlen, "%.63s", buf[4]);
    zmq_close(req);
}

static void each_key_gets_its_role(void **state)
{
    fixture *f = *state;
    curve c = {0};
    char err[1200] = "";
    if (curve_start(&c, f->zctx, f->secret, f->allow, f->ctl, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(c.nallowed, 1);
    assert_int_equal(c.noperators, 1);
    char status[4], user[64];
    zap_ask(&c, f->zctx, f->worker.public_key, status, user, sizeof user);
    assert_string_equal(status, "200");
    assert_string_equal(user, "worker");
    assert_int_equal(curve_role_of(user), CURVE_ROLE_WORKER);
    zap_ask(&c, f->zctx, f->op.public_key, status, user, sizeof user);
    assert_string_equal(status, "200");
    assert_string_equal(user, "operator");
    assert_int_equal(curve_role_of(user), CURVE_ROLE_OPERATOR);
    zap_ask(&c, f->zctx, f->stranger.public_key, status, user, sizeof user);
    assert_string_equal(status, "400");
    assert_int_equal(c.n_denied, 1);
    curve_fini(&c);
    curve_fini(&c); /* twice is safe */
}

static void without_ctl_allow_no_operator_is_admitted(void **state)
{
    fixture *f = *state;
    curve c = {0};
    char err[1200] = "";
    if (curve_start(&c, f->zctx, f->secret, f->allow, NULL, err, sizeof err))
        fail_msg("%s", err);
    char status[4], user[64];
    zap_ask(&c, f->zctx, f->op.public_key, status, user, sizeof user);
    assert_string_equal(status, "400");
    curve_fini(&c);
}

static void a_key_with_two_roles_is_refused(void **state)
{
    fixture *f = *state;
    char src[160], dst[160];
    snprintf(src, sizeof src, "%s/w1.pub", f->allow);
    snprintf(dst, sizeof dst, "%s/w1-too.pub", f->ctl);
    assert_int_equal(link(src, dst), 0);
    curve c = {0};
    char err[1200] = "";
    assert_int_equal(
        curve_start(&c, f->zctx, f->secret, f->allow, f->ctl, err, sizeof err),
        FO_EUSAGE);
    assert_non_null(strstr(err, "w1.pub in --curve-allow"));
    assert_non_null(strstr(err, "w1-too.pub in --ctl-allow"));
    assert_non_null(strstr(err, "a key has one role"));
    curve_fini(&c);
    assert_int_equal(unlink(dst), 0);
}

static void reload_with_two_roles_keeps_the_old_lists(void **state)
{
    fixture *f = *state;
    curve c = {0};
    char err[1200] = "";
    if (curve_start(&c, f->zctx, f->secret, f->allow, f->ctl, err, sizeof err))
        fail_msg("%s", err);
    char src[160], dst[160];
    snprintf(src, sizeof src, "%s/alice.pub", f->ctl);
    snprintf(dst, sizeof dst, "%s/alice.pub", f->allow);
    assert_int_equal(link(src, dst), 0);
    curve_reload(&c);
    char status[4], user[64];
    zap_ask(&c, f->zctx, f->op.public_key, status, user, sizeof user);
    assert_string_equal(user, "operator");
    assert_int_equal(unlink(dst), 0);
    /* A new operator key is admitted after a reload. */
    char path[160];
    keys_pair bob;
    snprintf(path, sizeof path, "%s/bob", f->ctl);
    make_pair(path, &bob);
    curve_reload(&c);
    assert_int_equal(c.noperators, 2);
    zap_ask(&c, f->zctx, bob.public_key, status, user, sizeof user);
    assert_string_equal(status, "200");
    assert_string_equal(user, "operator");
    curve_fini(&c);
}

static void role_of_user_ids(void **state)
{
    (void)state;
    assert_int_equal(curve_role_of(NULL), CURVE_ROLE_NONE);
    assert_int_equal(curve_role_of(""), CURVE_ROLE_NONE);
    assert_int_equal(curve_role_of("workers"), CURVE_ROLE_NONE);
    assert_int_equal(curve_role_of("worker"), CURVE_ROLE_WORKER);
    assert_int_equal(curve_role_of("operator"), CURVE_ROLE_OPERATOR);
}

static void each_role_sends_only_its_messages(void **state)
{
    (void)state;
    static const int worker_msgs[] = {
        PROTO_HELLO,     PROTO_HEARTBEAT, PROTO_TOKEN_REQ, PROTO_RESULT,
        PROTO_THROTTLED, PROTO_RATEINFO,  PROTO_BYE};
    for (size_t i = 0; i < sizeof worker_msgs / sizeof worker_msgs[0]; i++) {
        assert_true(curve_role_may_send(CURVE_ROLE_WORKER, worker_msgs[i]));
        assert_false(curve_role_may_send(CURVE_ROLE_OPERATOR, worker_msgs[i]));
        assert_true(curve_role_may_send(CURVE_ROLE_NONE, worker_msgs[i]));
    }
    assert_false(curve_role_may_send(CURVE_ROLE_WORKER, PROTO_CTL));
    assert_true(curve_role_may_send(CURVE_ROLE_OPERATOR, PROTO_CTL));
    assert_true(curve_role_may_send(CURVE_ROLE_NONE, PROTO_CTL));
    /* What only the master sends is no peer's to send. */
    assert_false(curve_role_may_send(CURVE_ROLE_WORKER, PROTO_JOB));
    assert_false(curve_role_may_send(CURVE_ROLE_WORKER, PROTO_WORK));
    assert_false(curve_role_may_send(CURVE_ROLE_OPERATOR, PROTO_CTL_REPLY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(each_key_gets_its_role, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            without_ctl_allow_no_operator_is_admitted, setup, teardown),
        cmocka_unit_test_setup_teardown(a_key_with_two_roles_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            reload_with_two_roles_keeps_the_old_lists, setup, teardown),
        cmocka_unit_test(role_of_user_ids),
        cmocka_unit_test(each_role_sends_only_its_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
