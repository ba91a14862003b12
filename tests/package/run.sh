#!/usr/bin/env bash
# make test-package: the .deb that `make deb` builds, installed into a
# clean Debian 12 container with apt-get (its Depends from Debian's archive,
# nothing else), then used as a user would: --help of every program, the man
# pages, completion and systemd units where they belong, the postinst's
# system user, and a small job with the installed fanout-master and a
# spawned fanout-worker; every item must come out ok, exactly once.
#
#   tests/package/run.sh [DEB_BUILD_DIR]     (default build-deb)
#
# Steps (each one timed in the closing summary):
#   1. Find DEB_BUILD_DIR/fanout_*.deb; compile fanout-testserver (one C
#      file, libm only), which the package does not contain, for the job's
#      API. It is mounted into the container, not installed.
#   2. dockerd and debian:bookworm-slim as for make test-compose
#      (tests/lib/docker.sh: debootstrap + docker import, no registry).
#   3. docker run the base image with the work directory mounted read-only
#      and run tests/package/inside.sh there (on the default bridge when it
#      reaches the Debian mirror, else --network host). The job talks to the
#      container's 127.0.0.1 only, on ports the kernel picks.
# The container is removed at exit whatever happened; images stay cached.
#
# Environment: FANOUT_PACKAGE_ITEMS (200), FANOUT_PACKAGE_KEEP=1 (keep the
# work directory), FANOUT_COMPOSE_PULL=1 (try docker pull for the base
# image), FANOUT_TIMEOUT_MULTIPLIER (scales every deadline).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
deb_dir=${1:-$repo/build-deb}
items=${FANOUT_PACKAGE_ITEMS:-200}

t0=$(date +%s)
work=$(mktemp -d /tmp/fanout-package.XXXXXX)
chmod 0755 "$work"
container=fanout-pkgtest-$$
started=
ok=0
log_tag=package
# say, die, phase, deadline, ensure_dockerd, ensure_base_image,
# choose_apt_network, docker_lib_cleanup.
. "$repo/tests/lib/docker.sh"

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [ -n "$started" ] && docker rm -f "$container" >/dev/null 2>&1
    docker_lib_cleanup
    if [ "${FANOUT_PACKAGE_KEEP:-0}" = 1 ]; then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    if [ "$ok" = 1 ]; then
        say "PASS"
    else
        say "FAILED (exit $rc)"
        [ "$rc" = 0 ] && rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------- 1. the package --

step=$(date +%s)
debs=("$deb_dir"/fanout_*.deb)
[ -f "${debs[0]}" ] || die "no fanout_*.deb in $deb_dir (run make deb)"
[ ${#debs[@]} -eq 1 ] || die "more than one fanout_*.deb in $deb_dir: ${debs[*]}"
cp "${debs[0]}" "$work/"
deb=$(basename "${debs[0]}")
say "$deb: $(dpkg-deb -f "${debs[0]}" Depends)"
cc -std=c11 -D_GNU_SOURCE -O2 -o "$work/fanout-testserver" \
    "$repo/tests/server/testserver.c" -lm || die "cannot compile fanout-testserver"
cp "$here/inside.sh" "$work/"
chmod -R a+rX "$work"
phase "package and test server" "$step"

# -------------------------------------------------- 2. dockerd and image --

step=$(date +%s)
ensure_dockerd
phase "dockerd" "$step"
step=$(date +%s)
ensure_base_image
choose_apt_network
phase "base image" "$step"

# ------------------------------------------------------ 3. in the image --

step=$(date +%s)
say "docker run $base_image: apt-get install ./$deb, checks, a $items-item job"
started=1
if ! timeout $((600 * mult)) docker run --name "$container" "${apt_net[@]}" \
        -e DEB="$deb" -e ITEMS="$items" -v "$work:/pkg:ro" \
        --entrypoint bash "$base_image" /pkg/inside.sh 2>&1 | tee "$work/inside.log"; then
    die "the checks in the container failed (log above)"
fi
phase "install, checks and job" "$step"

echo
print_timings
ok=1
