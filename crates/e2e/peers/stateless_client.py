#!/usr/bin/env python3
"""End-to-end client for MCP's stateless revision 2026-07-28, built on the
official Python SDK (`mcp` 2.3.0: `mcp.client.Client`).

Usage:
  python stateless_client.py URL [--expect-listed a,b] [--expect-hidden c]
                                 [--expect-refused c] [--skip CHECK] [--timeout SECONDS] [--verbose]

Talks to `stateless_server.py`, directly or behind Warden. The client is
pinned to 2026-07-28 (`Client(mode="2026-07-28")`: no `initialize`, never the
legacy fallback); the `discover` check sends `server/discover` itself and
adopts its result. Every check prints one line, `PASS <check>` or
`FAIL <check>: <detail>` (or `skip <check>: <reason>`, not counted), and the
run ends with `N passed, M failed`. Exit code is 0 only if nothing failed
(2 for bad usage). `--skip CHECK` (repeatable, the check's full name, e.g.
`--skip "refused-call transfer_funds"`) reports that check as a skip: for
keeping a test green around a known bug that a separate test pins.

Checks:
- `discover`: `server/discover` answers with `supportedVersions` holding
  2026-07-28; adopted, the negotiated version is 2026-07-28.
- `tools-list`: `tools/list` returns tools; then `expect-listed <name>` for
  each `--expect-listed` name and `expect-hidden <name>` for each
  `--expect-hidden` name (must be absent: Warden's filter).
- `call-lookup`: `lookup` returns its text.
- `refused-wire <name>` (each `--expect-refused`): a raw `tools/call` for it
  (well-formed stateless headers and `_meta`) is answered HTTP 200 with a
  JSON-RPC result `isError: true` whose `structuredContent.warden.decision`
  is "deny" (the refusal is on the wire, whatever an SDK makes of it).
- `refused-call <name>` (each `--expect-refused`): the SDK's `call_tool`
  returns an `isError` result whose `structuredContent.warden.decision` is
  "deny" (so the refusal is also a valid 2026-07-28 `CallToolResult`).
  Without the flag, `call-transfer_funds` runs it and expects the transfer.
- `confirm-lookup`: `confirm_lookup` answers `input_required` with an
  elicitation; the SDK calls our elicitation callback and retries the call
  with `inputResponses` and the echoed `requestState` (seen on the wire), and
  the final result holds our answer.
- `listen-ack`: `subscriptions/listen` with toolsListChanged is acknowledged
  with toolsListChanged honored.
- `listen-tools-changed`: calling `add_tool` delivers
  `notifications/tools/list_changed` on that stream.
- `added-tool-listed`, `call-added-tool`: the new tool is listed and callable
  (through Warden: its catalogue was refreshed after the notice).
- `header-mismatch`: a raw `tools/call` whose `Mcp-Name` header names a
  different tool than the body is refused with -32020.
- `unsupported-version`: a raw request naming an unknown revision is refused
  with -32022 and `error.data.supported` holding 2026-07-28.
- `wire-stateless`: no request sent `initialize` or `Mcp-Session-Id`, and
  every POST carried `MCP-Protocol-Version: 2026-07-28` and `Mcp-Method`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
import uuid
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ToolsListChanged

from checks import CheckFailed, Checks, Skip, ensure, err_text, one_line

VERSION = "2026-07-28"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
# Arguments for calls to the server's tools.
DEFAULT_ARGS: dict[str, dict[str, Any]] = {
    "lookup": {"query": "should be refused"},
    "confirm_lookup": {"query": "should be refused"},
    "transfer_funds": {"to": "mallory", "amount": 1000000},
    "add_tool": {"name": "should_be_refused"},
}


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


class Runner(Checks):
    PASSED = "PASS"

    def __init__(
        self,
        url: str,
        listed: list[str],
        hidden: list[str],
        refused: list[str],
        skipped: list[str],
        timeout: float,
        verbose: bool,
    ) -> None:
        super().__init__(timeout, verbose, skipped)
        self.url = url
        self.listed = listed
        self.hidden = hidden
        self.refused = refused
        self.nonce = uuid.uuid4().hex[:8]
        self.answer = f"yes-{self.nonce}"
        self.seen_elicitation: list[types.ElicitRequestParams] = []
        # Every POST the SDK sent: (headers, decoded JSON body).
        self.posts: list[tuple[dict[str, str], Any]] = []
        self.other_requests: list[tuple[str, dict[str, str]]] = []
        # For the raw (SDK-free) requests; set by run().
        self.raw: httpx2.AsyncClient | None = None

    # ------------------------------------------------------------ client-side handlers
    async def on_elicitation(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.seen_elicitation.append(params)
        self.debug("elicitation", getattr(params, "message", None))
        return types.ElicitResult(action="accept", content={"answer": self.answer})

    async def on_http_request(self, request: httpx2.Request) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if request.method != "POST":
            self.other_requests.append((request.method, headers))
            return
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
        self.posts.append((headers, body))
        self.debug("POST", {k: v for k, v in headers.items() if k.startswith("mcp")}, request.content[:300])

    def tool_call_posts(self, name: str) -> list[dict[str, Any]]:
        return [
            body["params"]
            for _, body in self.posts
            if isinstance(body, dict)
            and body.get("method") == "tools/call"
            and isinstance(body.get("params"), dict)
            and body["params"].get("name") == name
        ]

    # ------------------------------------------------------------ raw requests
    def raw_meta(self, version: str = VERSION) -> dict[str, Any]:
        return {META_VERSION: version, META_CAPABILITIES: {}}

    async def raw_post(self, http: httpx2.AsyncClient | None, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        res = await http.post(
            self.url,
            headers={"content-type": "application/json", "accept": "application/json, text/event-stream", **headers},
            content=json.dumps(body),
        )
        text = res.text
        if res.headers.get("content-type", "").startswith("text/event-stream"):
            data = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
            text = data[-1] if data else ""
        try:
            return res.status_code, json.loads(text)
        except ValueError:
            return res.status_code, text

    # ------------------------------------------------------------ the run
    async def run(self) -> None:
        T = self.T
        http = httpx2.AsyncClient(timeout=httpx2.Timeout(T), event_hooks={"request": [self.on_http_request]})
        raw = self.raw = httpx2.AsyncClient(timeout=httpx2.Timeout(T))
        async with http, raw:
            client = Client(
                streamable_http_client(self.url, http_client=http),
                mode=VERSION,
                elicitation_callback=self.on_elicitation,
                client_info=types.Implementation(name="warden-e2e-stateless-client", version="0.1.0"),
                read_timeout_seconds=T,
                # Every request goes to the wire (no ttlMs-based answers from memory).
                cache=None,
            )
            async with client:
                await self.checks(client)
            await self.raw_checks(raw)
            await self.check("wire-stateless", self.wire_stateless)

    async def checks(self, client: Client) -> None:
        session = client.session

        async def discover() -> None:
            raw = await session.send_discover(VERSION)
            result = types.DiscoverResult.model_validate(raw)
            ensure(VERSION in result.supported_versions, f"supportedVersions is {result.supported_versions}")
            ensure(result.capabilities.tools is not None, "no tools capability in the discover result")
            session.adopt(result)
            ensure(client.protocol_version == VERSION, f"negotiated {client.protocol_version!r}")
            ensure(session.initialize_result is None, "an initialize result is installed")
            self.debug("discover", raw)

        if not await self.check("discover", discover):
            return

        listed: set[str] = set()

        async def tools_list() -> None:
            cursor = None
            for _ in range(50):
                r = await client.list_tools(cursor=cursor)
                listed.update(t.name for t in r.tools)
                cursor = r.next_cursor
                if not cursor:
                    break
            ensure(listed, "tools/list is empty")
            self.debug("tools:", ",".join(sorted(listed)))

        await self.check("tools-list", tools_list)

        for n in self.listed:

            async def expect_listed(n: str = n) -> None:
                ensure(n in listed, f"{n} not in tools/list ({','.join(sorted(listed))})")

            await self.check(f"expect-listed {n}", expect_listed)

        for n in self.hidden:

            async def expect_hidden(n: str = n) -> None:
                ensure(n not in listed, f"{n} is present in tools/list")

            await self.check(f"expect-hidden {n}", expect_hidden)

        async def call_lookup() -> None:
            q = f"warden-{self.nonce}"
            r = await client.call_tool("lookup", {"query": q})
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(f"found {q}" in text_of(r), f"lookup text was {text_of(r)!r}")

        await self.check("call-lookup", call_lookup)

        for n in self.refused:

            async def refused_wire(n: str = n) -> None:
                status, body = await self.raw_post(
                    self.raw,
                    {"mcp-protocol-version": VERSION, "mcp-method": "tools/call", "mcp-name": n},
                    {
                        "jsonrpc": "2.0",
                        "id": 900,
                        "method": "tools/call",
                        "params": {"name": n, "arguments": DEFAULT_ARGS.get(n, {}), "_meta": self.raw_meta()},
                    },
                )
                result = body.get("result") if isinstance(body, dict) else None
                shape = f"HTTP {status}, {one_line(json.dumps(body))}"
                ensure(status == 200 and isinstance(result, dict), f"not a result ({shape})")
                warden = (result.get("structuredContent") or {}).get("warden")
                ensure(result.get("isError") is True, f"not an error result ({shape})")
                ensure(isinstance(warden, dict) and warden.get("decision") == "deny", f"no warden deny decision ({shape})")

            await self.check(f"refused-wire {n}", refused_wire)

            async def refused_call(n: str = n) -> None:
                try:
                    r = await client.call_tool(n, DEFAULT_ARGS.get(n, {}))
                except Exception as e:  # noqa: BLE001
                    raise CheckFailed(f"call raised instead of returning a refusal result: {err_text(e)}") from e
                sc = r.structured_content if isinstance(r.structured_content, dict) else None
                shape = f"isError={json.dumps(r.is_error)}, structuredContent={one_line(json.dumps(sc))}, text={text_of(r)!r}"
                ensure(r.is_error is True, f"not an error result ({shape})")
                warden = sc.get("warden") if sc else None
                ensure(isinstance(warden, dict) and warden.get("decision") == "deny", f"no warden deny decision ({shape})")
                self.debug(f"refusal for {n}:", json.dumps(sc))

            await self.check(f"refused-call {n}", refused_call)

        async def call_transfer() -> None:
            if "transfer_funds" in self.refused:
                raise Skip("transfer_funds is expected to be refused")
            r = await client.call_tool("transfer_funds", {"to": "alice", "amount": 5})
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure("transferred 5 to alice" in text_of(r), f"transfer text was {text_of(r)!r}")

        await self.check("call-transfer_funds", call_transfer)

        async def confirm_lookup() -> None:
            q = f"confirm-{self.nonce}"
            before = len(self.seen_elicitation)
            r = await client.call_tool("confirm_lookup", {"query": q})
            ensure(len(self.seen_elicitation) == before + 1, f"elicitation callback ran {len(self.seen_elicitation) - before} times")
            ensure(not r.is_error, f"isError: {text_of(r)}")
            ensure(f"confirmed {q}: {self.answer}" in text_of(r), f"result text was {text_of(r)!r}")
            calls = [p for p in self.tool_call_posts("confirm_lookup") if (p.get("arguments") or {}).get("query") == q]
            ensure(len(calls) == 2, f"{len(calls)} tools/call POSTs for confirm_lookup (expected the call and one retry)")
            ensure("inputResponses" not in calls[0] and "requestState" not in calls[0], "first call carried input")
            responses = calls[1].get("inputResponses")
            ensure(isinstance(responses, dict) and responses, "the retry carried no inputResponses")
            answered = [v for v in responses.values() if isinstance(v, dict) and (v.get("content") or {}).get("answer") == self.answer]
            ensure(answered, f"the retry's inputResponses lack the answer: {one_line(json.dumps(responses))}")
            ensure(isinstance(calls[1].get("requestState"), str), "the retry carried no requestState")

        await self.check("confirm-lookup", confirm_lookup)

        new_tool = f"added_{self.nonce}"

        async def listen_checks() -> None:
            acked = False
            try:
                async with client.listen(tools_list_changed=True) as sub:
                    acked = True

                    async def ack() -> None:
                        ensure(sub.honored.tools_list_changed, f"toolsListChanged not honored: {sub.honored}")

                    await self.check("listen-ack", ack)

                    async def changed() -> None:
                        r = await client.call_tool("add_tool", {"name": new_tool})
                        ensure(not r.is_error, f"add_tool isError: {text_of(r)}")
                        with anyio.fail_after(self.T):
                            event = await sub.__anext__()
                        ensure(isinstance(event, ToolsListChanged), f"got {event!r}")

                    await self.check("listen-tools-changed", changed)
            except Exception as e:  # noqa: BLE001
                if acked:
                    raise
                self.failed += 1
                self.line(f"FAIL listen-ack: {one_line(err_text(e))}")
                if self.verbose:
                    traceback.print_exc()

        await listen_checks()

        async def added_listed() -> None:
            r = await client.list_tools()
            names = {t.name for t in r.tools}
            ensure(new_tool in names, f"{new_tool} not in tools/list ({','.join(sorted(names))})")

        async def call_added() -> None:
            r = await client.call_tool(new_tool, {})
            ensure(not r.is_error, f"isError: {text_of(r)} structuredContent={json.dumps(r.structured_content)}")
            ensure(f"hello from {new_tool}" in text_of(r), f"text was {text_of(r)!r}")

        await self.check("added-tool-listed", added_listed)
        await self.check("call-added-tool", call_added)

    async def raw_checks(self, http: httpx2.AsyncClient) -> None:
        async def header_mismatch() -> None:
            # The body calls transfer_funds; the header claims lookup (read-only).
            status, body = await self.raw_post(
                http,
                {"mcp-protocol-version": VERSION, "mcp-method": "tools/call", "mcp-name": "lookup"},
                {
                    "jsonrpc": "2.0",
                    "id": 901,
                    "method": "tools/call",
                    "params": {"name": "transfer_funds", "arguments": DEFAULT_ARGS["transfer_funds"], "_meta": self.raw_meta()},
                },
            )
            error = body.get("error") if isinstance(body, dict) else None
            ensure(isinstance(error, dict), f"HTTP {status}, not an error: {one_line(json.dumps(body))}")
            ensure(error.get("code") == types.HEADER_MISMATCH, f"HTTP {status}, error {one_line(json.dumps(error))}")
            ensure(status == 400, f"HTTP {status}")

        async def unsupported_version() -> None:
            status, body = await self.raw_post(
                http,
                {"mcp-protocol-version": "2099-01-01", "mcp-method": "tools/list"},
                {"jsonrpc": "2.0", "id": 902, "method": "tools/list", "params": {"_meta": self.raw_meta("2099-01-01")}},
            )
            error = body.get("error") if isinstance(body, dict) else None
            ensure(isinstance(error, dict), f"HTTP {status}, not an error: {one_line(json.dumps(body))}")
            ensure(error.get("code") == types.UNSUPPORTED_PROTOCOL_VERSION, f"HTTP {status}, error {one_line(json.dumps(error))}")
            supported = (error.get("data") or {}).get("supported")
            ensure(isinstance(supported, list) and VERSION in supported, f"error.data is {one_line(json.dumps(error.get('data')))}")

        await self.check("header-mismatch", header_mismatch)
        await self.check("unsupported-version", unsupported_version)

    async def wire_stateless(self) -> None:
        ensure(self.posts, "no POST was sent")
        methods = [b.get("method") for _, b in self.posts if isinstance(b, dict)]
        ensure("initialize" not in methods, "the client sent initialize")
        ensure("server/discover" in methods, "the client never sent server/discover")
        with_session = [m for (h, _), m in zip(self.posts, methods) if "mcp-session-id" in h]
        ensure(not with_session, f"requests carried Mcp-Session-Id: {with_session}")
        for headers, body in self.posts:
            if not isinstance(body, dict) or "id" not in body:
                continue  # the stateless wire has no client notifications; none should be here anyway
            method = body.get("method")
            ensure(headers.get("mcp-protocol-version") == VERSION, f"{method}: MCP-Protocol-Version {headers.get('mcp-protocol-version')!r}")
            ensure(headers.get("mcp-method") == method, f"{method}: Mcp-Method {headers.get('mcp-method')!r}")
            meta = (body.get("params") or {}).get("_meta") or {}
            ensure(meta.get(META_VERSION) == VERSION, f"{method}: _meta protocolVersion {meta.get(META_VERSION)!r}")
        ensure(not self.other_requests, f"non-POST requests were sent: {[m for m, _ in self.other_requests]}")


def split_list(values: list[str]) -> list[str]:
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


async def amain(args: argparse.Namespace) -> int:
    runner = Runner(
        args.url,
        split_list(args.expect_listed),
        split_list(args.expect_hidden),
        split_list(args.expect_refused),
        args.skip,
        args.timeout,
        args.verbose,
    )
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
    p = argparse.ArgumentParser(description="Warden e2e stateless (2026-07-28) client (official MCP Python SDK)")
    p.add_argument("url")
    p.add_argument("--expect-listed", action="append", default=[], metavar="NAMES",
                   help="comma-separated tool names that must appear in tools/list")
    p.add_argument("--expect-hidden", action="append", default=[], metavar="NAMES",
                   help="comma-separated tool names that must NOT appear in tools/list")
    p.add_argument("--expect-refused", action="append", default=[], metavar="NAMES",
                   help="comma-separated tool names whose call the proxy must refuse (warden decision deny)")
    p.add_argument("--skip", action="append", default=[], metavar="CHECK",
                   help="report this check (full name) as skipped instead of running it")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds allowed per request (default 20)")
    p.add_argument("--verbose", "-v", action="store_true")
    args = p.parse_args()
    if args.timeout <= 0:
        p.error("bad --timeout")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr)
    sys.exit(anyio.run(amain, args))


if __name__ == "__main__":
    main()
