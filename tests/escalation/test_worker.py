"""run_until / repeat: store errors back off, bugs end the task loudly, stop cancels."""

from __future__ import annotations

import asyncio

import pytest

from escalation.backoff import Backoff
from escalation.worker import repeat, run_until


async def test_store_errors_back_off_growing_then_reset_after_a_good_pass() -> None:
    script: list[Exception | None] = [ConnectionError("a"), ConnectionError("b"), None,
                                      ConnectionError("c")]
    slept: list[float] = []
    errors: list[tuple[str, int]] = []
    stop = asyncio.Event()

    async def once() -> int:
        if not script:
            stop.set()
            await asyncio.sleep(3600)  # cancelled by run_until
        step = script.pop(0)
        if step is not None:
            raise step
        return 1

    async def sleep(s: float) -> None:
        slept.append(s)

    await run_until(stop, lambda: repeat(
        once, backoff=Backoff(jitter=lambda: 1.0), sleep=sleep, errors=(ConnectionError,),
        on_error=lambda e, n: errors.append((str(e), n)),
    ))
    assert errors == [("a", 1), ("b", 2), ("c", 1)]
    assert slept == [0.2, 0.4, 0.2]


async def test_an_unexpected_error_ends_the_task_with_that_error() -> None:
    async def once() -> int:
        raise KeyError("bug")

    async def sleep(s: float) -> None:
        return None

    with pytest.raises(KeyError, match="bug"):
        await run_until(asyncio.Event(), lambda: repeat(
            once, backoff=Backoff(), sleep=sleep, errors=(ConnectionError,),
            on_error=lambda e, n: None,
        ))
