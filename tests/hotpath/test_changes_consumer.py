"""The changes consumer against real Apache Kafka: horizon on start, live changes, bad ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from escalation.changes import ChangeEvent, RecentChanges
from hotpath.changes_consumer import OUTCOMES, ChangesConsumer
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka

HORIZON_S = 3600.0


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def change(kind: str, service: str, ts: float, version: str = "") -> bytes:
    return orjson.dumps({"kind": kind, "service": service, "ts": ts, "actor": "ci",
                         "version": version})


async def send(p: AIOKafkaProducer, topic: str, key: str, value: bytes, ts: float) -> None:
    """Keyed by service like the producers; the record's Kafka timestamp is the event's,
    since that is what the consumer seeks by."""
    await p.send_and_wait(topic, value, key=key.encode(), timestamp_ms=int(ts * 1000))


async def started(consumer: ChangesConsumer) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(consumer.run(stop))


async def test_loads_the_horizon_then_follows_and_skips_bad_messages(
        kafka_broker: KafkaBroker, unique_topic: str, producer: AIOKafkaProducer) -> None:
    # Kafka's retention deletes records older than a week: the injected clock stands at
    # the real time of this run (read once), and every timestamp is relative to it.
    now = float(int(time.time()))
    await kafka_broker.create_topic(unique_topic, partitions=4)
    await send(producer, unique_topic, "checkout", change("deploy", "checkout", now - 7200,
                                                          "v1.3"), now - 7200)
    await send(producer, unique_topic, "checkout", change("deploy", "checkout", now - 600,
                                                          "v1.4"), now - 600)
    await send(producer, unique_topic, "search", change("config", "search", now - 300),
               now - 300)
    await send(producer, unique_topic, "checkout", b"{not json", now - 100)
    await send(producer, unique_topic, "payments",
               b'{"kind": "deploy", "service": "payments"}', now - 50)

    recent = RecentChanges(horizon_s=HORIZON_S)
    seen: list[str] = []
    consumer = ChangesConsumer(kafka_broker.bootstrap, unique_topic, recent, lambda: now,
                               poll_timeout_ms=100, on_outcome=seen.append)
    stop, task = await started(consumer)
    try:
        await asyncio.wait_for(consumer.caught_up.wait(), 30)
        # The deploy two hours back was never read: the consumer started at the horizon.
        assert (consumer.stats.loaded, consumer.stats.ignored) == (2, 0)
        assert dict(consumer.stats.rejected) == {"not json": 1, "missing field": 1}
        assert consumer.stats.bad == 2
        assert sorted(seen) == ["loaded", "loaded", "missing field", "not json"]
        assert set(seen) <= OUTCOMES
        assert recent.for_service("checkout", now, HORIZON_S) == (
            ChangeEvent("deploy", "checkout", now - 600, "ci", "v1.4"),)
        assert recent.for_service("search", now, HORIZON_S) == (
            ChangeEvent("config", "search", now - 300, "ci"),)

        # Live: a bad message does not stop the stream; the good one after it arrives.
        await send(producer, unique_topic, "checkout",
                   b'{"kind": "deploy", "service": "checkout", "ts": "soon"}', now)
        await send(producer, unique_topic, "checkout",
                   change("deploy", "checkout", now - 1, "v1.5"), now - 1)
        await wait_until(lambda: consumer.stats.loaded == 3, timeout=30,
                         what=lambda: f"stats {consumer.stats}")
        assert [e.version for e in recent.for_service("checkout", now, HORIZON_S)] == [
            "v1.5", "v1.4"]
        assert consumer.stats.rejected["wrong type"] == 1
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_starts_before_the_topic_exists(
        kafka_bootstrap: str, unique_topic: str, producer: AIOKafkaProducer) -> None:
    now = float(int(time.time()))
    recent = RecentChanges(horizon_s=HORIZON_S)
    consumer = ChangesConsumer(kafka_bootstrap, unique_topic, recent, lambda: now,
                               poll_timeout_ms=100, topic_retry_s=0.2)
    stop, task = await started(consumer)
    try:
        # The consumer's first look lets the broker auto-create the topic (it is allowed
        # to here); it retries until the new topic has leaders, then follows it.
        await asyncio.wait_for(consumer.caught_up.wait(), 30)
        assert len(recent) == 0
        await send(producer, unique_topic, "checkout",
                   change("deploy", "checkout", now - 60, "v2"), now - 60)
        await wait_until(lambda: len(recent) == 1, timeout=30,
                         what=lambda: f"stats {consumer.stats}")
        assert recent.for_service("checkout", now, HORIZON_S)[0].version == "v2"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_stop_ends_a_retry_wait_at_once(kafka_bootstrap: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    # "." is not a legal topic name: the broker never creates it, so the consumer waits
    # its full retry interval unless stop wakes it.
    consumer = ChangesConsumer(kafka_bootstrap, ".", RecentChanges(), lambda: 0.0,
                               topic_retry_s=300.0)
    stop, task = await started(consumer)
    await wait_until(lambda: any("changes topic . does not exist yet" in r.getMessage()
                                 for r in caplog.records), timeout=30)
    stop.set()
    await asyncio.wait_for(task, 5)  # woken from its 300 s wait, not after it
    assert not consumer.caught_up.is_set()
