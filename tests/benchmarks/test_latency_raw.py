"""The latency benchmark's raw consumer: what it notes per poll."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaConsumer

from benchmarks.latency_raw import RawReader
from benchmarks.throughput import EXAMPLE_CONFIG
from hotpath.config import load_config


@dataclass
class _Record:
    timestamp: int


class _Polls:
    """What ``getmany`` returns, poll by poll, and the arguments it was called with."""

    def __init__(self, polls: list[dict[str, list[_Record]]]) -> None:
        self.polls, self.calls = polls, list[dict[str, int]]()

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, Any]:
        self.calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        if not self.polls:
            await asyncio.Event().wait()  # nothing more: block until cancelled
        return self.polls.pop(0)


async def test_raw_reader_notes_one_clock_reading_and_the_timestamps_per_poll() -> None:
    polls = _Polls([{"p0": [_Record(1000), _Record(1001)], "p1": [_Record(999)]}, {},
                    {"p2": [_Record(1500)]}])
    clock = iter([1.01, 1.52])
    cfg = load_config(EXAMPLE_CONFIG)
    reader = RawReader(cast(AIOKafkaConsumer, polls), cfg, lambda: next(clock))
    task = asyncio.create_task(reader.read())
    while reader.records < 4:
        await asyncio.sleep(0)
    task.cancel()
    assert reader.batches == [(1.01, [[1000, 1001], [999]]), (1.52, [[1500]])]
    # The runtime's own poll: the same timeout and batch size as hotpath's consumer.
    assert polls.calls[0] == {"timeout_ms": cfg.kafka.poll_timeout_ms,
                              "max_records": cfg.kafka.max_batch}
