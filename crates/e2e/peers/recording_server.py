#!/usr/bin/env python3
"""A stdio MCP server on the official Python SDK (`mcp` 2.3.0) that records
what it executes and the raw bytes it is sent, for the framing tests
(`tests/framing.rs`).

Usage:
  RECORD_FILE=calls.jsonl RAW_FILE=stdin.raw python recording_server.py

Tools:
- `echo` (readOnlyHint: true): returns its arguments as JSON text
  (`json.dumps(arguments, ensure_ascii=False)`), so the caller can compare.
- `wipe` (readOnlyHint: false, destructiveHint: true): returns `wiped`.

Every tool call the server executes is appended to RECORD_FILE as one JSON
line, `{"tool": NAME, "arguments": {...}}`, before it answers. The arguments
are the ones the SDK parsed from the wire (the low-level `Server`, so no
schema reshapes them).

RAW_FILE receives every byte the server reads on stdin, while the SDK keeps
its own line reader: before the SDK starts, the real stdin is duplicated to
a private descriptor, a pipe's read end is put on fd 0, and a thread copies
private fd -> RAW_FILE + pipe. The SDK's `stdio_server()` then claims fd 0
as usual and reads it through its own `TextIOWrapper` (universal newlines:
LF, CR and CRLF all end a line).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

_record_lock = threading.Lock()


def tee_stdin(raw_path: str | None) -> None:
    """Put a pipe on fd 0 that carries what stdin carries, copied to raw_path."""
    wire = os.dup(0)
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    os.close(read_end)
    raw = open(raw_path, "ab", buffering=0) if raw_path else None

    def pump() -> None:
        try:
            while True:
                chunk = os.read(wire, 65536)
                if not chunk:
                    break
                if raw is not None:
                    raw.write(chunk)
                view = memoryview(chunk)
                while view:
                    written = os.write(write_end, view)
                    view = view[written:]
        except OSError:
            pass
        finally:
            os.close(write_end)

    threading.Thread(target=pump, name="stdin-tee", daemon=True).start()


def record(tool: str, arguments: dict[str, Any]) -> None:
    path = os.environ.get("RECORD_FILE")
    if not path:
        return
    line = json.dumps({"tool": tool, "arguments": arguments}, ensure_ascii=False)
    with _record_lock, open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")
        out.flush()


TOOLS = [
    types.Tool(
        name="echo",
        description="Return the arguments as JSON text (read-only).",
        input_schema={"type": "object"},
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="wipe",
        description="Destroy everything (NOT read-only).",
        input_schema={"type": "object"},
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True),
    ),
]


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    arguments = dict(params.arguments or {})
    if params.name not in ("echo", "wipe"):
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"unknown tool {params.name}")],
            is_error=True,
        )
    record(params.name, arguments)
    text = json.dumps(arguments, ensure_ascii=False) if params.name == "echo" else "wiped"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


server = Server(
    "warden-e2e-recording-py",
    version="1.0.0",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
)


async def serve() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    tee_stdin(os.environ.get("RAW_FILE"))
    anyio.run(serve)


if __name__ == "__main__":
    main()
