#!/usr/bin/env python3
"""End-to-end MCP client built on the official Python SDK (`mcp`, 2.x).

Usage:
  python py-client.py URL [--expect-refused a,b] [--expect-listed c,d]
                          [--timeout SECONDS] [--verbose] [--sse]
                          [--stdio CMD ARGS...]

Exercises an MCP server (server-everything, directly or behind Warden) over
Streamable HTTP (`mcp.client.streamable_http.streamable_http_client` +
`mcp.ClientSession`); with --sse, over the legacy HTTP+SSE transport at URL
(`mcp.client.sse.sse_client`); with --stdio, a server it launches. Every check prints one line, `ok <check>` or
`FAIL <check>: <detail>` (or `skip <check>: <reason>`, not counted), and the run
ends with `N passed, M failed`. Exit code is 0 only if nothing failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import traceback
import uuid
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from checks import CheckFailed, Checks, Skip, StreamTap, ensure, err_text, one_line

# Names as listed by @modelcontextprotocol/server-everything 2026.8.31.
TOOL = {
    "echo": "echo",
    "sum": "get-sum",
    "long": "trigger-long-running-operation",
    "sampling": "trigger-sampling-request",
    "elicitation": "trigger-elicitation-request",
    "roots": "get-roots-list",
}
# Arguments to use when calling a tool that is expected to be refused, so that
# if the proxy wrongly forwards it the upstream call is at least well formed.
DEFAULT_ARGS: dict[str, dict[str, Any]] = {
    "echo": {"message": "should be refused"},
    "get-sum": {"a": 1, "b": 2},
    "trigger-long-running-operation": {"duration": 1, "steps": 1},
    "trigger-sampling-request": {"prompt": "should be refused", "maxTokens": 5},
    "gzip-file-as-resource": {"name": "refused.gz", "data": "data:text/plain,refused"},
    "get-resource-reference": {"resourceType": "Text", "resourceId": 1},
    "get-resource-links": {"count": 1},
    "get-annotated-message": {"messageType": "success"},
    "toggle-simulated-logging": {},
}
CANCEL_DURATION = 3.5


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


class Tap(StreamTap):
    """Wraps a transport stream and records every JSON-RPC message passing through."""

    def __init__(self, inner: Any, log: list[tuple[float, dict[str, Any]]]) -> None:
        super().__init__(inner)
        self._log = log

    def _record(self, item: Any) -> None:
        msg = getattr(item, "message", None)
        if msg is not None:
            try:
                self._log.append((time.monotonic(), msg.model_dump(by_alias=True, mode="json", exclude_none=True)))
            except Exception:  # pragma: no cover - best effort
                pass

    received = sending = _record


class Runner(Checks):
    def __init__(self, url: str, refused: list[str], listed: list[str], timeout: float, verbose: bool) -> None:
        super().__init__(timeout, verbose)
        self.url = url
        self.refused = refused
        self.refused_set = set(refused)
        self.listed = listed
        self.nonce = uuid.uuid4().hex[:8]
        self.root_uri = f"file:///tmp/warden-e2e-root-{self.nonce}"
        self.seen_sampling: list[types.CreateMessageRequestParams] = []
        self.seen_elicitation: list[types.ElicitRequestParams] = []
        self.seen_roots = 0
        self.wire_in: list[tuple[float, dict[str, Any]]] = []
        self.wire_out: list[tuple[float, dict[str, Any]]] = []
        self.http_log: list[tuple[str, int, str | None]] = []  # (method, status, session id sent)
        self.session_id: str | None = None
        self.stdio: list[str] | None = None
        # URL is a legacy HTTP+SSE event stream (for running the checks
        # against server-everything directly in its sse mode).
        self.sse = False

    def need_tool(self, tool: str) -> None:
        if tool in self.refused_set:
            raise Skip(f"{tool} is expected to be refused")

    # ------------------------------------------------------------ client-side handlers
    async def on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.seen_sampling.append(params)
        self.debug("sampling/createMessage", params.model_dump_json(by_alias=True, exclude_none=True))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"warden-e2e sampled answer {self.nonce}"),
            model="warden-e2e-stub-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.seen_elicitation.append(params)
        self.debug("elicitation/create", getattr(params, "message", None))
        return types.ElicitResult(
            action="accept",
            content={
                "name": f"Warden E2E {self.nonce}",
                "check": True,
                "email": "e2e@example.com",
                "integer": 7,
                "number": 2.5,
                "untitledSingleSelectEnum": "Joey",
            },
        )

    async def on_list_roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.seen_roots += 1
        self.debug("roots/list")
        return types.ListRootsResult(roots=[types.Root(uri=self.root_uri, name="warden-e2e-root")])

    # ------------------------------------------------------------ http hooks
    async def on_http_request(self, request: httpx2.Request) -> None:
        self.debug("HTTP", request.method, dict((k, v) for k, v in request.headers.items() if k.lower().startswith("mcp")))

    async def on_http_response(self, response: httpx2.Response) -> None:
        req = response.request
        sid = response.headers.get("mcp-session-id")
        if sid and self.session_id is None:
            self.session_id = sid
        self.http_log.append((req.method, response.status_code, req.headers.get("mcp-session-id")))

    # ------------------------------------------------------------ the run
    async def run(self) -> None:
        T = self.T
        http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(T),
            event_hooks={"request": [self.on_http_request], "response": [self.on_http_response]},
        )
        async with http:
            state: dict[str, Any] = {"connected": False, "init_reported": False}
            try:
                async with AsyncExitStack() as stack:
                    if self.stdio:
                        params = StdioServerParameters(command=self.stdio[0], args=self.stdio[1:])
                        read, write = await stack.enter_async_context(stdio_client(params))
                    elif self.sse:
                        read, write = await stack.enter_async_context(
                            sse_client(self.url, timeout=T, sse_read_timeout=10 * T + 60)
                        )
                    else:
                        read, write = await stack.enter_async_context(
                            streamable_http_client(self.url, http_client=http)
                        )
                    session = await stack.enter_async_context(
                        ClientSession(
                            Tap(read, self.wire_in),
                            Tap(write, self.wire_out),
                            read_timeout_seconds=T,
                            sampling_callback=self.on_sampling,
                            elicitation_callback=self.on_elicitation,
                            list_roots_callback=self.on_list_roots,
                            client_info=types.Implementation(name="warden-e2e-py-client", version="0.1.0"),
                        )
                    )

                    async def initialize() -> None:
                        result = await session.initialize()
                        ensure(result.server_info and result.server_info.name, "no serverInfo in initialize result")
                        ensure(result.capabilities.tools is not None, "server did not announce the tools capability")
                        if not self.stdio and not self.sse:
                            ensure(self.session_id, "no Mcp-Session-Id assigned")
                        state["connected"] = True
                        self.debug("server", result.server_info, "protocol", result.protocol_version, "session", self.session_id)

                    await self.check("initialize", initialize)
                    state["init_reported"] = True
                    if state["connected"]:
                        await self.session_checks(session)
                # Leaving streamable_http_client sent DELETE (terminate_on_close=True).
            except Exception as e:  # noqa: BLE001 - e.g. the SDK's transport task group failing
                if self.verbose:
                    traceback.print_exc()
                if not state["init_reported"]:
                    # The SDK lets a failed initialize POST (connection refused, ...)
                    # crash its transport task group instead of failing the request.
                    self.failed += 1
                    self.line(f"FAIL initialize: {one_line(err_text(e))}")
                elif state["connected"]:
                    self.failed += 1
                    self.line(f"FAIL transport: {one_line(err_text(e))}")
            # Over stdio, leaving stdio_client closed the child's stdin; the
            # HTTP session checks apply to Streamable HTTP only.
            if state["connected"] and not self.stdio and not self.sse:
                await self.terminate_checks(http)

    async def session_checks(self, session: ClientSession) -> None:
        T = self.T
        listed_names: set[str] = set()

        async def tools_list() -> None:
            tools: list[types.Tool] = []
            cursor = None
            for _ in range(50):
                r = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                tools.extend(r.tools)
                cursor = r.next_cursor
                if not cursor:
                    break
            listed_names.update(t.name for t in tools)
            ensure(tools, "tools/list is empty")
            self.debug("tools:", ",".join(sorted(listed_names)))

        await self.check("tools-list", tools_list)

        async def baseline() -> None:
            want = [n for n in TOOL.values() if n not in self.refused_set]
            missing = [n for n in want if n not in listed_names]
            ensure(not missing, f"missing from tools/list: {','.join(missing)}")

        await self.check("tools-list-baseline", baseline)

        for n in self.listed:
            async def expect_listed(n: str = n) -> None:
                ensure(n in listed_names, f"{n} not in tools/list")

            await self.check(f"expect-listed {n}", expect_listed)

        for n in self.refused:
            async def not_listed(n: str = n) -> None:
                ensure(n not in listed_names, f"{n} is present in tools/list")

            async def refused_call(n: str = n) -> None:
                try:
                    r = await session.call_tool(n, DEFAULT_ARGS.get(n, {}))
                except Exception as e:  # noqa: BLE001
                    raise CheckFailed(f"call raised instead of returning a refusal result: {err_text(e)}") from e
                sc = r.structured_content if isinstance(r.structured_content, dict) else None
                # Describe a non-refusal without dumping its content (a tool such
                # as get-env returns the upstream's environment).
                shape = (
                    f"isError={json.dumps(r.is_error)}, structuredContent keys={sorted(sc) if sc else []}, "
                    f"{len(r.content)} content item(s)"
                )
                ensure(r.is_error is True, f"not an error result ({shape})")
                warden = sc.get("warden") if sc else None
                ensure(
                    isinstance(warden, dict) and warden.get("decision") is not None,
                    f"structuredContent.warden.decision missing ({shape})",
                )
                self.debug(f"refusal for {n}:", json.dumps(sc))

            await self.check(f"refused-not-listed {n}", not_listed)
            await self.check(f"refused-call {n}", refused_call)

        # ------------------------------------------------------------ simple calls
        async def call_echo() -> None:
            self.need_tool(TOOL["echo"])
            msg = f"hello warden {self.nonce}"
            r = await session.call_tool(TOOL["echo"], {"message": msg})
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(msg in text_of(r), f"echo text was {text_of(r)!r}")

        async def call_sum() -> None:
            self.need_tool(TOOL["sum"])
            r = await session.call_tool(TOOL["sum"], {"a": 19, "b": 23})
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(re.search(r"\b42\b", text_of(r)), f"sum text was {text_of(r)!r}")

        await self.check("call-echo", call_echo)
        await self.check("call-get-sum", call_sum)

        # ------------------------------------------------------------ progress
        async def progress() -> None:
            self.need_tool(TOOL["long"])
            events: list[tuple[float, float | None, str | None]] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                events.append((p, total, message))

            r = await session.call_tool(TOOL["long"], {"duration": 1, "steps": 3}, progress_callback=on_progress)
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(re.search("completed", text_of(r), re.I), f"unexpected result {text_of(r)!r}")
            ensure(len(events) >= 1, "no notifications/progress received")
            self.debug("progress events", events)

        await self.check("progress", progress)

        # ------------------------------------------------------------ cancellation
        # Start a ~3.5 s call with a progress token, cancel the caller's scope
        # after the first progress notification, and check: the call ends as
        # cancelled (no result), the SDK put notifications/cancelled for that
        # request id on the wire, the session still serves calls, and (later,
        # after the operation would have finished) no response for the
        # cancelled id ever arrives.
        cancel_state: dict[str, Any] = {}

        async def cancel() -> None:
            self.need_tool(TOOL["long"])
            first = anyio.Event()
            outcome: dict[str, Any] = {}

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                first.set()

            async def caller(scope: anyio.CancelScope) -> None:
                with scope:
                    try:
                        outcome["result"] = await session.call_tool(
                            TOOL["long"], {"duration": CANCEL_DURATION, "steps": 7}, progress_callback=on_progress
                        )
                    except anyio.get_cancelled_exc_class():
                        outcome["cancelled"] = True
                        raise
                    except Exception as e:  # noqa: BLE001
                        outcome["error"] = e
                first.set()

            scope = anyio.CancelScope()
            cancel_state["start"] = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller, scope)
                with anyio.move_on_after(min(T, 10)):
                    await first.wait()
                sent = [
                    m for _, m in self.wire_out
                    if m.get("method") == "tools/call"
                    and (m.get("params") or {}).get("arguments", {}).get("duration") == CANCEL_DURATION
                ]
                ensure(sent, "could not find the outgoing tools/call on the wire")
                cancel_state["id"] = sent[-1]["id"]
                scope.cancel()
            ensure("result" not in outcome, f"call was not cancelled, it returned {one_line(outcome.get('result'))}")
            ensure("error" not in outcome, f"call failed instead of being cancelled: {err_text(outcome['error']) if 'error' in outcome else ''}")
            ensure(outcome.get("cancelled") or scope.cancelled_caught, "call was not cancelled")
            rid = cancel_state["id"]
            with anyio.move_on_after(3):
                while not any(
                    m.get("method") == "notifications/cancelled" and (m.get("params") or {}).get("requestId") == rid
                    for _, m in self.wire_out
                ):
                    await anyio.sleep(0.05)
            ensure(
                any(
                    m.get("method") == "notifications/cancelled" and (m.get("params") or {}).get("requestId") == rid
                    for _, m in self.wire_out
                ),
                f"no notifications/cancelled sent for request {rid}",
            )
            cancel_state["ok"] = True

        await self.check("cancel", cancel)

        async def session_usable() -> None:
            if TOOL["echo"] not in self.refused_set:
                r = await session.call_tool(TOOL["echo"], {"message": f"after cancel {self.nonce}"})
            elif TOOL["sum"] not in self.refused_set:
                r = await session.call_tool(TOOL["sum"], {"a": 1, "b": 1})
            else:
                raise Skip("echo and get-sum are both expected to be refused")
            ensure(not r.is_error, f"isError: {text_of(r)}")

        await self.check("cancel-session-usable", session_usable)

        # ------------------------------------------------------------ sampling
        async def sampling() -> None:
            self.need_tool(TOOL["sampling"])
            before = len(self.seen_sampling)
            prompt = f"warden sampling prompt {self.nonce}"
            r = await session.call_tool(TOOL["sampling"], {"prompt": prompt, "maxTokens": 32})
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(len(self.seen_sampling) > before, "client never received sampling/createMessage")
            req = self.seen_sampling[-1]
            ensure(prompt in req.model_dump_json(), "sampling request did not carry the prompt")
            ensure(
                f"warden-e2e sampled answer {self.nonce}" in text_of(r),
                f"tool result does not reflect the sampled answer: {one_line(text_of(r))}",
            )

        await self.check("sampling", sampling)

        # ------------------------------------------------------------ elicitation
        async def elicitation() -> None:
            self.need_tool(TOOL["elicitation"])
            before = len(self.seen_elicitation)
            r = await session.call_tool(TOOL["elicitation"], {})
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(len(self.seen_elicitation) > before, "client never received elicitation/create")
            ensure(
                f"Warden E2E {self.nonce}" in text_of(r),
                f"tool result does not reflect the elicited answer: {one_line(text_of(r))}",
            )

        await self.check("elicitation", elicitation)

        # ------------------------------------------------------------ roots
        # server-everything asks for roots (roots/list, a server->client request
        # on the standalone GET SSE stream) shortly after initialization.
        async def roots() -> None:
            self.need_tool(TOOL["roots"])
            r = await session.call_tool(TOOL["roots"], {})
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(self.seen_roots >= 1, "client never received roots/list")
            ensure(self.root_uri in text_of(r), f"tool result does not list our root: {one_line(text_of(r))}")

        await self.check("roots", roots)

        # ------------------------------------------------------------ resources / prompts
        resources: list[types.Resource] = []

        async def resources_list() -> None:
            r = await session.list_resources()
            resources.extend(r.resources)
            ensure(resources, "resources/list is empty")

        async def resources_read() -> None:
            ensure(resources, "no resource to read")
            uri = str(resources[0].uri)
            r = await session.read_resource(uri)
            ensure(r.contents and str(r.contents[0].uri) == uri, f"unexpected read result for {uri}")

        await self.check("resources-list", resources_list)
        await self.check("resources-read", resources_read)

        prompts: list[types.Prompt] = []

        async def prompts_list() -> None:
            r = await session.list_prompts()
            prompts.extend(r.prompts)
            ensure(prompts, "prompts/list is empty")

        async def prompts_get() -> None:
            p = next((x for x in prompts if not any(a.required for a in (x.arguments or []))), None)
            if p is None:
                raise Skip("no prompt without required arguments")
            r = await session.get_prompt(p.name)
            ensure(r.messages, f"prompt {p.name} returned no messages")

        await self.check("prompts-list", prompts_list)
        await self.check("prompts-get", prompts_get)

        # ------------------------------------------------------------ late result after cancel
        if cancel_state.get("ok"):
            async def no_late_result() -> None:
                wait_until = cancel_state["start"] + CANCEL_DURATION + 1.5
                while time.monotonic() < wait_until:
                    await anyio.sleep(0.1)
                rid = cancel_state["id"]
                late = [m for _, m in self.wire_in if m.get("id") == rid and ("result" in m or "error" in m)]
                ensure(not late, f"a response for cancelled request {rid} still arrived: {one_line(json.dumps(late[0]) if late else '')}")

            await self.check("cancel-no-late-result", no_late_result)

    async def terminate_checks(self, http: httpx2.AsyncClient) -> None:
        sid = self.session_id

        async def terminate() -> None:
            deletes = [(m, st) for m, st, s in self.http_log if m == "DELETE" and s == sid]
            ensure(deletes, "no DELETE was sent when the transport closed")
            ensure(deletes[-1][1] in (200, 202, 204), f"DELETE answered HTTP {deletes[-1][1]}")

        # A request with the terminated session id must now be refused (the spec
        # says 404; server-everything answers 400 for unknown sessions).
        async def confirmed() -> None:
            ensure(sid, "no session id to test")
            res = await http.post(
                self.url,
                headers={
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                    "mcp-session-id": sid,
                    "mcp-protocol-version": "2025-11-25",
                },
                content=json.dumps({"jsonrpc": "2.0", "id": 999001, "method": "tools/list", "params": {}}),
            )
            ensure(res.status_code in (400, 404), f"old session id still answered HTTP {res.status_code}")

        await self.check("terminate", terminate)
        await self.check("terminate-confirmed", confirmed)


def split_list(values: list[str]) -> list[str]:
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


async def amain(args: argparse.Namespace) -> int:
    runner = Runner(
        args.url or "stdio", split_list(args.expect_refused), split_list(args.expect_listed), args.timeout, args.verbose
    )
    runner.stdio = args.stdio or None
    runner.sse = args.sse
    try:
        with anyio.fail_after(10 * args.timeout + 60):
            await runner.run()
    except TimeoutError:
        runner.failed += 1
        runner.line("FAIL run: overall watchdog fired")
    except Exception as e:  # noqa: BLE001
        runner.failed += 1
        runner.line(f"FAIL run: {one_line(err_text(e))}")
        if args.verbose:
            traceback.print_exc()
    return runner.summary()


def main() -> None:
    p = argparse.ArgumentParser(description="Warden e2e client (official MCP Python SDK)")
    p.add_argument("url", nargs="?")
    p.add_argument("--expect-refused", action="append", default=[], metavar="NAMES",
                   help="comma-separated tool names the proxy must refuse")
    p.add_argument("--expect-listed", action="append", default=[], metavar="NAMES",
                   help="comma-separated tool names that must appear in tools/list")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds allowed per request (default 20)")
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--sse", action="store_true",
                   help="URL is a legacy HTTP+SSE (2024-11-05) event stream, not a Streamable HTTP endpoint")
    p.add_argument("--stdio", nargs=argparse.REMAINDER, metavar="CMD",
                   help="launch CMD ARGS... as a stdio MCP server instead of using a URL (last option)")
    args = p.parse_args()
    if not args.url and not args.stdio:
        p.error("give a URL or --stdio CMD ARGS...")
    if args.timeout <= 0:
        p.error("bad --timeout")
    # The SDK logs transport hiccups (e.g. late progress for a cancelled
    # request) at WARNING; keep stdout/stderr to our own lines unless verbose.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr)
    sys.exit(anyio.run(amain, args))


if __name__ == "__main__":
    main()
