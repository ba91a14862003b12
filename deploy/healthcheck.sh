#!/bin/bash
# fanout-healthcheck: the HEALTHCHECK of the fanout container image.
#
# It looks at what runs as PID 1 of the container and checks that:
#   fanout-master      answers GET /status with 200 on its --metrics address
#                      (FANOUT_METRICS or --metrics); without --metrics it
#                      can only check that the process is alive;
#   fanout-worker      is alive (not a zombie, not stopped). A worker has no
#                      endpoint of its own, so "connected to a master" cannot
#                      be told from outside (see deploy/README.md);
#   fanout-testserver  answers GET /stats with 200.
# Anything else (fanout-keygen, fanout-ctl, a shell) counts as healthy.
#
# The image has no curl or wget on purpose, so HTTP goes through bash's
# /dev/tcp. Exit 0 healthy, 1 unhealthy, as Docker expects; the one line
# printed ends up in `docker inspect` under .State.Health.Log.
set -u

deadline_s=${FANOUT_HEALTHCHECK_TIMEOUT:-3}

# PID 1's argv, one element per array slot.
mapfile -d '' -t argv </proc/1/cmdline 2>/dev/null || argv=()
prog=${argv[0]:-}
prog=${prog##*/}

# flag_value NAME: the value of --NAME V or --NAME=V in PID 1's argv.
flag_value()
{
    local i
    for ((i = 1; i < ${#argv[@]}; i++)); do
        case ${argv[i]} in
        "--$1=") ;;
        "--$1="*) printf '%s' "${argv[i]#*=}"; return 0 ;;
        "--$1") [ $((i + 1)) -lt ${#argv[@]} ] && printf '%s' "${argv[i + 1]}"
                return 0 ;;
        esac
    done
    return 1
}

alive()
{
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/1/status 2>/dev/null)
    case $state in
    ''|Z|X|T|t) echo "$prog: pid 1 is not running (state '${state:-?}')"; return 1 ;;
    esac
    return 0
}

# http_ok HOST PORT PATH: 0 when GET answers 200 within the deadline.
http_ok()
{
    local host=$1 port=$2 path=$3 line=
    case $host in ''|0.0.0.0|'*') host=127.0.0.1 ;; '::'|'[::]') host=::1 ;; esac
    host=${host#[}; host=${host%]}
    if ! exec 3<>"/dev/tcp/$host/$port"; then
        echo "$prog: cannot connect to $host:$port"
        return 1
    fi
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' \
        "$path" "$host" >&3
    IFS= read -r -t "$deadline_s" line <&3
    exec 3<&-
    line=${line%$'\r'}
    case $line in
    "HTTP/1."?" 200"*) echo "$prog: $path answers 200"; return 0 ;;
    esac
    echo "$prog: $path on $host:$port answered '${line:-nothing}'"
    return 1
}

case $prog in
fanout-master)
    alive || exit 1
    addr=$(flag_value metrics) || addr=${FANOUT_METRICS:-}
    if [ -z "$addr" ]; then
        echo "fanout-master: alive (no --metrics, so /status is not checked)"
        exit 0
    fi
    port=${addr##*:}
    host=${addr%:*}
    [ "$port" = 0 ] && { echo "fanout-master: alive (--metrics port 0)"; exit 0; }
    http_ok "$host" "$port" /status || exit 1
    ;;
fanout-worker)
    alive || exit 1
    echo "fanout-worker: alive"
    ;;
fanout-testserver)
    alive || exit 1
    port=$(flag_value port) || port=0
    host=$(flag_value bind) || host=127.0.0.1
    [ "$port" = 0 ] && { echo "fanout-testserver: alive (port 0)"; exit 0; }
    http_ok "$host" "$port" /stats || exit 1
    ;;
*)
    echo "${prog:-pid 1}: nothing to check"
    ;;
esac
exit 0
