#!/usr/bin/env bash
# Usage: ./start-everything.sh PORT
#
# Starts @modelcontextprotocol/server-everything (pinned in package.json) in
# Streamable HTTP mode on 127.0.0.1:PORT (endpoint /mcp) under Node 22, in the
# background, and returns once it answers HTTP (or fails after a timeout).
#
# server-everything itself calls app.listen(PORT) with no host (all
# interfaces); force-loopback.cjs is preloaded so it binds 127.0.0.1 only.
#
# Leaves behind (in results/, or $WARDEN_CONFORMANCE_RESULTS):
#   everything-PORT.pid   the server's PID  (./stop-everything.sh PORT kills it)
#   everything-PORT.log   its stdout+stderr
# Prints on stdout:  PID URL
#
# Env: START_TIMEOUT  seconds to wait for readiness (default 20)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT < 65536 )) || die "usage: $0 PORT"
START_TIMEOUT="${START_TIMEOUT:-20}"
NODE="$(find_node22)"
require_node_modules
mkdir -p "$CONF_RESULTS_DIR"
PIDFILE="$CONF_RESULTS_DIR/everything-$PORT.pid"
LOG="$CONF_RESULTS_DIR/everything-$PORT.log"
URL="http://127.0.0.1:$PORT/mcp"

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  die "a server started by this script is already running on port $PORT (pid $(cat "$PIDFILE")); ./stop-everything.sh $PORT"
fi
# Refuse to start if something already answers on the port: we would then
# test whatever that is.
code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL" || true)"
[[ "$code" == "000" ]] || die "port $PORT on 127.0.0.1 is already in use (HTTP $code)"

# Run from the results dir so the server's relative paths (if any) land there.
PORT="$PORT" "$NODE" --require "$CONF_DIR/force-loopback.cjs" "$EVERYTHING_CLI" streamableHttp \
  </dev/null >"$LOG" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"

deadline=$(( $(date +%s) + START_TIMEOUT ))
while :; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$PIDFILE"
    echo "--- $LOG" >&2; tail -n 20 "$LOG" >&2
    die "server-everything exited during startup"
  fi
  # Any HTTP answer means Express is listening (GET /mcp without a session is a 400).
  code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL" || true)"
  [[ "$code" != "000" ]] && break
  if (( $(date +%s) >= deadline )); then
    kill "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    die "server-everything not ready on $URL after ${START_TIMEOUT}s (see $LOG)"
  fi
  sleep 0.2
done
echo "$pid $URL"
