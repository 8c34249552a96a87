#!/usr/bin/env bash
# Usage: ./run-baseline.sh [PORT] [OUTPUT.json]
# The "suite vs upstream directly" run: starts server-everything on
# 127.0.0.1:PORT (default: a free port picked now), runs ./run-suite.sh against
# http://127.0.0.1:PORT/mcp into OUTPUT.json (default results/direct.json),
# and always stops the server again. Exit status is run-suite.sh's.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${1:-}"
if [[ -z "$PORT" ]]; then
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
fi
OUT="${2:-$DIR/results/direct.json}"
"$DIR/start-everything.sh" "$PORT" >/dev/null
trap '"$DIR/stop-everything.sh" "$PORT"' EXIT
rc=0
"$DIR/run-suite.sh" "http://127.0.0.1:$PORT/mcp" "$OUT" || rc=$?
exit "$rc"
