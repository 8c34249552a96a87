#!/usr/bin/env python3
"""A held call through Warden with the official Python SDK's client (`mcp` 2.3.0)
on its defaults: the SDK's own HTTP client and timeouts, no progress token.

Usage:
  python held_client.py URL TOOL ARGS_JSON [--calls N] [--timeout SECONDS]

Connects over Streamable HTTP (`streamable_http_client` + `ClientSession`) and
calls TOOL with ARGS_JSON N times (default 2): the first at once, each next
one when a line `again` arrives on stdin (so the test can decide the approval
in between). Every observation is one JSON line on stdout, `{"seen": KIND,
...}`: `result` (`call`: its number from 1, `result`: the `CallToolResult` as
the SDK parsed it, `model_dump(mode="json", by_alias=True,
exclude_none=True)`), `error` (any exception: `type` and `detail`), and last
`done`. Exit code 0 unless an `error` was printed (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def say(kind: str, **fields: Any) -> None:
    print(json.dumps({"seen": kind, **fields}, sort_keys=True), flush=True)


async def calls(args: argparse.Namespace) -> None:
    arguments = json.loads(args.arguments)
    async with streamable_http_client(args.url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for n in range(1, args.calls + 1):
                if n > 1:
                    told = (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()
                    if told != "again":
                        raise RuntimeError(f"expected 'again' on stdin, read {told!r}")
                result = await session.call_tool(args.tool, arguments)
                say("result", call=n, result=result.model_dump(mode="json", by_alias=True, exclude_none=True))


async def main_async(args: argparse.Namespace) -> int:
    failed = False
    try:
        with anyio.fail_after(args.timeout):
            await calls(args)
    except BaseException as err:  # noqa: BLE001 - every failure is reported as a line
        failed = True
        errors = err.exceptions if isinstance(err, BaseExceptionGroup) else [err]
        for one in errors:
            say("error", type=type(one).__name__, detail=str(one))
            traceback.print_exception(one, file=sys.stderr)
    say("done")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("tool")
    parser.add_argument("arguments", metavar="ARGS_JSON")
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0, help="for the whole run (default 60 s)")
    return anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
