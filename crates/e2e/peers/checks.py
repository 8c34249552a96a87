"""What the Python client peers (`py-client.py`, `stateless_client.py`,
`framing_client.py`) share: the tally that runs their checks and prints
their output, and a wrapper that taps an SDK transport stream.

A script run as `python SCRIPT.py` has its own folder first on `sys.path`,
so each one imports this module as `checks`.

Output: one line a check, `ok <check>` (or `PASS <check>`: `Checks.PASSED`),
`FAIL <check>: <detail>`, or `skip <check>: <reason>` (not counted); the
last line is `N passed, M failed` (`Checks.summary`).
"""

from __future__ import annotations

import re
import sys
import traceback
from typing import Any, Awaitable, Callable

import anyio
from mcp.shared.exceptions import MCPError


class Skip(Exception):
    """The check does not apply: `skip <check>: <reason>`, not counted."""


class CheckFailed(Exception):
    """A check's own failure: its message is the whole detail."""


def ensure(cond: Any, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def one_line(s: Any) -> str:
    return re.sub(r"\s+", " ", str(s))[:400]


def leaf_exceptions(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in leaf_exceptions(sub)]
    return [e]


def err_text(e: BaseException) -> str:
    parts = []
    for leaf in leaf_exceptions(e):
        if isinstance(leaf, MCPError):
            parts.append(f"MCPError {leaf.code}: {leaf}")
        else:
            parts.append(f"{type(leaf).__name__}: {leaf}")
    return "; ".join(parts)


class Checks:
    """Runs checks and counts them; a client's runner derives from it."""

    # The word that opens a passed check's line.
    PASSED = "ok"
    # Seconds a check may take beyond the per-request timeout `T`.
    GRACE = 5.0
    # A check out of time says `timed out after N s` (else it fails like
    # any other exception, through `describe`).
    SAYS_TIMEOUT = True

    def __init__(self, timeout: float, verbose: bool, skipped: list[str] | None = None) -> None:
        self.T = timeout
        self.verbose = verbose
        # Checks (full names) reported as skipped instead of run.
        self.skipped = set(skipped or [])
        self.passed = 0
        self.failed = 0

    def line(self, s: str) -> None:
        print(s, flush=True)

    def debug(self, *a: Any) -> None:
        if self.verbose:
            print("[debug]", *a, file=sys.stderr, flush=True)

    def describe(self, e: Exception) -> str:
        """A failed check's detail, on one line."""
        return one_line(str(e) if isinstance(e, CheckFailed) else err_text(e))

    async def check(self, name: str, fn: Callable[[], Awaitable[None]]) -> bool | None:
        if name in self.skipped:
            self.line(f"skip {name}: --skip")
            return None
        limit = self.T + self.GRACE
        try:
            with anyio.fail_after(limit):
                await fn()
        except Skip as e:
            self.line(f"skip {name}: {e}")
            return None
        except Exception as e:  # noqa: BLE001 - every failure is reported
            self.failed += 1
            if self.SAYS_TIMEOUT and isinstance(e, TimeoutError):
                self.line(f"FAIL {name}: timed out after {limit:g} s")
                return False
            self.line(f"FAIL {name}: {self.describe(e)}")
            if self.verbose:
                traceback.print_exc()
            return False
        self.passed += 1
        self.line(f"{self.PASSED} {name}")
        return True

    def summary(self) -> int:
        """Print the last line, `N passed, M failed`; the exit code."""
        self.line(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1


class StreamTap:
    """An SDK transport stream (its read or its write side) that hands every
    item to `received` or `sending` on its way; anything else is the wrapped
    stream's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def received(self, item: Any) -> None:
        pass

    def sending(self, item: Any) -> None:
        pass

    # ReadStream
    async def receive(self) -> Any:
        item = await self._inner.receive()
        self.received(item)
        return item

    def __aiter__(self) -> "StreamTap":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    # WriteStream
    async def send(self, item: Any) -> None:
        self.sending(item)
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> "StreamTap":
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:  # e.g. last_context
        return getattr(self._inner, name)
