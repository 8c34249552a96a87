#!/usr/bin/env python3
"""A task-aware MCP client on the official Python SDK's 1.x line (`mcp` 1.30.0).

Usage:
  python task_client.py URL TOOL ARGS_JSON [--then poll|cancel|cancel-when-told]
                        [--ttl MS] [--timeout SECONDS]

Connects over Streamable HTTP (`streamable_http_client` + `ClientSession`),
calls TOOL with ARGS_JSON as a task (`session.experimental.call_tool_as_task`,
MCP 2025-11-25), then:

- `poll` (default): `poll_task` until the task ends, then `get_task_result`
  (as a `CallToolResult`);
- `cancel`: `cancel_task` at once, then `get_task` and `get_task_result`;
- `cancel-when-told`: the same, once a line `cancel` arrives on stdin (so the
  test can first see the held call in the approval queue).

Every observation is one JSON line on stdout, `{"seen": KIND, ...}`:
`initialized` (the server's `tasks` capability), `created` (the
`CreateTaskResult`: `task` and `meta`), `status` (each task state `poll_task`
or `get_task` returned that differs from the last one printed), `cancelled`
(the `CancelTaskResult`), `result` (the task's `CallToolResult`), `listed`
(`list_tasks`), `error` (any exception: `type` and `detail`; the SDK's
validation errors land here), and last `done`. Every model is printed as the
SDK parsed it (`model_dump(mode="json", by_alias=True, exclude_none=True)`),
so a field the SDK's models dropped or rejected shows. Exit code 0 unless an
`error` was printed (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from typing import Any

import anyio
import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

# The 1.x SDK marks its task calls deprecated (tasks are expected to move
# to an MCP extension); they are exactly what this client exercises.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def say(kind: str, **fields: Any) -> None:
    print(json.dumps({"seen": kind, **fields}, sort_keys=True), flush=True)


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def task_of(model: Any) -> dict[str, Any]:
    """The task fields of a GetTaskResult / CancelTaskResult (the result's `_meta` aside)."""
    shown = dump(model)
    shown.pop("_meta", None)
    return shown


async def read_line() -> str:
    return (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()


async def scenario(args: argparse.Namespace) -> None:
    async with streamable_http_client(args.url) as (read, write, _):
        async with ClientSession(read, write) as session:
            hello = await session.initialize()
            tasks = hello.capabilities.tasks
            say("initialized", protocolVersion=hello.protocolVersion, tasks=dump(tasks) if tasks else None)
            features = session.experimental
            created = await features.call_tool_as_task(args.tool, json.loads(args.arguments), ttl=args.ttl)
            say("created", task=dump(created.task), meta=created.meta)
            task_id = created.task.taskId
            last: tuple[str, str | None] | None = None
            if args.then == "poll":
                async for status in features.poll_task(task_id):
                    if (status.status, status.statusMessage) != last:
                        last = (status.status, status.statusMessage)
                        say("status", task=task_of(status))
            else:
                if args.then == "cancel-when-told":
                    told = await read_line()
                    if told != "cancel":
                        raise RuntimeError(f"expected 'cancel' on stdin, read {told!r}")
                cancelled = await features.cancel_task(task_id)
                say("cancelled", task=task_of(cancelled))
                say("status", task=task_of(await features.get_task(task_id)))
            result = await features.get_task_result(task_id, types.CallToolResult)
            say("result", result=dump(result))
            listed = await features.list_tasks()
            say("listed", tasks=[task_of(t) for t in listed.tasks])


async def main_async(args: argparse.Namespace) -> int:
    failed = False
    try:
        with anyio.fail_after(args.timeout):
            await scenario(args)
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
    parser.add_argument("--then", choices=["poll", "cancel", "cancel-when-told"], default="poll")
    parser.add_argument("--ttl", type=int, default=600_000, help="the task's ttl in ms (default 600000)")
    parser.add_argument("--timeout", type=float, default=60.0, help="for the whole run (default 60 s)")
    return anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
