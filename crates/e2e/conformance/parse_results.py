#!/usr/bin/env python3
"""Turn one raw conformance-suite run (made by run-suite.sh) into OUTPUT.json.

Usage: parse_results.py RAW_DIR OUTPUT.json

RAW_DIR holds what run-suite.sh kept of the run:
  meta.json              facts about the run (url, versions, exit code, timing)
  scenarios.txt          every scenario the run was meant to cover, one a line
  stdout.txt/stderr.txt  the suite's own output (suite mode)
  per-scenario/NAME.*    the suite's output per scenario (per-scenario mode)
  timeouts.txt           scenarios killed by a per-scenario timeout, if any
  checks/server-NAME-<timestamp>/checks.json   written by the suite (-o)

Outcome of a scenario, from its checks (status SUCCESS/FAILURE/WARNING/INFO):
  pass     no FAILURE and no WARNING
  warn     no FAILURE, at least one WARNING  (the suite itself counts this as passed)
  fail     at least one FAILURE
  error    the suite could not run it (exception; no checks.json)
  timeout  the run was killed while this scenario was running
  not-run  the run ended (killed) before reaching it
"""

import json
import os
import re
import sys
from collections import Counter

DIR_RE = re.compile(r"^server-(?P<name>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
SUMMARY_RE = re.compile(r"^[✓✗] (?P<name>\S+): (?P<passed>\d+) passed, (?P<failed>\d+) failed")
RUNNING_RE = re.compile(r"^=== Running scenario: (?P<name>\S+) ===$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
OUTCOMES = ("pass", "warn", "fail", "error", "timeout", "not-run")


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return default


def load_checks(raw):
    """scenario -> list of checks, from checks/server-*/checks.json."""
    found = {}
    cdir = os.path.join(raw, "checks")
    if not os.path.isdir(cdir):
        return found
    for entry in sorted(os.listdir(cdir)):
        m = DIR_RE.match(entry)
        path = os.path.join(cdir, entry, "checks.json")
        if not m or not os.path.isfile(path):
            continue
        name = m.group("name")
        with open(path, encoding="utf-8") as f:
            checks = json.load(f)
        if name in found:
            # Should not happen with a fresh output dir; keep every check.
            found[name].extend(checks)
        else:
            found[name] = checks
    return found


def outcome_of(checks):
    statuses = Counter(c.get("status") for c in checks)
    if statuses["FAILURE"]:
        return "fail"
    if statuses["WARNING"]:
        return "warn"
    return "pass"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    raw, out_path = sys.argv[1], sys.argv[2]
    meta = json.loads(read(os.path.join(raw, "meta.json"), "{}"))
    expected = [s.strip() for s in read(os.path.join(raw, "scenarios.txt")).splitlines() if s.strip()]

    stdout = ANSI_RE.sub("", read(os.path.join(raw, "stdout.txt")))
    stderr = ANSI_RE.sub("", read(os.path.join(raw, "stderr.txt")))
    per_dir = os.path.join(raw, "per-scenario")
    if os.path.isdir(per_dir):
        for fn in sorted(os.listdir(per_dir)):
            text = ANSI_RE.sub("", read(os.path.join(per_dir, fn)))
            if fn.endswith(".stderr.txt"):
                stderr += text
            else:
                stdout += text
    timeouts = {s.strip() for s in read(os.path.join(raw, "timeouts.txt")).splitlines() if s.strip()}

    summary = {}
    running = []
    for line in stdout.splitlines():
        m = SUMMARY_RE.match(line)
        if m:
            summary[m.group("name")] = (int(m.group("passed")), int(m.group("failed")))
        m = RUNNING_RE.match(line)
        if m:
            running.append(m.group("name"))
    failed_to_run = set(re.findall(r"Failed to run scenario (\S+?):", stderr))

    checks_by = load_checks(raw)
    timed_out_whole = bool(meta.get("timed_out"))
    # In suite mode the scenario that was running when the run was killed is
    # the last "=== Running scenario" line without a checks.json.
    killed_in = None
    if timed_out_whole and running and running[-1] not in checks_by:
        killed_in = running[-1]

    names = list(expected)
    for extra in list(checks_by) + list(summary):
        if extra not in names:
            names.append(extra)

    scenarios = {}
    for name in names:
        checks = checks_by.get(name)
        rec = {}
        if checks is not None:
            rec["outcome"] = outcome_of(checks)
            st = Counter(c.get("status") for c in checks)
            rec["check_counts"] = {k: st.get(k, 0) for k in ("SUCCESS", "FAILURE", "WARNING", "INFO")}
            # INFO checks are traffic logs (requests/responses/SSE events):
            # left out here, kept in the raw checks.json.
            rec["checks"] = [
                {k: c.get(k) for k in ("id", "status", "errorMessage") if c.get(k) is not None}
                for c in checks
                if c.get("status") != "INFO"
            ]
        elif name in timeouts or name == killed_in:
            rec["outcome"] = "timeout"
        elif name in failed_to_run or name in summary:
            rec["outcome"] = "error"
        else:
            rec["outcome"] = "not-run"
        if name in summary:
            p, f = summary[name]
            rec["suite_summary"] = {"passed": p, "failed": f}
        scenarios[name] = rec

    outcomes = {n: r["outcome"] for n, r in scenarios.items()}
    oc = Counter(outcomes.values())
    check_totals = Counter()
    for r in scenarios.values():
        check_totals.update(r.get("check_counts", {}))
    counts = {"scenarios": len(outcomes)}
    counts.update({k: oc.get(k, 0) for k in OUTCOMES})
    counts["checks"] = {k: check_totals.get(k, 0) for k in ("SUCCESS", "FAILURE", "WARNING", "INFO")}

    result = {
        "format": "warden-conformance-outcomes/1",
        "outcomes": outcomes,
        "counts": counts,
        "run": meta,
        "scenarios": scenarios,
    }
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, out_path)
    c = counts
    print(
        f"{c['scenarios']} scenarios: {c['pass']} pass, {c['warn']} warn, {c['fail']} fail, "
        f"{c['error']} error, {c['timeout']} timeout, {c['not-run']} not-run; "
        f"checks: {c['checks']['SUCCESS']} SUCCESS, {c['checks']['FAILURE']} FAILURE, "
        f"{c['checks']['WARNING']} WARNING"
    )


if __name__ == "__main__":
    main()
