"""The audit mirror against real Apache Kafka: exact bytes, order, backfill, restart, outage."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from escalation.audit import AuditLog, read_head, verify_lines
from escalation.audit_signing import Signer
from escalation.backoff import Backoff
from hotpath.audit_mirror import AuditMirror, KafkaTail
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka

# Short timeouts so an outage is noticed in about a second, not the client's 40 s default.
TIMEOUT_MS = 1500
FAST = Backoff(base_s=0.1, max_s=0.5, jitter=lambda: 1.0)


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                         request_timeout_ms=TIMEOUT_MS, retry_backoff_ms=100)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def clock() -> float:
    return float(next(_ticks))


_ticks = itertools.count(1_764_132_000)


def mirror_for(producer: AIOKafkaProducer, path: Path, bootstrap: str, topic: str,
               **options: object) -> AuditMirror:
    return AuditMirror(producer, path, KafkaTail(bootstrap, timeout_s=3.0), topic=topic,
                       backoff=FAST, **options)  # type: ignore[arg-type]


async def consume(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every message of partition 0 as (key, value)."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        out: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(10):
            while await consumer.position(tp) < end:
                got = await consumer.getmany(tp, timeout_ms=500)
                out += [(m.key, m.value) for m in got.get(tp, [])]
        return out
    finally:
        await consumer.stop()


def append(log: AuditLog, n: int, tag: str) -> None:
    for i in range(n):
        log.append("decision", {"finding": f"{tag}-{i}", "decision": "page"})


async def assert_topic_is_the_file(bootstrap: str, topic: str, path: Path) -> None:
    got = await consume(bootstrap, topic)
    lines = path.read_bytes().splitlines(keepends=True)
    assert [k for k, _ in got] == [str(i).encode() for i in range(1, len(lines) + 1)]
    assert [v for _, v in got] == lines
    report = verify_lines([v for _, v in got], read_head(path))
    assert report.ok, report.reason


async def test_records_appear_in_order_with_their_exact_bytes(
        producer: AIOKafkaProducer, kafka_bootstrap: str, unique_topic: str,
        tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    mirror = mirror_for(producer, path, kafka_bootstrap, unique_topic)
    signer = Signer.from_seed_b64(base64.b64encode(bytes(range(32))).decode())
    log = AuditLog(path, clock, signer=signer, checkpoint_every=7, on_flush=mirror.on_flush)
    mirror.start()
    try:
        for batch in range(5):
            append(log, 4, f"b{batch}")
            log.flush()
        log.close()  # its final checkpoint is mirrored too
        await wait_until(lambda: mirror.status().mirrored_seq == log.seq, 15,
                         lambda: f"{mirror.status()}")
    finally:
        await mirror.stop()
    assert log.seq == 23  # 20 records + checkpoints after 7, 14 and at close
    await assert_topic_is_the_file(kafka_bootstrap, unique_topic, path)
    assert mirror.status().lag == 0 and mirror.status().failures == 0


async def test_backfills_what_exists_and_resumes_after_a_restart(
        producer: AIOKafkaProducer, kafka_bootstrap: str, unique_topic: str,
        tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, clock) as log:  # written while no mirror ran
        append(log, 30, "before")
    first = mirror_for(producer, path, kafka_bootstrap, unique_topic)
    log = AuditLog(path, clock, on_flush=first.on_flush)
    first.start()
    try:
        append(log, 5, "live")
        log.flush()
        await wait_until(lambda: first.status().mirrored_seq == 35, 15,
                         lambda: f"{first.status()}")
    finally:
        await first.stop()
    # "Restart": records written while no mirror ran, then a new mirror with an empty queue
    # must start after the topic's last seq, neither repeating nor skipping.
    append(log, 6, "down")
    log.flush()
    second = mirror_for(producer, path, kafka_bootstrap, unique_topic)
    second.start()
    try:
        await wait_until(lambda: second.status().mirrored_seq == 41, 15,
                         lambda: f"{second.status()}")
    finally:
        await second.stop()
        log.close()
    await assert_topic_is_the_file(kafka_bootstrap, unique_topic, path)


async def test_a_topic_holding_another_log_stops_the_mirror(
        producer: AIOKafkaProducer, kafka_bootstrap: str, unique_topic: str,
        tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    with AuditLog(other, clock) as log:
        append(log, 3, "other")
    mirror = mirror_for(producer, other, kafka_bootstrap, unique_topic)
    mirror.start()
    await wait_until(lambda: mirror.status().mirrored_seq == 3, 15)
    await mirror.stop()
    mine = tmp_path / "audit.jsonl"
    with AuditLog(mine, clock) as log:
        append(log, 5, "mine")
    wrong = mirror_for(producer, mine, kafka_bootstrap, unique_topic)
    wrong.start()
    await wait_until(lambda: wrong.status().stopped is not None, 15)
    await wrong.stop()
    assert wrong.status().stopped == (f"{unique_topic}[0] ends at seq 3, which {mine} holds "
                                      "other bytes for: the topic mirrors another log")
    assert len(await consume(kafka_bootstrap, unique_topic)) == 3  # nothing spliced on


async def test_broker_outage_leaves_the_hot_loop_alone_and_loses_nothing(
        producer: AIOKafkaProducer, kafka_bootstrap: str, kafka_broker: KafkaBroker,
        unique_topic: str, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    mirror = mirror_for(producer, path, kafka_bootstrap, unique_topic, max_queued=20)
    log = AuditLog(path, clock, on_flush=mirror.on_flush)
    mirror.start()
    try:
        append(log, 10, "up")
        log.flush()
        await wait_until(lambda: mirror.status().mirrored_seq == 10, 15)
        kafka_broker.stop()
        try:
            # The hot loop keeps deciding: one flush per "batch", none waits on Kafka.
            for batch in range(60):
                append(log, 2, f"down{batch}")
                log.flush()
                await asyncio.sleep(0)  # let the mirror try, as the real loop would
            await wait_until(lambda: mirror.status().failures >= 1, 15,
                             lambda: f"{mirror.status()}")
            append(log, 5, "still-down")
            log.flush()
            status = mirror.status()
            assert status.durable_seq == 135 and status.mirrored_seq < 135
            assert status.queued == 20  # full, bounded: the rest waits in the file
        finally:
            await asyncio.to_thread(kafka_broker.start)
        await wait_until(lambda: mirror.status().mirrored_seq == 135, 30,
                         lambda: f"{mirror.status()}")
        assert mirror.status().failures == 0 and mirror.status().last_error is None
    finally:
        await mirror.stop()
        log.close()
    await assert_topic_is_the_file(kafka_bootstrap, unique_topic, path)
