#!/usr/bin/env bash
# Usage: ./run-suite.sh URL OUTPUT.json
#
# Runs the pinned MCP conformance suite (@modelcontextprotocol/conformance,
# package.json) in SERVER mode, all server scenarios (`--suite all`), against
# the Streamable HTTP endpoint URL (e.g. http://127.0.0.1:3001/mcp), under
# Node 22 from .venv, with a timeout. Writes:
#
#   OUTPUT.json   {"outcomes": {scenario: pass|warn|fail|error|timeout|not-run},
#                  "counts": {...}, "run": {...}, "scenarios": {per-scenario checks}}
#   OUTPUT.raw/   the raw run: stdout.txt, stderr.txt, checks/server-*/checks.json,
#                 scenarios.txt, meta.json
#
# Exit: 0  OUTPUT.json written and the suite ran to its end (whatever the outcomes)
#       3  OUTPUT.json written but the run (or a scenario) hit its timeout
#       2  usage / setup error (nothing written)
#
# Env:
#   CONFORMANCE_TIMEOUT           seconds for the whole run (default 300)
#   CONFORMANCE_SUITE             all (default) | active | pending
#   CONFORMANCE_PER_SCENARIO=1    run each scenario in its own process (`--scenario`)
#                                 with its own timeout, so one hang costs one scenario
#   CONFORMANCE_SCENARIO_TIMEOUT  seconds per scenario in that mode (default 60)
#   ALLOW_NON_LOOPBACK=1          allow a URL whose host is not loopback
#   NODE22                        path of a Node >= 22 binary (default: the one in .venv)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 2 ]] || die "usage: $0 URL OUTPUT.json"
URL="$1"
OUT="$2"
[[ "$OUT" == *.json ]] || die "OUTPUT must end in .json: $OUT"
[[ "$URL" =~ ^https?:// ]] || die "URL must be http(s)://...: $URL"
if ! url_is_loopback "$URL" && [[ "${ALLOW_NON_LOOPBACK:-}" != 1 ]]; then
  die "refusing non-loopback URL $URL (set ALLOW_NON_LOOPBACK=1 to override)"
fi
TIMEOUT="${CONFORMANCE_TIMEOUT:-300}"
SUITE="${CONFORMANCE_SUITE:-all}"
PER_SCENARIO="${CONFORMANCE_PER_SCENARIO:-0}"
SCEN_TIMEOUT="${CONFORMANCE_SCENARIO_TIMEOUT:-60}"
case "$SUITE" in all|active|pending) ;; *) die "CONFORMANCE_SUITE must be all, active or pending" ;; esac
[[ "$PER_SCENARIO" != 1 || "$SUITE" == all ]] || die "CONFORMANCE_PER_SCENARIO=1 only supports CONFORMANCE_SUITE=all"

NODE="$(find_node22)"
require_node_modules

mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
RAW="${OUT%.json}.raw"
if [[ -e "$RAW" ]]; then
  # Only ever delete a directory this script made.
  [[ -f "$RAW/meta.json" || -z "$(ls -A "$RAW")" ]] || die "$RAW exists and is not a previous raw run; move it away"
  rm -rf "$RAW"
fi
mkdir -p "$RAW/checks"

conf() { "$NODE" "$CONF_CLI" "$@"; }
CONF_VERSION="$(conf --version)"
NODE_VERSION="$("$NODE" --version)"

# The scenario list of `--suite all` is exactly what `list --server` prints.
if [[ "$SUITE" == all ]]; then
  conf list --server | sed -n 's/^  - \([^ ]*\).*$/\1/p' >"$RAW/scenarios.txt"
  [[ -s "$RAW/scenarios.txt" ]] || die "could not list server scenarios"
else
  : >"$RAW/scenarios.txt"   # parse_results.py takes the names from the run itself
fi

started_epoch="$(date +%s.%N)"
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
rc=0
timed_out=false
if [[ "$PER_SCENARIO" == 1 ]]; then
  mkdir -p "$RAW/per-scenario"
  : >"$RAW/timeouts.txt"
  deadline=$(( $(date +%s) + TIMEOUT ))
  while read -r scen; do
    left=$(( deadline - $(date +%s) ))
    if (( left <= 0 )); then timed_out=true; break; fi
    t=$(( left < SCEN_TIMEOUT ? left : SCEN_TIMEOUT ))
    echo "=== Running scenario: $scen ===" >"$RAW/per-scenario/$scen.stdout.txt"
    src=0
    timeout --kill-after=5 "$t" "$NODE" "$CONF_CLI" server --url "$URL" --scenario "$scen" -o "$RAW/checks" \
      >>"$RAW/per-scenario/$scen.stdout.txt" 2>"$RAW/per-scenario/$scen.stderr.txt" </dev/null || src=$?
    if (( src == 124 || src == 137 )); then echo "$scen" >>"$RAW/timeouts.txt"; timed_out=true; fi
    (( src == 0 )) || rc=1
  done <"$RAW/scenarios.txt"
else
  set +e
  timeout --kill-after=5 "$TIMEOUT" "$NODE" "$CONF_CLI" server --url "$URL" --suite "$SUITE" -o "$RAW/checks" \
    >"$RAW/stdout.txt" 2>"$RAW/stderr.txt" </dev/null
  rc=$?
  set -e
  if (( rc == 124 || rc == 137 )); then timed_out=true; fi
fi
finished_epoch="$(date +%s.%N)"

python3 - "$RAW/meta.json" "$URL" "$SUITE" "$PER_SCENARIO" "$CONF_VERSION" "$NODE_VERSION" "$started_at" \
  "$started_epoch" "$finished_epoch" "$TIMEOUT" "$SCEN_TIMEOUT" "$rc" "$timed_out" "$RAW" <<'PY'
import json, sys
(path, url, suite, per, conf_v, node_v, started_at, t0, t1, tmo, stmo, rc, timed_out, raw) = sys.argv[1:]
json.dump({
    "url": url,
    "suite": suite,
    "mode": "per-scenario" if per == "1" else "suite",
    "conformance_package": "@modelcontextprotocol/conformance@" + conf_v,
    "node": node_v,
    "started_at": started_at,
    "duration_s": round(float(t1) - float(t0), 3),
    "timeout_s": int(tmo),
    "scenario_timeout_s": int(stmo) if per == "1" else None,
    "suite_exit_code": int(rc),
    "timed_out": timed_out == "true",
    "raw_dir": raw,
}, open(path, "w"), indent=2)
PY

python3 "$CONF_DIR/parse_results.py" "$RAW" "$OUT"
echo "wrote $OUT (raw: $RAW)"
[[ "$timed_out" == true ]] && exit 3
exit 0
