/*
 * keygen.c - fanout-keygen DIR/NAME: a CurveZMQ key pair for a master or a
 * worker, as DIR/NAME.key (secret, 0600) and DIR/NAME.pub (public).
 *
 * It has no options of its own, but parses its command line with the same
 * options module as the other programs, so that --help, --version,
 * --help-man and --completion behave alike in all four.
 */
#include "fmacros.h"
#include "keys.h"
#include "options.h"

#include <errno.h>
#include <zmq.h>

static const char usage[] =
    "usage: fanout-keygen DIR/NAME\n\nWrites a CurveZMQ key pair: "
    "DIR/NAME.key (secret, mode 0600) and\nDIR/NAME.pub (public), creating "
    "DIR (mode 0700) if needed. Give the master\nits .key with "
    "--curve-secret and put each worker's .pub in the master's\n"
    "--curve-allow directory; give each worker its own .key and the "
    "master's .pub\nwith --curve-server-key. fanout-ctl users (operators) "
    "get pairs of their own,\nwhose .pub go in the master's --ctl-allow "
    "directory: a key has one role.\nAn existing key is never "
    "overwritten.\n";

int main(int argc, char **argv)
{
    char err[512] = "";
    int status;
    opts *o =
        opts_parse(NULL, 0, argc, argv, usage, "fanout-keygen " FANOUT_VERSION,
                   &status, err, sizeof err);
    if (status != 0) {
        if (status == 2)
            fprintf(stderr, "fanout-keygen: %s\n", err);
        opts_destroy(&o);
        return status == 1 ? 0 : 2;
    }
    size_t npos;
    char *const *pos = opts_positional(o, &npos);
    if (npos != 1 || !*pos[0] || pos[0][0] == '-' || strlen(pos[0]) >= 4096) {
        fprintf(stderr, "usage: fanout-keygen DIR/NAME (see --help)\n");
        opts_destroy(&o);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", pos[0]);
    opts_destroy(&o);
    if (!zmq_has("curve")) {
        fprintf(stderr, "fanout-keygen: this libzmq has no CURVE support\n");
        return 3;
    }
    keys_pair kp;
    if (zmq_curve_keypair(kp.public_key, kp.secret_key) != 0) {
        fprintf(stderr, "fanout-keygen: %s\n", zmq_strerror(errno));
        return 3;
    }
    if (keys_write(path, &kp, err, sizeof err) != FO_OK) {
        fprintf(stderr, "fanout-keygen: %s%s\n", err,
                errno == EEXIST ? " (refusing to overwrite a key)" : "");
        return errno == EEXIST ? 2 : 3;
    }
    printf("%s.key (secret) and %s.pub (public) written\npublic key: %s\n",
           path, path, kp.public_key);
    return 0;
}
