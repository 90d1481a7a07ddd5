#!/usr/bin/env bash
# Installs what dockyard needs on a Debian host: system packages, then the
# Python package (editable) in .venv. Safe to run again.
# Usage: scripts/install.sh [--test]   (--test adds what the test suite needs)
set -euo pipefail
cd "$(dirname "$0")/.."

# tini: tini-static is apid's docker-init (`docker run --init`); procps: ps for `docker top`;
# util-linux: unshare/nsenter for apid's per-container network namespaces
pkgs=(busybox-static iproute2 iptables kmod e2fsprogs python3-venv ca-certificates curl
      tini procps util-linux)
if [ "${1:-}" = "--test" ]; then
  # reference peers and test infrastructure: a real registry, the docker CLI,
  # runc for side-by-side checks, docker-compose to validate the dev stack
  pkgs+=(docker-registry docker.io runc crun skopeo containerd apache2-utils
         docker-compose tmux openssl)
fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker.io's and containerd's postinst must not start daemons on this host
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

# Debian's /usr/bin/python3 is statically linked against libpython and starts
# ~30 % faster than a shared-library build (pyenv's): the shim and the CLI pay
# interpreter start-up on every call, so prefer it when it is 3.11 or newer.
if [ -z "${PYTHON:-}" ] && /usr/bin/python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  PYTHON=/usr/bin/python3
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra}"
# pip installs bin/dockyard-shim as is: a /bin/sh polyglot line (pip would drop
# flags from a `#!python -I -S` line) and a search for the package. Replace it
# with the resolved form (shim/lean.py `launcher`): this venv's python with -IS
# straight from the shebang (no /bin/sh exec), shim/lean.py loaded by path for
# start/state/kill/delete (no package imports, no `os`), this checkout's
# src/ for the rest (no search): 1-6 ms less on every runtime call. The
# kernel takes at most 255 bytes of shebang and splits it at a space: keep
# pip's copy for such paths.
shim_py="$PWD/.venv/bin/python3"
case "$shim_py" in
  *" "* | *"'"* | *"\\"*) ;;
  *) if [ -f .venv/bin/dockyard-shim ] && [ ${#shim_py} -lt 240 ]; then
       "$shim_py" -IS -c 'import sys
sys.path.insert(0, sys.argv[2] + "/src")
from dockyard.shim.lean import launcher
sys.stdout.write(launcher(sys.argv[1], sys.argv[2]))' "$shim_py" "$PWD" \
         > .venv/bin/dockyard-shim.new
       chmod 755 .venv/bin/dockyard-shim.new
       mv .venv/bin/dockyard-shim.new .venv/bin/dockyard-shim
     fi ;;
esac
