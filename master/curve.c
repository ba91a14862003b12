/*
 * curve.c - the master's ZAP handler and key lists; see curve.h.
 */
#include "fmacros.h"
#include "curve.h"
#include "log.h"
#include "proto.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Reads dir's public keys into a heap array of binary keys (*out, caller
 * frees). FO_EUSAGE with err naming the flag. */
static fo_err read_list(const char *flag, const char *dir, uint8_t (**out)[32],
                        size_t *n, char *err, size_t errlen)
{
    keys_pair *pubs;
    char e[600];
    fo_err rc = keys_read_dir(dir, &pubs, n, e, sizeof e);
    if (rc) {
        snprintf(err, errlen, "%s %s", flag, e);
        *out = NULL;
        return rc == FO_EINVAL ? FO_EINVAL : FO_EUSAGE;
    }
    *out = xcalloc(*n ? *n : 1, sizeof **out);
    for (size_t i = 0; i < *n; i++)
        zmq_z85_decode((*out)[i], pubs[i].public_key);
    free(pubs);
    return FO_OK;
}

/* The name of the file in dir holding the public key z85, into out: a
 * .pub before a .key, "?" when none is found again (removed meanwhile). */
static void file_of(const char *dir, const char *z85, char *out, size_t cap)
{
    snprintf(out, cap, "?");
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || (strcmp(e->d_name + l - 4, ".pub") &&
                      strcmp(e->d_name + l - 4, ".key")))
            continue;
        char path[4096], ignored[600];
        keys_pair kp;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!keys_read(path, 0, &kp, ignored, sizeof ignored) &&
            !strcmp(kp.public_key, z85)) {
            snprintf(out, cap, "%s", e->d_name);
            if (!strcmp(e->d_name + l - 4, ".pub"))
                break;
        }
    }
    closedir(d);
}

static int listed(uint8_t (*keys)[32], size_t n, const uint8_t *key)
{
    for (size_t i = 0; i < n; i++)
        if (!memcmp(keys[i], key, 32))
            return 1;
    return 0;
}

/* Reads both lists and installs them, or keeps the old ones and fills err
 * (FO_EUSAGE) when a directory is unusable or a key has two roles. */
static fo_err load_lists(curve *c, char *err, size_t errlen)
{
    uint8_t(*workers)[32] = NULL, (*ops)[32] = NULL;
    size_t nw = 0, no = 0;
    fo_err rc =
        read_list("--curve-allow", c->allow_dir, &workers, &nw, err, errlen);
    if (rc == FO_EINVAL && c->workers_may_be_none)
        rc = FO_OK; /* empty, and our spawned workers have their own key */
    if (!rc && c->ctl_dir)
        rc = read_list("--ctl-allow", c->ctl_dir, &ops, &no, err, errlen);
    for (size_t i = 0; !rc && i < no; i++) {
        if (listed(workers, nw, ops[i])) {
            char z85[41], wf[256], of[256];
            zmq_z85_encode(z85, ops[i], 32);
            file_of(c->allow_dir, z85, wf, sizeof wf);
            file_of(c->ctl_dir, z85, of, sizeof of);
            snprintf(err, errlen,
                     "the key %s is both a worker's (%s in --curve-allow %s) "
                     "and an operator's (%s in --ctl-allow %s): a key has "
                     "one role; remove it from one directory",
                     z85, wf, c->allow_dir, of, c->ctl_dir);
            rc = FO_EUSAGE;
        }
    }
    if (rc) {
        free(workers);
        free(ops);
        return rc;
    }
    free(c->allowed);
    free(c->operators);
    c->allowed = workers;
    c->nallowed = nw;
    c->operators = ops;
    c->noperators = no;
    return FO_OK;
}

fo_err curve_start(curve *c, void *zctx, const char *secret_file,
                   const char *allow_dir, const char *ctl_dir, char *err,
                   size_t errlen)
{
    char e[600];
    c->allow_dir = allow_dir;
    c->ctl_dir = ctl_dir;
    if (keys_read(secret_file, 1, &c->server_key, e, sizeof e)) {
        snprintf(err, errlen, "--curve-secret %s", e);
        return FO_EUSAGE;
    }
    if (load_lists(c, err, errlen))
        return FO_EUSAGE;
    c->zap = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(c->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(c->zap, "inproc://zeromq.zap.01") != 0) {
        snprintf(err, errlen,
                 "cannot start the Curve authentication handler: %s",
                 zmq_strerror(errno));
        return FO_EIO;
    }
    LOG_INFO("curve.enabled",
             "all sockets encrypted; %zu worker keys admitted from %s; %zu "
             "operator keys from %s",
             c->nallowed, allow_dir, c->noperators,
             c->ctl_dir ? c->ctl_dir : "nowhere (no --ctl-allow)");
    return FO_OK;
}

fo_err curve_spawn_keys(curve *c, const char *dir, char *key_path,
                        char *server_pub, size_t cap, char *err, size_t errlen)
{
    keys_pair kp;
    if (zmq_curve_keypair(kp.public_key, kp.secret_key) != 0) {
        snprintf(err, errlen, "cannot make a key pair for spawned workers: %s",
                 zmq_strerror(errno));
        return FO_EIO;
    }
    char base[4096];
    snprintf(base, sizeof base, "%s/worker", dir);
    if (keys_write(base, &kp, err, errlen) != FO_OK)
        return FO_EIO;
    snprintf(key_path, cap, "%s.key", base);
    snprintf(server_pub, cap, "%s/master.pub", dir);
    char text[256];
    int n = snprintf(text, sizeof text,
                     "# fanout CurveZMQ public key\npublic-key = \"%s\"\n",
                     c->server_key.public_key);
    FILE *f = fopen(server_pub, "w");
    if (!f || fwrite(text, 1, (size_t)n, f) != (size_t)n) {
        snprintf(err, errlen, "%s: %s", server_pub, strerror(errno));
        if (f)
            fclose(f);
        return FO_EIO;
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "%s: %s", server_pub, strerror(errno));
        return FO_EIO;
    }
    zmq_z85_decode(c->spawned, kp.public_key);
    c->has_spawned = 1;
    return FO_OK;
}

void curve_fini(curve *c)
{
    if (c->zap)
        zmq_close(c->zap);
    c->zap = NULL;
    FO_FREE(&c->allowed);
    c->nallowed = 0;
    FO_FREE(&c->operators);
    c->noperators = 0;
}

void curve_serve(const curve *c, void *sock)
{
    int server = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &server, sizeof server);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->server_key.secret_key,
                   KEYS_Z85_LEN + 1);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "fanout", 6);
}

/* SIGHUP: read both directories again, so a new worker host or operator
 * can join without a restart. Connections already admitted stay: ZAP runs
 * at the handshake. */
void curve_reload(curve *c)
{
    char err[1200];
    size_t before = c->nallowed, obefore = c->noperators;
    if (load_lists(c, err, sizeof err)) {
        LOG_ERROR("curve.reload_failed",
                  "%s; still admitting the %zu worker and %zu operator keys "
                  "from before",
                  err, before, obefore);
        return;
    }
    LOG_INFO("curve.reloaded",
             "%zu worker keys admitted from %s; %zu operator keys from %s",
             c->nallowed, c->allow_dir, c->noperators,
             c->ctl_dir ? c->ctl_dir : "nowhere (no --ctl-allow)");
}

/* Answers ZAP requests (RFC 27): admit a CURVE client whose key is in
 * either list, with its role as the user id. */
void curve_handle(curve *c)
{
    if (!c->zap)
        return;
    for (int turn = 0; turn < 100; turn++) {
        zmq_msg_t f[8];
        int nf = 0, more = 1;
        while (more && nf < 8) {
            zmq_msg_init(&f[nf]);
            if (zmq_msg_recv(&f[nf], c->zap, nf ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&f[nf]);
                if (nf == 0)
                    return;
                break;
            }
            more = zmq_msg_more(&f[nf]);
            nf++;
        }
        while (more) { /* more frames than a ZAP request has: drain */
            zmq_msg_t x;
            zmq_msg_init(&x);
            zmq_msg_recv(&x, c->zap, 0);
            more = zmq_msg_more(&x);
            zmq_msg_close(&x);
        }
        int role = CURVE_ROLE_NONE;
        char addr[64] = "?", keytxt[41] = "?";
        if (nf == 7 && zmq_msg_size(&f[5]) == 5 &&
            !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
            zmq_msg_size(&f[6]) == 32) {
            const uint8_t *key = zmq_msg_data(&f[6]);
            if (listed(c->allowed, c->nallowed, key) ||
                (c->has_spawned && !memcmp(key, c->spawned, 32)))
                role = CURVE_ROLE_WORKER;
            else if (listed(c->operators, c->noperators, key))
                role = CURVE_ROLE_OPERATOR;
            zmq_z85_encode(keytxt, key, 32);
            snprintf(addr, sizeof addr, "%.*s",
                     (int)(zmq_msg_size(&f[3]) < 63 ? zmq_msg_size(&f[3]) : 63),
                     (const char *)zmq_msg_data(&f[3]));
        }
        const char *rid = nf > 1 ? zmq_msg_data(&f[1]) : "";
        size_t rid_len = nf > 1 ? zmq_msg_size(&f[1]) : 0;
        zmq_send(c->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(c->zap, rid, rid_len, ZMQ_SNDMORE);
        int ok = role != CURVE_ROLE_NONE;
        const char *user = role == CURVE_ROLE_WORKER     ? CURVE_USER_WORKER
                           : role == CURVE_ROLE_OPERATOR ? CURVE_USER_OPERATOR
                                                         : "";
        zmq_send(c->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(c->zap, ok ? "OK" : "key not admitted", ok ? 2 : 16,
                 ZMQ_SNDMORE);
        zmq_send(c->zap, user, strlen(user), ZMQ_SNDMORE);
        zmq_send(c->zap, "", 0, 0);
        if (!ok) {
            c->n_denied++;
            if (c->n_denied <= 20 || c->n_denied % 1000 == 0)
                LOG_WARN("curve.denied",
                         "refused a connection from %s with key %s: not in "
                         "--curve-allow or --ctl-allow (%" PRIu64 " so far)",
                         addr, keytxt, c->n_denied);
        }
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
    }
}

int curve_role_of(const char *user_id)
{
    if (!user_id)
        return CURVE_ROLE_NONE;
    if (!strcmp(user_id, CURVE_USER_WORKER))
        return CURVE_ROLE_WORKER;
    if (!strcmp(user_id, CURVE_USER_OPERATOR))
        return CURVE_ROLE_OPERATOR;
    return CURVE_ROLE_NONE;
}

int curve_role_may_send(int role, int msg_type)
{
    switch (role) {
    case CURVE_ROLE_WORKER:
        return msg_type == PROTO_HELLO || msg_type == PROTO_HEARTBEAT ||
               msg_type == PROTO_TOKEN_REQ || msg_type == PROTO_THROTTLED ||
               msg_type == PROTO_BYE || msg_type == PROTO_RESULT ||
               msg_type == PROTO_RATEINFO;
    case CURVE_ROLE_OPERATOR:
        return msg_type == PROTO_CTL;
    default:
        return 1;
    }
}

const char *curve_role_name(int role)
{
    return role == CURVE_ROLE_WORKER     ? "worker"
           : role == CURVE_ROLE_OPERATOR ? "operator"
                                         : "any peer (no Curve)";
}
