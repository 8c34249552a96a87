#!/usr/bin/env python3
"""A stdio MCP client on the official Python SDK (`mcp` 2.3.0: `stdio_client`
+ `ClientSession`) for the framing tests (`tests/framing.rs`): it launches a
server (normally `warden stdio --config F` in front of
`smuggling_upstream.py`) and checks that what the SDK reads from the
server's stdout is exactly the genuine messages, never a forged one that the
upstream hid between raw CRs inside a genuine answer.

Usage:
  python framing_client.py [--timeout SECONDS] [--verbose] -- CMD ARGS...

Checks (one line each, `ok <check>` or `FAIL <check>: <detail>`, then
`N passed, M failed`; exit 0 only when M is 0, 2 for bad usage):
- `initialize`: the upstream's serverInfo (`smuggling-upstream`) arrives.
- `tools-list`: exactly `echo` is listed (no `forged_tool`), and its
  description keeps its U+2028 ("genuine echo<U+2028>second line").
- `call-echo`: the result is the genuine text "genuine<U+2028>result",
  not "forged result".
- `no-forged-request`: the sampling callback (the client declares
  sampling) was never invoked, and no `sampling/createMessage` arrived.
- `no-stray-lines`: the SDK's line reader handed the session no line that
  failed to parse (a fragment of a split message).
- `one-answer-each`: exactly one response arrived for each request the
  SDK sent (it also sends a `tools/list` of its own after a call), and none
  for an id it never sent.

The SDK's stdio client splits the server's stdout on LF only
(`lines = (buffer + chunk).split("\\n")` in `mcp/client/stdio.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters, stdio_client

from checks import CheckFailed, Checks, StreamTap, ensure

GENUINE_DESCRIPTION = "genuine echo\u2028second line"
GENUINE_TEXT = "genuine\u2028result"


class Tap(StreamTap):
    """Wraps a transport stream; records every item the session gets (or sends)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.messages: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def received(self, item: Any) -> None:
        if isinstance(item, Exception):
            self.errors.append(f"{type(item).__name__}: {item}"[:300])
            return
        message = getattr(item, "message", None)
        if message is not None:
            self.messages.append(message.model_dump(by_alias=True, mode="json", exclude_none=True))

    def sending(self, item: Any) -> None:
        message = getattr(item, "message", None)
        if message is not None:
            self.sent.append(message.model_dump(by_alias=True, mode="json", exclude_none=True))


class Run(Checks):
    # Each check has the per-request timeout, and any failure (a timeout
    # too) is told by its exception.
    GRACE = 0.0
    SAYS_TIMEOUT = False

    def __init__(self, command: list[str], timeout: float, verbose: bool) -> None:
        super().__init__(timeout, verbose)
        self.command = command
        self.sampling_calls = 0
        self.sent_ids: list[Any] = []

    def describe(self, e: Exception) -> str:
        detail = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
        return " ".join(detail.split())[:500]

    async def on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.sampling_calls += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="should never be asked"),
            model="warden-e2e-stub-model",
            stop_reason="endTurn",
        )

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            params = StdioServerParameters(command=self.command[0], args=self.command[1:])
            read, write = await stack.enter_async_context(stdio_client(params))
            tap = Tap(read)
            out = Tap(write)
            session = await stack.enter_async_context(
                ClientSession(
                    tap,
                    out,
                    read_timeout_seconds=self.T,
                    sampling_callback=self.on_sampling,
                    client_info=types.Implementation(name="warden-e2e-framing-py", version="0.1.0"),
                )
            )

            async def initialize() -> None:
                result = await session.initialize()
                name = result.server_info.name if result.server_info else None
                ensure(name == "smuggling-upstream", f"serverInfo.name is {name!r}")

            if not await self.check("initialize", initialize):
                return

            async def tools_list() -> None:
                result = await session.list_tools()
                names = [t.name for t in result.tools]
                ensure(names == ["echo"], f"listed {names}, want exactly ['echo']")
                description = result.tools[0].description
                ensure(
                    description == GENUINE_DESCRIPTION,
                    f"echo's description is {description!r}, want {GENUINE_DESCRIPTION!r}",
                )

            await self.check("tools-list", tools_list)

            async def call_echo() -> None:
                result = await session.call_tool("echo", {"say": "hi"})
                texts = [c.text for c in result.content if isinstance(c, types.TextContent)]
                ensure(not result.is_error, f"isError result: {texts}")
                ensure(texts == [GENUINE_TEXT], f"result text {texts}, want [{GENUINE_TEXT!r}]")

            await self.check("call-echo", call_echo)
            # Anything split off a genuine answer arrives right behind it.
            await anyio.sleep(0.5)

            async def no_forged_request() -> None:
                forged = [m for m in tap.messages if m.get("method") == "sampling/createMessage"]
                ensure(not forged, f"a forged request arrived: {forged}")
                ensure(self.sampling_calls == 0, f"the sampling callback ran {self.sampling_calls} time(s)")

            await self.check("no-forged-request", no_forged_request)

            async def no_stray_lines() -> None:
                ensure(not tap.errors, f"lines that are not one message: {tap.errors}")

            await self.check("no-stray-lines", no_stray_lines)

            async def one_answer_each() -> None:
                asked = Counter(json.dumps(m["id"]) for m in out.sent if "method" in m and "id" in m)
                answers = Counter(json.dumps(m.get("id")) for m in tap.messages if "method" not in m)
                ensure(asked and all(n == 1 for n in asked.values()), f"request ids sent: {dict(asked)}")
                ensure(
                    answers == asked,
                    f"responses by id: {dict(answers)}, want one for each request sent: {dict(asked)}",
                )

            await self.check("one-answer-each", one_answer_each)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.print_usage(sys.stderr)
        sys.exit(2)
    run = Run(command, args.timeout, args.verbose)

    async def watched() -> None:
        # An overall watchdog: a hang becomes a FAIL line, never an endless wait.
        with anyio.fail_after(args.timeout * 4):
            await run.run()

    try:
        anyio.run(watched)
    except Exception as e:  # noqa: BLE001
        run.failed += 1
        run.line(f"FAIL run: {type(e).__name__}: {' '.join(str(e).split())[:500]}")
        if args.verbose:
            traceback.print_exc()
    sys.exit(run.summary())


if __name__ == "__main__":
    main()
