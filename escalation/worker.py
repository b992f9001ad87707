"""The shape shared by the page sender and the action runner: repeat a pass until stopped.

A pass that fails because the store (Redis) is unavailable is retried after a backoff that
grows with consecutive failures; any other exception is a bug and ends the task loudly.

>>> import asyncio
>>> from escalation.backoff import Backoff
>>> passes = []
>>> async def once() -> int:
...     passes.append(1)
...     if len(passes) == 1:
...         raise ConnectionError("redis down")
...     if len(passes) == 3:
...         stop.set()
...     return 0
>>> async def no_sleep(s: float) -> None:
...     await asyncio.sleep(0)
>>> async def main() -> None:
...     global stop
...     stop = asyncio.Event()
...     await run_until(stop, lambda: repeat(once, backoff=Backoff(), sleep=no_sleep,
...         errors=(ConnectionError,), on_error=lambda e, n: print("failure", n, e)))
>>> asyncio.run(main())
failure 1 redis down
>>> len(passes) >= 3   # stop is seen at the pass's next yield, not instantly
True
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from escalation.backoff import Backoff
from escalation.retry import Sleep


async def run_until(stop: asyncio.Event, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``loop()`` until it ends or ``stop`` is set, then cancel it.

    Cancelling mid-item is safe for the queues here: an unacked entry is redelivered.
    """
    work = asyncio.ensure_future(loop())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, stopped):
            task.cancel()
        await asyncio.gather(work, stopped, return_exceptions=True)
    if not work.cancelled() and (error := work.exception()) is not None:
        raise error


async def repeat(
    once: Callable[[], Awaitable[int]],
    *,
    backoff: Backoff,
    sleep: Sleep,
    errors: tuple[type[BaseException], ...],
    on_error: Callable[[BaseException, int], None],
) -> None:
    """Call ``once()`` forever; on ``errors`` call ``on_error(e, n)`` and back off."""
    failures = 0
    while True:
        try:
            await once()
            failures = 0
            # A pass that found nothing may not have yielded; let stop() and others run.
            await asyncio.sleep(0)
        except errors as e:
            failures += 1
            on_error(e, failures)
            await sleep(backoff.delay(failures, None))
