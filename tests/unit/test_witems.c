/* test_witems.c - the items a worker holds (worker/witems.h): giving back
 * what is not in flight when the master takes the items back, and marking
 * what is in flight orphaned so that it is never retried. */
#include "fmacros.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "util.h"
#include "witems.h"

static witem *add(witems *s, uint32_t no, const char *key)
{
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_WORK;
    m.u.work.ref = (proto_ref){no, 0};
    m.u.work.key = xstrdup(key);
    m.u.work.url = xstrdup("http://127.0.0.1:1/x");
    m.u.work.idem_key = xstrdup(key);
    witem *it = witems_add(s, &m);
    proto_msg_fini(&m);
    return it;
}

/* One item in flight, one waiting out a backoff, one ready: a rejoin gives
 * back the waiting and the ready ones and orphans the one in flight. */
static void test_rejoin_drops_waiting_and_orphans_flight(void **state)
{
    (void)state;
    witems s;
    witems_init(&s);
    witem *flight = add(&s, 1, "a");
    witem *waiting = add(&s, 2, "b");
    add(&s, 3, "c");
    assert_ptr_equal(witems_pop_ready(&s), flight);
    flight->state = WI_FLIGHT;
    assert_ptr_equal(witems_pop_ready(&s), waiting);
    witems_wait(&s, waiting, 5000);
    assert_int_equal(witems_held(&s), 3);
    assert_false(flight->orphaned);

    proto_ref *refs = NULL;
    uint32_t n = 0;
    witems_drop_unstarted(&s, &refs, &n);
    assert_int_equal(n, 2);
    assert_true((refs[0].batch == 2 && refs[1].batch == 3) ||
                (refs[0].batch == 3 && refs[1].batch == 2));
    free(refs);
    assert_int_equal(witems_held(&s), 1);
    assert_int_equal(witems_ready(&s), 0);
    assert_true(flight->orphaned);
    /* The waiting item's backoff ending later wakes nothing. */
    assert_int_equal(witems_wake(&s, 10000), INT64_MAX);
    assert_int_equal(witems_ready(&s), 0);
    witems_fini(&s);
}

/* Items that arrive after the rejoin are not orphaned. */
static void test_new_items_are_not_orphaned(void **state)
{
    (void)state;
    witems s;
    witems_init(&s);
    witems_drop_unstarted(&s, NULL, NULL);
    witem *it = add(&s, 7, "d");
    assert_false(it->orphaned);
    witems_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejoin_drops_waiting_and_orphans_flight),
        cmocka_unit_test(test_new_items_are_not_orphaned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
