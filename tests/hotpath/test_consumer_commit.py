"""Background commits on real Kafka and Redis: one at a time, waited for on revoke and
shutdown, checkpoint before offsets, offsets never behind what was committed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from hotpath.checkpoint import CheckpointStore
from hotpath.config import load_config
from hotpath.consumer import PartitionStates
from hotpath.metrics import Metrics
from hotpath.runtime import partition_factory
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.telemetry import produce

pytestmark = pytest.mark.kafka
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"


async def _states(kafka_broker: KafkaBroker, redis_client: aioredis.Redis, topic: str,
                  ) -> tuple[AIOKafkaConsumer, PartitionStates, CheckpointStore]:
    await kafka_broker.create_topic(topic, partitions=2)
    await produce(kafka_broker.bootstrap, topic,
                  [(b"k", b'{"x":1}') for _ in range(20)])
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=f"g-{topic}",
                                enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    store = CheckpointStore(redis_client, "t", f"g-{topic}")
    states = PartitionStates(consumer, partition_factory(load_config(EXAMPLE)), store, Metrics())
    for p in (0, 1):
        states.states[(topic, p)] = states.factory()
    return consumer, states, store


async def _committed(consumer: AIOKafkaConsumer, topic: str, p: int) -> int | None:
    off: int | None = await consumer.committed(TopicPartition(topic, p))
    return off


async def test_one_commit_in_flight_and_settle_waits_for_it(
        kafka_broker: KafkaBroker, redis_client: aioredis.Redis, unique_topic: str) -> None:
    consumer, states, store = await _states(kafka_broker, redis_client, unique_topic)
    try:
        states.processed[(unique_topic, 0)] = 7
        states.commit_in_background()
        first = states._persisting
        assert first is not None and not first.done()
        states.processed[(unique_topic, 0)] = 9
        states.commit_in_background()  # skipped: the first is still in flight
        assert states._persisting is first
        await states.settle()
        assert first.done() and states._persisting is None
        assert states.committed == {(unique_topic, 0): 7}
        assert await _committed(consumer, unique_topic, 0) == 7
        ck = await store.load(unique_topic, 0)
        assert ck is not None and ck.offset == 7
        states.commit_in_background()  # the next interval commits what was processed since
        await states.settle()
        assert await _committed(consumer, unique_topic, 0) == 9
        assert states.committed == {(unique_topic, 0): 9}
    finally:
        await consumer.stop()


async def test_revoke_waits_for_the_commit_in_flight_then_commits_and_forgets(
        kafka_broker: KafkaBroker, redis_client: aioredis.Redis, unique_topic: str) -> None:
    consumer, states, _ = await _states(kafka_broker, redis_client, unique_topic)
    try:
        states.processed.update({(unique_topic, 0): 4, (unique_topic, 1): 5})
        states.commit_in_background()
        in_flight = states._persisting
        states.processed[(unique_topic, 0)] = 6  # processed after the snapshot
        await states.on_partitions_revoked([TopicPartition(unique_topic, 0)])
        assert in_flight is not None and in_flight.done()
        assert await _committed(consumer, unique_topic, 0) == 6  # never left behind at 4
        assert await _committed(consumer, unique_topic, 1) == 5
        assert (unique_topic, 0) not in states.processed
        assert (unique_topic, 0) not in states.states
        assert states.committed == {(unique_topic, 1): 5}
    finally:
        await consumer.stop()


async def test_a_failed_background_commit_is_logged_and_the_next_one_runs(
        kafka_broker: KafkaBroker, redis_client: aioredis.Redis, unique_topic: str,
        caplog: pytest.LogCaptureFixture) -> None:
    consumer, states, _ = await _states(kafka_broker, redis_client, unique_topic)
    try:
        async def broken() -> None:
            raise RuntimeError("bug in persist")

        states._persisting = asyncio.ensure_future(broken())
        await asyncio.sleep(0)
        states.processed[(unique_topic, 1)] = 3
        states.commit_in_background()
        await states.settle()
        assert "background commit failed" in caplog.text
        assert "bug in persist" in caplog.text
        assert await _committed(consumer, unique_topic, 1) == 3
    finally:
        await consumer.stop()
