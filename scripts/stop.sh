#!/usr/bin/env bash
# Stops the dockyard daemons that scripts/setup.sh started (apid first, then managerd).
# Running containers keep running (their monitors outlive the daemons); a later
# scripts/setup.sh picks them up again. Same environment overrides as setup.sh.
set -euo pipefail
RUN=${DOCKYARD_RUN:-/run/dockyard}

if [ -n "${DOCKYARD_FORCE_SYSTEMD:-}" ] || { [ -d /run/systemd/system ] \
    && [ -z "${DOCKYARD_NO_SYSTEMD:-}" ] && [ "$RUN" = /run/dockyard ] \
    && systemctl list-unit-files dockyard-apid.service >/dev/null 2>&1; }; then
  systemctl stop dockyard-apid.service dockyard-managerd.service
  echo "stopped dockyard-apid and dockyard-managerd (systemd)"
  exit 0
fi

alive() {  # alive PID: running and not a zombie (an unreaped orphan is done)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

stop() {  # stop NAME: SIGTERM, wait up to 15 s, then SIGKILL
  local pidfile=$RUN/$1.pid pid
  if [ ! -f "$pidfile" ]; then echo "$1: not running (no $pidfile)"; return 0; fi
  pid=$(cat "$pidfile")
  if ! [ -r "/proc/$pid/cmdline" ] || ! tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$1"; then
    echo "$1: not running (stale pid file)"; rm -f "$pidfile"; return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 150); do
    alive "$pid" || { rm -f "$pidfile"; echo "stopped $1 (pid $pid)"; return 0; }
    sleep 0.1
  done
  echo "$1 (pid $pid) ignored SIGTERM for 15 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop dockyard-apid
stop dockyard-managerd
