#!/usr/bin/env bash
# Runs inside a clean debian:bookworm-slim container for tests/package/run.sh,
# with /pkg (read-only) holding $DEB, fanout-testserver and this script.
# Installs the package as a user would and checks what it installed; exits
# non-zero at the first failure, naming it.
set -euo pipefail
: "${DEB:?}" "${ITEMS:=200}"
t0=$(date +%s)
say() { printf '  [in container %3ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
die() { say "FAIL: $*"; exit 1; }

# The slim image keeps no man pages (dpkg path-exclude); a user's system
# does, and the check below needs them.
rm -f /etc/dpkg/dpkg.cfg.d/docker-slim /etc/dpkg/dpkg.cfg.d/docker
export DEBIAN_FRONTEND=noninteractive
cp "/pkg/$DEB" /tmp/
apt-get update -qq >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; die "apt-get update"; }
# bash-completion, zsh and man-db only to check that the completion scripts
# load and the pages render.
apt-get install -y -qq --no-install-recommends "/tmp/$DEB" bash-completion zsh \
    man-db \
    >>/tmp/apt.log 2>&1 || { cat /tmp/apt.log; die "apt-get install ./$DEB"; }
say "installed: $(dpkg-query -W -f='${Package} ${Version} ${Status}' fanout)"

for p in fanout-master fanout-worker fanout-ctl fanout-keygen; do
    [ "$(command -v "$p")" = "/usr/bin/$p" ] || die "$p is not /usr/bin/$p"
    "$p" --help >/dev/null || die "$p --help"
    [[ $("$p" --version) == "$p "* ]] || die "$p --version"
    [ -s "/usr/share/man/man1/$p.1" ] || die "no man page /usr/share/man/man1/$p.1"
    grep -q '^\.SH OPTIONS' "/usr/share/man/man1/$p.1" || die "$p.1 has no OPTIONS"
    grep -q '^\.SH EXIT STATUS' "/usr/share/man/man1/$p.1" || die "$p.1 has no EXIT STATUS"
    [ "$(man -w "$p")" = "/usr/share/man/man1/$p.1" ] || die "man -w $p: '$(man -w "$p" 2>&1)'"
    warn=$(MANWIDTH=80 man --warnings "$p" 2>&1 >/dev/null)
    [ -z "$warn" ] || die "man $p: $warn"
    # bash-completion loads a command's script on first use, by its name.
    got=$(bash -c ". /usr/share/bash-completion/bash_completion
        __load_completion $p && complete -p $p")
    [ "$got" = "complete -F _${p//-/_} $p" ] || die "bash completion of $p: '$got'"
    zsh -n "/usr/share/zsh/vendor-completions/_$p" || die "_$p: zsh syntax"
done
help=$(fanout-master --help)
grep -q -- '--spawn-workers' <<<"$help" || die "fanout-master --help lists no --spawn-workers"
say "four programs answer --help and --version; man pages and completion in place"

# Completion answers, as a shell would ask.
got=$(bash -c '. /usr/share/bash-completion/completions/fanout-ctl
    COMP_WORDS=(fanout-ctl s); COMP_CWORD=1; _fanout_ctl; echo "${COMPREPLY[*]}"')
[ "$got" = "status set" ] || die "fanout-ctl s<TAB> offers '$got'"
got=$(bash -c '. /usr/share/bash-completion/completions/fanout-master
    COMP_WORDS=(fanout-master --log-format ""); COMP_CWORD=2; _fanout_master
    echo "${COMPREPLY[*]}"')
[ "$got" = "text json" ] || die "fanout-master --log-format <TAB> offers '$got'"
got=$(zsh -fc 'autoload -Uz compinit && compinit -u -d /tmp/zcompdump
    print -r -- ${_comps[fanout-master]} ${_comps[fanout-ctl]}')
[ "$got" = "_fanout-master _fanout-ctl" ] || die "zsh compinit did not find the completions: '$got'"
say "bash and zsh completion load and answer"

units=/usr/lib/systemd/system
grep -qx 'ExecStart=/usr/bin/fanout-master' "$units/fanout-master.service" ||
    die "fanout-master.service does not start /usr/bin/fanout-master"
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$units/fanout-master.service" ||
    die "fanout-master.service has no ExecReload"
for u in fanout-worker.service fanout-worker@.service; do
    grep -qx 'ExecStart=/usr/bin/fanout-worker' "$units/$u" || die "$u does not start /usr/bin/fanout-worker"
    ! grep -q '^ExecReload' "$units/$u" || die "$u reloads, but the worker has no SIGHUP handler"
done
grep -qx 'EnvironmentFile=-/etc/fanout/worker-%i.env' "$units/fanout-worker@.service" ||
    die "fanout-worker@.service reads no per-instance env file"
id fanout >/dev/null || die "postinst made no user fanout"
[ "$(stat -c '%U:%G %a' /etc/fanout)" = "root:fanout 750" ] ||
    die "/etc/fanout is $(stat -c '%U:%G %a' /etc/fanout)"
say "units name /usr/bin; user $(id fanout)"

fanout-keygen /tmp/keys/master >/dev/null || die "fanout-keygen"
[ "$(stat -c %a /tmp/keys/master.key)" = 600 ] || die "master.key is not 0600"

# A small job: the installed master and one spawned worker, against the
# test API on this container's loopback (POST, 2% failures retried).
mkdir -p /tmp/job
awk -v n="$ITEMS" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"id\":\"pkg-%04d\",\"n\":%d}\n", i, i }' \
    >/tmp/job/items.jsonl
/pkg/fanout-testserver --bind 127.0.0.1 --port 0 --port-file /tmp/job/api.port \
    --rate 200/s --fail-pct 2 >/tmp/job/api.log 2>&1 &
api=$!
for _ in $(seq 1 100); do [ -s /tmp/job/api.port ] && break; sleep 0.1; done
[ -s /tmp/job/api.port ] || die "fanout-testserver did not start: $(cat /tmp/job/api.log)"
port=$(cat /tmp/job/api.port)
start=$(date +%s%N)
rc=0
(cd /tmp/job && timeout 120 fanout-master --input items.jsonl \
    --url "http://127.0.0.1:$port/v1/items/{id}" --method POST \
    --rate 150/s --out out --spawn-workers 1 --bind tcp://127.0.0.1:0 \
    --progress off --log-level warn) >/tmp/job/master.log 2>&1 || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
kill "$api" 2>/dev/null || true
[ "$rc" = 0 ] || { cat /tmp/job/master.log; die "fanout-master exited with $rc"; }
lines=$(wc -l </tmp/job/out/results.jsonl)
okc=$(grep -c '"status":"ok"' /tmp/job/out/results.jsonl || true)
ids=$(grep -o '"id":"pkg-[0-9]*"' /tmp/job/out/results.jsonl | sort -u | wc -l)
retried=$(grep -vc '"attempts":1[,}]' /tmp/job/out/results.jsonl || true)
say "job: $ITEMS items in $ms ms: $lines lines, $okc ok, $ids distinct ids, $retried retried"
[ "$lines" = "$ITEMS" ] && [ "$okc" = "$ITEMS" ] && [ "$ids" = "$ITEMS" ] ||
    die "results.jsonl does not hold every item once, ok"
[ -s /tmp/job/out/summary.json ] || die "no summary.json"

apt-get remove -y -qq fanout >/tmp/remove.log 2>&1 || { cat /tmp/remove.log; die "apt-get remove fanout"; }
[ ! -e /usr/bin/fanout-master ] || die "apt-get remove left /usr/bin/fanout-master"
say "apt-get remove fanout: clean"
