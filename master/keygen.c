/*
 * keygen.c - fanout-keygen DIR/NAME: a CurveZMQ key pair for a master or a
 * worker, as DIR/NAME.key (secret, 0600) and DIR/NAME.pub (public).
 */
#include "fmacros.h"
#include "keys.h"

#include <errno.h>
#include <zmq.h>

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: fanout-keygen DIR/NAME\n\nWrites a CurveZMQ key pair: "
               "DIR/NAME.key (secret, mode 0600) and\nDIR/NAME.pub (public). "
               "Give the master its .key with --curve-secret and\nput each "
               "worker's .pub in the master's --curve-allow directory; give "
               "each\nworker its own .key and the master's .pub with "
               "--curve-server-key.\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: fanout-keygen DIR/NAME (see --help)\n");
        return 2;
    }
    if (!zmq_has("curve")) {
        fprintf(stderr, "fanout-keygen: this libzmq has no CURVE support\n");
        return 3;
    }
    keys_pair kp;
    if (zmq_curve_keypair(kp.public_key, kp.secret_key) != 0) {
        fprintf(stderr, "fanout-keygen: %s\n", zmq_strerror(errno));
        return 3;
    }
    char err[512];
    if (keys_write(argv[1], &kp, err, sizeof err) != FO_OK) {
        fprintf(stderr, "fanout-keygen: %s%s\n", err,
                errno == EEXIST ? " (refusing to overwrite a key)" : "");
        return errno == EEXIST ? 2 : 3;
    }
    printf("%s.key (secret) and %s.pub (public) written\npublic key: %s\n",
           argv[1], argv[1], kp.public_key);
    return 0;
}
