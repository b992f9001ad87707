"""The latency benchmark's ceiling: one level's schedule read by a plain aiokafka consumer.

Right after each hotpath level, the same schedule is produced again (``OpenLoop``) to a
second topic of the same shape and read by an ``AIOKafkaConsumer`` with the runtime's
settings (fetch size, ``getmany`` timeout and ``max_records``) that does nothing but note,
per ``getmany``, one clock reading and the records' Kafka timestamps (``RawReader``): the
latency any Kafka consumer in this process sees on this machine. The stamps become arrays
only after the level (``benchmarks.latency_stats.stamps_from_ms``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from benchmarks.latency_probe import Clock, OpenLoop, until
from benchmarks.latency_stats import Stamps, stamps_from_ms
from benchmarks.throughput import (
    CASES,
    MAX_PARTITION_FETCH_BYTES,
    PARTITIONS,
    STALL_S,
    BenchmarkError,
    race_serve,
)
from hotpath.config import Config


class RawReader:
    """The ceiling's consume loop: per ``getmany``, one clock reading and the records' Kafka
    timestamps (ms), with the runtime's poll timeout and batch size; nothing else is done
    per record, and the timestamps become arrays only after the level."""

    def __init__(self, consumer: AIOKafkaConsumer, cfg: Config, clock: Clock) -> None:
        self.consumer, self.clock = consumer, clock
        self.timeout_ms, self.max_records = cfg.kafka.poll_timeout_ms, cfg.kafka.max_batch
        self.batches: list[tuple[float, list[list[int]]]] = []
        self.records = 0

    async def read(self) -> None:
        """Until cancelled."""
        while True:
            got = await self.consumer.getmany(timeout_ms=self.timeout_ms,
                                              max_records=self.max_records)
            if got:
                now = self.clock()
                parts = [[r.timestamp for r in recs] for recs in got.values()]
                self.batches.append((now, parts))
                self.records += sum(map(len, parts))


async def _at_end(consumer: AIOKafkaConsumer) -> None:
    """Until the group has assigned every partition and each position is fixed at the end
    of the topic, so the level's first message is read and no earlier level's is."""
    while len(consumer.assignment()) < PARTITIONS:
        await asyncio.sleep(0.01)
    for tp in list(consumer.assignment()):
        await consumer.position(tp)


async def raw_level(producer: OpenLoop, topic: str, group: str, rate: float,
                    warmup_s: float, duration_s: float, settle_s: float, cfg: Config,
                    clock: Clock) -> tuple[dict[str, Any], Stamps, dict[str, Any]]:
    """One level's schedule read by a plain consumer: the producer's report, the stamps,
    and what the consumer did not receive within ``settle_s``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=producer.bootstrap, group_id=group,
        enable_auto_commit=False,
        # A new group per level starting at the end: this level's messages only.
        auto_offset_reset="latest",
        session_timeout_ms=cfg.kafka.session_timeout_ms,
        heartbeat_interval_ms=cfg.kafka.heartbeat_interval_ms,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES)
    await consumer.start()
    reader = RawReader(consumer, cfg, clock)
    reading = asyncio.create_task(reader.read())
    try:
        try:
            await race_serve(reading, asyncio.wait_for(_at_end(consumer), STALL_S))
        except TimeoutError:
            raise BenchmarkError(f"raw consumer of {topic}: {PARTITIONS} partitions not "
                                 f"assigned within {STALL_S:g} s") from None
        report = await race_serve(reading, producer.run(topic, rate, warmup_s, duration_s))
        await until(reading, lambda: reader.records, report["messages"], settle_s)
    finally:
        reading.cancel()
        await asyncio.wait({reading})
        await consumer.stop()
    missing = max(0, report["messages"] - reader.records) * CASES[producer.case]
    return report, stamps_from_ms(reader.batches), {
        "unreceived_after_settle": missing, "batches": len(reader.batches)}
