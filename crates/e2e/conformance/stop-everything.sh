#!/usr/bin/env bash
# Usage: ./stop-everything.sh PORT
# Stops the server-everything that ./start-everything.sh PORT started (by the
# PID in its pid file only; SIGTERM, then SIGKILL after 5 s).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "usage: $0 PORT"
PIDFILE="$CONF_RESULTS_DIR/everything-$PORT.pid"
[[ -f "$PIDFILE" ]] || { echo "no pid file $PIDFILE: nothing to stop" >&2; exit 0; }
pid="$(cat "$PIDFILE")"
if kill -0 "$pid" 2>/dev/null; then
  # Make sure the PID still belongs to our server before signalling it.
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'server-everything'; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  else
    echo "pid $pid is no longer server-everything; not signalling it" >&2
  fi
fi
rm -f "$PIDFILE"
