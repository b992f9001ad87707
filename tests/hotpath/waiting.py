"""Polling helpers for integration tests (bounded: every wait has a deadline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(cond: Callable[[], bool], timeout: float = 60.0,
                     what: str | Callable[[], str] = "") -> None:
    """Poll ``cond``; on timeout fail with ``what`` (a callable is asked at that moment)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"not reached within {timeout}s: {said or cond}")
        await asyncio.sleep(0.1)
