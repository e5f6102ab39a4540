"""Waiting in async tests for what the server does in its own time (a scheduling pass, a pod's
start, a restart), instead of sleeping for a guess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    """``check()``'s first true answer, asked every 0.3 s for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.3)


def wait_until(check: Callable[[], Any], timeout: float = 60) -> Any:
    """The same from a thread that may block (tests that drive the Python client, whose
    calls block): ``check()``'s first true answer, asked every 0.05 s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value
