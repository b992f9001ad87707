"""Every broker we start passes the same round trip hotpath's source relies on.

Produce keyed messages, consume them in a consumer group with ``getmany`` and a manual
``commit()``, check the committed offsets, and check a new member resumes after them.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from hotpath.services import KafkaBroker, TansuBroker
from hotpath.services.tansu import FAST_GROUP_TIMING

_MESSAGES = 60
_KEYS = 6
_CONSUME_DEADLINE_S = 60.0


@pytest.fixture(params=["kafka", "tansu"])
def broker(request: pytest.FixtureRequest) -> KafkaBroker | TansuBroker:
    fixture = "kafka_broker" if request.param == "kafka" else "tansu_broker"
    started: KafkaBroker | TansuBroker = request.getfixturevalue(fixture)
    return started


def _consumer(broker: KafkaBroker | TansuBroker, topic: str, group: str) -> AIOKafkaConsumer:
    timing = FAST_GROUP_TIMING if isinstance(broker, TansuBroker) else {}
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **timing,
    )


async def _drain(consumer: AIOKafkaConsumer, want: int) -> list[tuple[int, int, bytes, bytes]]:
    """(partition, offset, key, value) of ``want`` records, via getmany as hotpath reads."""
    got: list[tuple[int, int, bytes, bytes]] = []
    deadline = time.monotonic() + _CONSUME_DEADLINE_S
    while len(got) < want and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500, max_records=17)
        for tp, records in batch.items():
            got.extend((tp.partition, r.offset, r.key, r.value) for r in records)
    return got


async def test_produce_consume_commit_resume(
    broker: KafkaBroker | TansuBroker, unique_topic: str
) -> None:
    await broker.create_topic(unique_topic, partitions=4)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for i in range(_MESSAGES):
            await producer.send(unique_topic, f"{i}".encode(), key=f"svc{i % _KEYS}".encode())
        await producer.flush()
        assert await producer.partitions_for(unique_topic) == {0, 1, 2, 3}
    finally:
        await producer.stop()

    group = f"{unique_topic}-group"
    consumer = _consumer(broker, unique_topic, group)
    await consumer.start()
    try:
        got = await _drain(consumer, _MESSAGES)
        assert sorted(int(v) for _, _, _, v in got) == list(range(_MESSAGES))
        # One key lives on one partition, in the order it was produced.
        by_key: dict[bytes, list[int]] = defaultdict(list)
        partition_of: dict[bytes, set[int]] = defaultdict(set)
        for partition, _, key, value in got:
            by_key[key].append(int(value))
            partition_of[key].add(partition)
        assert all(values == sorted(values) for values in by_key.values())
        assert all(len(parts) == 1 for parts in partition_of.values())

        await consumer.commit()
        # Six keys over four partitions may leave one empty; its position (0) is committed too.
        next_offsets = {TopicPartition(unique_topic, p): 0 for p in range(4)}
        for partition, offset, _, _ in got:
            tp = TopicPartition(unique_topic, partition)
            next_offsets[tp] = max(next_offsets[tp], offset + 1)
        assert sum(next_offsets.values()) == _MESSAGES
        for tp, end in next_offsets.items():
            assert consumer.highwater(tp) == end
            assert await consumer.committed(tp) == end
        if isinstance(broker, KafkaBroker):
            # Tansu's ListOffsets is wrong for multi-record batches (hotpath.services.tansu).
            assert await consumer.end_offsets(list(next_offsets)) == next_offsets
    finally:
        await consumer.stop()

    if isinstance(broker, KafkaBroker):
        # Tansu cannot answer the admin OffsetFetch (see hotpath.services.tansu).
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        assert {tp: meta.offset for tp, meta in offsets.items()} == next_offsets

    # A new member of the group starts after the commit: it sees only the new record.
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(unique_topic, b"after", key=b"svc0")
    finally:
        await producer.stop()
    resumed = _consumer(broker, unique_topic, group)
    await resumed.start()
    try:
        got = await _drain(resumed, 1)
        assert [value for _, _, _, value in got] == [b"after"]
        more = await resumed.getmany(timeout_ms=300)
        assert sum(len(records) for records in more.values()) == 0
    finally:
        await resumed.stop()


async def test_topic_auto_created_on_produce(
    broker: KafkaBroker | TansuBroker, unique_topic: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(unique_topic, b"first", partition=0)
    finally:
        await producer.stop()
    assert (sent.topic, sent.partition, sent.offset) == (unique_topic, 0, 0)
