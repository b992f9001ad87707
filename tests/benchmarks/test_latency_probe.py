"""The latency benchmark's live-maximum probe: the decision hook, the wait, the producer."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest

from benchmarks.latency_probe import PRODUCER_NICE, Observer, OpenLoop, until
from benchmarks.throughput import BenchmarkError
from hotpath.processor import BatchResult


def test_observer_keeps_one_stamp_per_batch_with_points() -> None:
    clock = iter([5.0, 6.0])
    obs = Observer(lambda: next(clock))
    obs.on_batch(BatchResult(points=2, event_ts=[np.array([4.0, 4.5])]))
    obs.on_batch(BatchResult())  # an empty poll: nothing decided
    obs.on_batch(BatchResult(points=1, event_ts=[np.array([5.5])]))
    assert obs.points == 3
    assert [(t, [a.tolist() for a in arrays]) for t, arrays in obs.stamps] == [
        (5.0, [[4.0, 4.5]]), (6.0, [[5.5]])]


async def _serving() -> None:
    await asyncio.Event().wait()


async def test_until_returns_once_the_count_is_reached() -> None:
    serving = asyncio.create_task(_serving())
    counts = iter([0, 3, 5])
    try:
        assert await until(serving, lambda: next(counts), 5, 5.0)
    finally:
        serving.cancel()


async def test_until_gives_up_after_its_limit() -> None:
    serving = asyncio.create_task(_serving())
    try:
        assert not await until(serving, lambda: 0, 1, 0.0)
    finally:
        serving.cancel()


async def test_until_fails_when_the_processor_ends_first() -> None:
    async def ends() -> None:
        return None

    serving = asyncio.create_task(ends())
    with pytest.raises(BenchmarkError, match="returned before the run finished"):
        await until(serving, lambda: 0, 1, 5.0)


def test_open_loop_runs_the_producer_with_the_case_schedule_and_niceness() -> None:
    argv = OpenLoop("k:9092", "batch100", 20, 7).argv("topic-a", 2500.0, 1.0, 3.0)
    assert argv == [sys.executable, "-m", "benchmarks.open_loop", "--bootstrap", "k:9092",
                    "--topic", "topic-a", "--case", "batch100", "--services", "20",
                    "--rate", "2500.0", "--warmup", "1.0", "--duration", "3.0",
                    "--seed", "7", "--nice", str(PRODUCER_NICE)]
