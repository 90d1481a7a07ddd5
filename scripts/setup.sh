#!/usr/bin/env bash
# The README's first command: install dockyard and start the engine (as root, on Debian).
#
#   sudo scripts/setup.sh
#
# 1. scripts/install.sh: system packages (apt-get) and the Python package in .venv
# 2. starts dockyard-managerd, then dockyard-apid, in the background (systemd units
#    instead where systemd is PID 1), and waits for their sockets
# 3. loads a `busybox:latest` image built from the host's static busybox, so
#    `dockyard run --rm busybox echo hello` works without a registry
# 4. links `dockyard` into /usr/local/bin and installs its bash completion
#
# Safe to run again: running daemons are kept, an existing image is not reloaded.
# Stop the daemons with scripts/stop.sh (containers keep running, as with live-restore).
#
# Every location is an environment variable, so a second engine (tests) can run
# beside the system one:
#   DOCKYARD_RUN           /run/dockyard           sockets, pid files, runtime state
#   DOCKYARD_DATA_ROOT     /var/lib/dockyard       apid data; managerd keeps manager/ in it
#   DOCKYARD_LOG_DIR       /var/log/dockyard       managerd.log, apid.log
#   DOCKYARD_BIN_DIR       /usr/local/bin          where `dockyard` is linked ("" = don't)
#   DOCKYARD_COMPLETION_DIR /etc/bash_completion.d  ("" = don't install completion)
#   DOCKYARD_SKIP_INSTALL  (unset)                 1 = skip scripts/install.sh
#   DOCKYARD_NO_SYSTEMD    (unset)                 1 = background processes even under systemd
#   DOCKYARD_SYSTEMD_DIR   /etc/systemd/system     where the units go
#   DOCKYARD_FORCE_SYSTEMD (unset)                 1 = use systemctl even off the default roots
#                                                  or without systemd as PID 1 (tests)
#   DOCKYARD_BRIDGE        dockyard0               apid's default bridge, as dockerd's docker0
#                                                  (`none` off the default roots: tests run
#                                                  many engines side by side; none = lo only)
#   DOCKYARD_BIP           (unset)                 its address, e.g. 172.18.0.1/16; unset: apid
#                                                  picks the first of 172.17-31.0.0/16 and
#                                                  192.168.N.0/20 no host route overlaps
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

RUN=${DOCKYARD_RUN:-/run/dockyard}
DATA=${DOCKYARD_DATA_ROOT:-/var/lib/dockyard}
LOGS=${DOCKYARD_LOG_DIR:-/var/log/dockyard}
BIN_DIR=${DOCKYARD_BIN_DIR-/usr/local/bin}
COMPLETION_DIR=${DOCKYARD_COMPLETION_DIR-/etc/bash_completion.d}
APID_SOCK=$RUN/dockyard.sock
MANAGERD_SOCK=$RUN/managerd.sock
HOST=unix://$APID_SOCK
VENV=$REPO/.venv

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root: sudo $0 (dockyard builds namespaces, cgroups and mounts)"

if [ -z "${DOCKYARD_SKIP_INSTALL:-}" ]; then
  say "installing system packages and the Python package (scripts/install.sh)"
  scripts/install.sh
fi
[ -x "$VENV/bin/dockyard" ] || die "$VENV/bin/dockyard is missing: run scripts/install.sh"

mkdir -p "$RUN" "$DATA" "$LOGS"
# managerd finds the runtime (dockyard-shim) on PATH
export PATH="$VENV/bin:$PATH"

# --trace-dir: traced requests' spans go where apid reads them (<exec-root>/trace)
MANAGERD_ARGS=(--root "$DATA/manager" --state "$RUN/manager" --address "unix://$MANAGERD_SOCK"
               --trace-dir "$RUN/trace")
APID_ARGS=(--data-root "$DATA" --exec-root "$RUN" -H "$HOST" --managerd "unix://$MANAGERD_SOCK")
# Docker's default networking (a bridge, NAT, -p) for the system engine
if [ "$RUN" = /run/dockyard ]; then BRIDGE=${DOCKYARD_BRIDGE:-dockyard0}; else BRIDGE=${DOCKYARD_BRIDGE:-none}; fi
APID_ARGS+=(--bridge "$BRIDGE")
[ -z "${DOCKYARD_BIP:-}" ] || APID_ARGS+=(--bip "$DOCKYARD_BIP")

ping_apid() { curl -sf --max-time 2 --unix-socket "$APID_SOCK" http://dockyard/_ping >/dev/null 2>&1; }

# managerd serving (gRPC health), not just its socket file: apid answers _ping
# without managerd, and the image load below needs managerd
managerd_ready() {
  "$VENV/bin/python" - "$MANAGERD_SOCK" >/dev/null 2>&1 <<'PY'
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

channel = grpc.insecure_channel("unix://" + sys.argv[1])
reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
sys.exit(reply.status != health_pb2.HealthCheckResponse.SERVING)
PY
}

# running NAME: true if the pid in $RUN/NAME.pid is alive and is that daemon
running() {
  local pidfile=$RUN/$1.pid pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$1"
}

wait_for() {  # wait_for WHAT LOG TEST...
  local what=$1 log=$2; shift 2
  for _ in $(seq 1 300); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  echo "---- last lines of $log ----" >&2; tail -n 30 "$log" >&2 || true
  die "$what did not come up within 60 s (log: $log)"
}

start_background() {  # start_background NAME SOCKET-TEST ARGS...
  local name=$1; shift
  local log=$LOGS/${name#dockyard-}.log
  if running "$name"; then
    say "$name is already running (pid $(cat "$RUN/$name.pid"))"
    return 0
  fi
  say "starting $name (log: $log)"
  # setsid: the daemon must not die with this shell's session or terminal
  setsid "$VENV/bin/$name" "$@" >>"$log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

use_systemd() {
  [ -n "${DOCKYARD_FORCE_SYSTEMD:-}" ] && return 0
  [ -d /run/systemd/system ] && [ -z "${DOCKYARD_NO_SYSTEMD:-}" ] && [ "$RUN" = /run/dockyard ]
}

start_systemd() {
  local unit=${DOCKYARD_SYSTEMD_DIR:-/etc/systemd/system}
  mkdir -p "$unit"
  say "installing systemd units dockyard-managerd.service and dockyard-apid.service"
  cat > "$unit/dockyard-managerd.service" <<EOF
[Unit]
Description=dockyard manager: content, images, snapshots, containers, tasks
After=local-fs.target

[Service]
Environment=PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ExecStart=$VENV/bin/dockyard-managerd ${MANAGERD_ARGS[*]}
# containers' monitors outlive a managerd restart: kill only the daemon itself
KillMode=process
Delegate=yes
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
  cat > "$unit/dockyard-apid.service" <<EOF
[Unit]
Description=dockyard API daemon (Docker Engine API on $HOST)
Requires=dockyard-managerd.service
After=dockyard-managerd.service

[Service]
Environment=PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ExecStart=$VENV/bin/dockyard-apid ${APID_ARGS[*]}
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload
  systemctl enable --now dockyard-managerd.service dockyard-apid.service
}

if use_systemd; then
  start_systemd
  wait_for "dockyard-managerd" "journalctl -u dockyard-managerd" managerd_ready
  wait_for "dockyard-apid" "journalctl -u dockyard-apid" ping_apid
else
  start_background dockyard-managerd "${MANAGERD_ARGS[@]}"
  wait_for "dockyard-managerd" "$LOGS/managerd.log" managerd_ready
  if ping_apid && ! running dockyard-apid; then
    say "an apid already answers on $APID_SOCK; keeping it"
  else
    start_background dockyard-apid "${APID_ARGS[@]}"
  fi
  wait_for "dockyard-apid" "$LOGS/apid.log" ping_apid
fi

dockyard() { "$VENV/bin/dockyard" -H "$HOST" "$@"; }

if dockyard image inspect busybox:latest >/dev/null 2>&1; then
  say "busybox:latest is already loaded"
else
  say "loading busybox:latest, built from the host's $(command -v busybox || echo /bin/busybox)"
  tarball=$(mktemp --suffix=.tar)
  trap 'rm -f "$tarball"' EXIT
  "$VENV/bin/python" scripts/busybox_image.py "$tarball" busybox:latest
  # apid may have started before managerd served (systemd starts both): its
  # channel reconnects with a back-off, so give the load a few tries
  for try in 1 2 3 4 5 6; do
    if dockyard load -i "$tarball"; then break; fi
    [ "$try" -lt 6 ] || die "could not load busybox:latest (log: $LOGS/apid.log)"
    sleep 1
  done
fi

if [ -n "$BIN_DIR" ]; then
  mkdir -p "$BIN_DIR"
  ln -sfn "$VENV/bin/dockyard" "$BIN_DIR/dockyard"
  say "linked $BIN_DIR/dockyard"
fi
if [ -n "$COMPLETION_DIR" ]; then
  mkdir -p "$COMPLETION_DIR"
  install -m 0644 scripts/dockyard-completion.bash "$COMPLETION_DIR/dockyard"
  say "installed bash completion in $COMPLETION_DIR/dockyard (new shells pick it up)"
fi

hostflag=""
[ "$HOST" = unix:///run/dockyard/dockyard.sock ] || hostflag=" -H $HOST"
cat <<EOF

dockyard is running: managerd on unix://$MANAGERD_SOCK, apid on $HOST
Try:
  dockyard$hostflag run --rm busybox echo hello
  dockyard$hostflag run -it --rm busybox sh          (Ctrl-P Ctrl-Q detaches)
  dockyard$hostflag run -d --name web busybox httpd -f -p 8080
  dockyard$hostflag ps; dockyard$hostflag logs web; dockyard$hostflag exec -it web sh
  dockyard$hostflag --trace run --rm busybox true   (the request's path through the layers)
  docker -H $HOST ps                  (the docker CLI works too)
Logs: $LOGS/managerd.log, $LOGS/apid.log.  Stop: scripts/stop.sh
EOF
