"""Polling for a condition that a running daemon, charger or broker will reach."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    check: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0, *, what: str = ""
) -> Any:
    """Call `check` (plain or async) every 50 ms until it returns something true; return
    that. Fails the test with `what` (or "condition not reached") after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, what or "condition not reached"
        await asyncio.sleep(0.05)
