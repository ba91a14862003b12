#!/usr/bin/env bash
# Installs the Debian packages fanout needs to build, test and run its demo.
# As root it installs what is missing; otherwise it prints the exact
# apt-get line to run and fails. Used by `make` before every build.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libzmq3-dev libcurl4-openssl-dev
      libmsgpack-dev libjansson-dev libcmocka-dev libsqlite3-dev python3
      python3-zmq python3-msgpack clang-format iproute2 nftables libhiredis-dev libssl-dev
      redis-server)
# The Azure Queue tests run Azurite and Azure's JavaScript SDK from the npm
# registry: Node.js from Debian unless the machine already has one.
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
pkgs+=("$@")

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "fanout: missing Debian packages: ${missing[*]}" >&2
    echo "fanout: run as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "fanout: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or a day old.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
    apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
