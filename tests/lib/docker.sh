# tests/lib/docker.sh: what the container tests share (sourced, not run):
# Debian packages installed on demand, a Docker daemon started when none
# answers, a Debian base image made with debootstrap + `docker import` when
# it is missing (no registry is contacted), and whether the default bridge
# network reaches the Debian mirror.
#
# Used by tests/compose/run.sh (make test-compose) and tests/package/run.sh
# (make test-package). Before sourcing, the caller sets:
#   log_tag     the prefix of its log lines ("compose", "package")
#   work        its scratch directory (logs go there)
# and may set suite (bookworm), base_image (debian:bookworm-slim) and
# FANOUT_TIMEOUT_MULTIPLIER. Its EXIT trap calls docker_lib_cleanup, which
# removes a half-made root file system and stops a dockerd this library
# started (never one that was already running).

suite=${suite:-bookworm}
base_image=${base_image:-debian:bookworm-slim}
mult=${FANOUT_TIMEOUT_MULTIPLIER:-1}
t0=${t0:-$(date +%s)}
dockerd_pid=
dockerd_unit=
rootfs=
timings=()

say() { printf '[%s %4ss] %s\n' "$log_tag" "$(($(date +%s) - t0))" "$*"; }
die() { say "FAIL: $*"; exit 1; }
# phase NAME START: records how long a step took.
phase() { timings+=("$(printf '%-28s %4ss' "$1" "$(($(date +%s) - $2))")"); }
deadline() { echo $(($(date +%s) + $1 * mult)); }
print_timings() {
    echo "---- timings ----"
    printf '  %s\n' "${timings[@]}"
    printf '  %-28s %4ss\n' "total" "$(($(date +%s) - t0))"
}

umount_below() {
    # debootstrap mounts proc and sys in its target; a failed run can leave
    # them mounted, and rm -rf must never walk into them.
    local d=$1 m
    awk -v d="$d" 'index($2, d "/") == 1 { print $2 }' /proc/mounts |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

docker_lib_cleanup() {
    if [ -n "$rootfs" ] && [ -d "$rootfs" ]; then
        umount_below "$rootfs"
        rm -rf --one-file-system "$rootfs"
    fi
    if [ -n "$dockerd_pid" ]; then
        say "stopping the dockerd this test started (pid $dockerd_pid)"
        kill -TERM "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 60); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$dockerd_pid" 2>/dev/null && kill -KILL "$dockerd_pid"
    elif [ -n "$dockerd_unit" ]; then
        say "stopping docker.service, which this test started"
        systemctl stop docker.service docker.socket
    fi
}

# ------------------------------------------------------------- packages --

as_root_install() {
    if [ "$(id -u)" -ne 0 ]; then
        die "missing $*; run as root, or: apt-get install -y $*"
    fi
    say "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends "$@" >"$work/apt.log" 2>&1 ||
        { cat "$work/apt.log"; die "apt-get install $* failed"; }
}

# --------------------------------------------------------------- dockerd --

# Starts dockerd when none answers: docker.service where systemd runs,
# else dockerd in the background (log in $work/dockerd.log).
ensure_dockerd() {
    command -v dockerd >/dev/null || as_root_install docker.io
    docker info >/dev/null 2>&1 && return 0
    [ "$(id -u)" -eq 0 ] || die "no Docker daemon answers and we are not root to start one"
    if [ -d /run/systemd/system ] && systemctl start docker.service 2>/dev/null; then
        dockerd_unit=docker.service
    else
        say "starting dockerd (log: $work/dockerd.log)"
        dockerd >"$work/dockerd.log" 2>&1 &
        dockerd_pid=$!
    fi
    local end
    end=$(deadline 60)
    until docker info >/dev/null 2>&1; do
        if [ -n "$dockerd_pid" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
            tail -n 30 "$work/dockerd.log"
            dockerd_pid=
            die "dockerd exited"
        fi
        [ "$(date +%s)" -lt "$end" ] || die "dockerd did not answer within 60 s"
        sleep 0.5
    done
}

# ------------------------------------------------------------ base image --

# Prints "URI SUITE" for every enabled deb source of this machine's apt whose
# suite starts with $suite (one-line .list and deb822 .sources formats).
apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '
            /^[ \t]*deb[ \t]/ {
                sub(/^[ \t]*deb[ \t]+/, ""); sub(/^\[[^]]*\][ \t]*/, "")
                if (index($2, s) == 1) print $1, $2
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '
            function flush(  i, j, nu, ns, u, su) {
                if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false|0)$/) {
                    nu = split(uris, u, /[ \t]+/); ns = split(suites, su, /[ \t]+/)
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
                        if (u[i] != "" && index(su[j], s) == 1) print u[i], su[j]
                }
                types = uris = suites = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"   { $1 = ""; types = $0 }
            tolower($1) == "uris:"    { $1 = ""; uris = $0 }
            tolower($1) == "suites:"  { $1 = ""; suites = $0 }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            END { flush() }' "$f"
    done
}

build_base_image() {
    local sources mirror
    sources=$(apt_sources | sed 's/^ *//' | sort -u)
    mirror=$(awk -v s="$suite" '$2 == s { print $1; exit }' <<<"$sources")
    if [ -z "$mirror" ]; then
        mirror=http://deb.debian.org/debian
        sources="$mirror $suite"
        say "no '$suite' source in this machine's apt configuration; using $mirror"
    fi
    command -v debootstrap >/dev/null || as_root_install debootstrap
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
    rootfs=$(mktemp -d /var/tmp/fanout-rootfs.XXXXXX)
    say "debootstrap --variant=minbase $suite from $mirror"
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" \
        >"$work/debootstrap.log" 2>&1 ||
        { tail -n 30 "$work/debootstrap.log"; die "debootstrap failed"; }

    # Make it look like the official slim image: the same apt sources as
    # this machine (bookworm, -updates, -security), no docs, man pages or
    # translations, and apt that cleans up after itself.
    rm -f "$rootfs/etc/apt/sources.list"
    awk '{ s[$1] = s[$1] (s[$1] == "" ? "" : " ") $2 }
         END { for (u in s) printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n", u, s[u] }' \
        <<<"$sources" >"$rootfs/etc/apt/sources.list.d/debian.sources"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOT'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOT
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
EOT
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
        "$rootfs"/var/log/apt/* "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
        -exec rm -rf {} +
    : >"$rootfs/etc/machine-id"
    umount_below "$rootfs"
    tar --numeric-owner -C "$rootfs" -c . |
        docker import -c 'CMD ["bash"]' \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -m "debootstrap --variant=minbase $suite $mirror (tests/lib/docker.sh)" \
            - "$base_image" >/dev/null
    rm -rf --one-file-system "$rootfs"
    rootfs=
}

# Provides $base_image: present, pulled when FANOUT_COMPOSE_PULL=1 and a
# registry answers, else built with build_base_image.
ensure_base_image() {
    if docker image inspect "$base_image" >/dev/null 2>&1; then
        say "$base_image is present"
    elif [ "${FANOUT_COMPOSE_PULL:-0}" = 1 ] && timeout 120 docker pull -q "$base_image"; then
        say "pulled $base_image"
    else
        build_base_image
        say "built $base_image locally ($(docker image inspect -f '{{.Size}}' "$base_image" | awk '{printf "%.0f MB", $1/1e6}'))"
    fi
}

# ------------------------------------------------------- mirror network --

# The mirror the base image's apt-get will use, as "HOST PORT".
mirror_hostport() {
    docker run --rm --network none --entrypoint sh "$base_image" -c \
        'cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null' |
        awk 'tolower($1) == "uris:" { print $2; exit }
             $1 == "deb" { print ($2 ~ /^\[/ ? $3 : $2); exit }' |
        sed -E 's#^([a-z]+)://([^/]+).*#\1 \2#' |
        awk '{ h = $2; p = ($1 == "https" ? 443 : 80)
               if (h ~ /:[0-9]+$/) { p = h; sub(/.*:/, "", p); sub(/:[0-9]+$/, "", h) }
               print h, p }'
}

# Sets apt_net to the docker network options under which a container's
# apt-get reaches the mirror: none on the default bridge when it can,
# else (--network host).
choose_apt_network() {
    local mhost mport
    apt_net=()
    read -r mhost mport < <(mirror_hostport) || true
    if [ -n "${mhost:-}" ] &&
       docker run --rm --entrypoint bash "$base_image" -c \
           "timeout 10 bash -c 'exec 3<>/dev/tcp/$mhost/$mport'" >/dev/null 2>&1; then
        say "the default bridge network reaches $mhost:$mport"
    else
        apt_net=(--network host)
        say "the default bridge network cannot reach ${mhost:-the mirror}:${mport:-80}; using --network host"
    fi
}
