#!/usr/bin/env python3
"""Compare two run-suite.sh outputs scenario by scenario.

Usage: compare.py [--level outcome|checks|messages] [--allow-diff SCENARIO]... [--quiet]
                  DIRECT.json PROXIED.json

Prints one row per scenario with both outcomes, then both pass counts, then
any finer (check-level) differences.

What must match, by --level:
  outcome   (default) each scenario's outcome: pass/warn/fail/error/timeout/not-run
  checks    also the scenario's non-INFO checks, as (id, status) in order
  messages  also each such check's errorMessage (the run's own host:port is
            replaced by <HOST> first, so two URLs can be compared)

Most scenarios FAIL against server-everything (it lacks the suite's fixture
tools/prompts/resources), so an outcome-level comparison cannot see a proxy
that breaks an already-failing scenario in a new way; --level messages can:
the baseline's error messages are deterministic run to run.

--allow-diff SCENARIO (repeatable): a difference in that scenario is shown but
does not fail the comparison (e.g. dns-rebinding-protection when the proxy
deliberately adds Host/Origin validation that the upstream lacks).

Exit status: 0 same at the chosen level; 1 some scenario differs (or is absent
from one file); 2 usage error / unreadable input.
"""

import argparse
import json
import sys
from urllib.parse import urlsplit


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(data, dict) or not isinstance(data.get("outcomes"), dict):
        print(f"error: {path} has no 'outcomes' object (not a run-suite.sh output?)", file=sys.stderr)
        sys.exit(2)
    return data


def host_of(data):
    url = data.get("run", {}).get("url") or ""
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


def checks_of(data, name, with_messages):
    rec = data.get("scenarios", {}).get(name, {})
    host = host_of(data)
    out = []
    for c in rec.get("checks", []):
        item = [c.get("id"), c.get("status")]
        if with_messages:
            msg = c.get("errorMessage")
            if msg and host:
                msg = msg.replace(host, "<HOST>")
            item.append(msg)
        out.append(tuple(item))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("direct")
    ap.add_argument("proxied")
    ap.add_argument("--level", choices=("outcome", "checks", "messages"), default="outcome")
    ap.add_argument("--allow-diff", action="append", default=[], metavar="SCENARIO")
    ap.add_argument("--quiet", action="store_true", help="list only scenarios that differ at some level")
    args = ap.parse_args()

    a, b = load(args.direct), load(args.proxied)
    oa, ob = a["outcomes"], b["outcomes"]
    names = list(oa) + [n for n in ob if n not in oa]
    rank = {"outcome": 0, "checks": 1, "messages": 2}[args.level]

    width = max([len("scenario")] + [len(n) for n in names])
    rows, failing, allowed, notes = [], [], [], []
    for n in names:
        x, y = oa.get(n, "(absent)"), ob.get(n, "(absent)")
        # Finest level at which this scenario differs: None, 0 outcome, 1 checks, 2 messages.
        level = None
        if x != y:
            level = 0
        elif checks_of(a, n, False) != checks_of(b, n, False):
            level = 1
        elif checks_of(a, n, True) != checks_of(b, n, True):
            level = 2
        counts = level is not None and level <= rank
        if counts:
            (allowed if n in args.allow_diff else failing).append(n)
        if level is not None and level > 0:
            notes.append(n)
        if level is None:
            mark = ""
        elif level == 0:
            mark = "  <-- OUTCOME DIFFERS"
        else:
            mark = "  (" + ("checks" if level == 1 else "messages") + " differ)"
        if counts and n in args.allow_diff:
            mark += " [allowed]"
        if not args.quiet or level is not None:
            rows.append(f"{n:<{width}}  {x:<8}  {y:<8}{mark}")

    print(f"{'scenario':<{width}}  {'direct':<8}  {'proxied':<8}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}")
    if rows:
        print("\n".join(rows))
    print()

    def line(label, data):
        c = data.get("counts", {})
        ch = c.get("checks", {})
        return (
            f"{label:<8} pass {c.get('pass', '?')}/{c.get('scenarios', '?')}"
            f"  (warn {c.get('warn', '?')}, fail {c.get('fail', '?')}, error {c.get('error', '?')},"
            f" timeout {c.get('timeout', '?')}, not-run {c.get('not-run', '?')});"
            f" checks {ch.get('SUCCESS', '?')} SUCCESS / {ch.get('FAILURE', '?')} FAILURE / {ch.get('WARNING', '?')} WARNING;"
            f" {data.get('run', {}).get('url', '?')}"
        )

    print(line("direct", a))
    print(line("proxied", b))

    if notes:
        print()
        print("check-level differences (scenario outcome equal):")
        for n in notes:
            print(f"  {n}:")
            print(f"    direct : {checks_of(a, n, True)}")
            print(f"    proxied: {checks_of(b, n, True)}")

    print()
    if allowed:
        print(f"allowed differences ({len(allowed)}): {', '.join(allowed)}")
    if failing:
        print(f"DIFFER at level '{args.level}': {len(failing)} scenario(s): {', '.join(failing)}")
        sys.exit(1)
    print(f"SAME at level '{args.level}': {len(names)} scenarios compared")
    sys.exit(0)


if __name__ == "__main__":
    main()
