#!/usr/bin/env python3
"""A small MCP server on the official Python SDK (`mcp` 2.3.0) that serves the
stateless revision 2026-07-28 over Streamable HTTP (and, from the same
endpoint, the handshake revisions: the SDK routes by `MCP-Protocol-Version`).

Usage:
  python stateless_server.py [PORT]     # PORT 0 (default) picks a free one

Binds 127.0.0.1 only. Prints exactly one line on stdout once it accepts
connections: `READY http://127.0.0.1:PORT/mcp`; its logs go to stderr.
SIGTERM/SIGINT stop it.

Tools:
- `lookup {query}` (readOnlyHint): returns `found <query>`.
- `confirm_lookup {query}` (readOnlyHint): asks the client for an answer with
  an elicitation. At 2026-07-28 there is no back-channel, so the SDK turns the
  question into a multi-round-trip `input_required` result (its `Resolve` /
  `Elicit` resolvers): the client answers in a retry carrying `inputResponses`
  and the sealed `requestState`. Returns `confirmed <query>: <answer>`.
- `transfer_funds {to, amount}` (no readOnlyHint): returns `transferred ...`.
  Warden's default policy hides and refuses it.
- `add_tool {name}` (readOnlyHint): registers a new read-only tool `name`
  (returning `hello from <name>`) and publishes a tools list-changed event to
  every `subscriptions/listen` stream that asked for them.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Annotated

import anyio
import uvicorn
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp_types import ToolAnnotations
from pydantic import BaseModel

READ_ONLY = ToolAnnotations(read_only_hint=True)

mcp = MCPServer("warden-e2e-stateless", version="1.0.0", log_level="WARNING")


@mcp.tool(annotations=READ_ONLY, description="Look something up (read-only).")
def lookup(query: str) -> str:
    return f"found {query}"


class Confirmation(BaseModel):
    answer: str


def ask_confirmation(query: str) -> Elicit[Confirmation]:
    return Elicit(f"Confirm the lookup of {query!r}: what answer?", Confirmation)


@mcp.tool(
    annotations=READ_ONLY,
    description="Look something up after asking the user to confirm (elicitation, input_required at 2026-07-28).",
)
def confirm_lookup(query: str, confirmation: Annotated[Confirmation, Resolve(ask_confirmation)]) -> str:
    return f"confirmed {query}: {confirmation.answer}"


@mcp.tool(
    annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True),
    description="Move money (NOT read-only).",
)
def transfer_funds(to: str, amount: int) -> str:
    return f"transferred {amount} to {to}"


@mcp.tool(
    annotations=READ_ONLY,
    description="Register a new read-only tool NAME and announce tools list_changed on listen streams.",
)
async def add_tool(name: str, ctx: Context) -> str:
    def added() -> str:
        return f"hello from {name}"

    mcp.add_tool(added, name=name, description=f"Added at runtime: {name}.", annotations=READ_ONLY)
    await ctx.notify_tools_changed()
    return f"added {name}"


async def serve(port: int) -> None:
    app = mcp.streamable_http_app(host="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await anyio.sleep(0.02)
        print(f"READY http://127.0.0.1:{bound}/mcp", flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    anyio.run(serve, port)


if __name__ == "__main__":
    main()
