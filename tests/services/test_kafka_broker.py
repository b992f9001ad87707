"""KafkaBroker: a real Apache Kafka 3.9.1 JVM, its restart after a crash, its clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hotpath.services.errors import ServiceMissing
from hotpath.services.kafka_broker import (
    KafkaBroker,
    default_libs_dir,
    libs_ready,
    server_properties,
)
from hotpath.services.ports import port_open

pytestmark = pytest.mark.kafka


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while len(values) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values.extend(r.value for r in batch.get(tp, []))
        return values
    finally:
        await consumer.stop()


async def test_data_survives_a_crash_and_restart(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    # Its own broker: killing the session one would break the other tests.
    broker = KafkaBroker(tmp_path, kafka_broker.libs_dir)
    broker.start()
    try:
        await broker.create_topic("durable", partitions=1)
        await _produce(broker.bootstrap, "durable", [b"a", b"b", b"c"])
        port = broker.port
        broker.kill()
        assert not port_open("127.0.0.1", port)
        broker.start()
        assert broker.port == port
        assert await _read_all(broker.bootstrap, "durable") == [b"a", b"b", b"c"]
    finally:
        broker.stop()
    assert not broker.running
    assert "Kafka Server started" in broker.log_path.read_text()


async def test_create_topic_is_idempotent(kafka_broker: KafkaBroker, unique_topic: str) -> None:
    await kafka_broker.create_topic(unique_topic, partitions=2)
    await kafka_broker.create_topic(unique_topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        assert await producer.partitions_for(unique_topic) == {0, 1}
    finally:
        await producer.stop()


def test_missing_jars_name_fetch_sh(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "work", tmp_path / "no-libs")
    with pytest.raises(ServiceMissing) as info:
        broker.start()
    assert str(info.value) == (
        f"Kafka 3.9.1 jars in {tmp_path / 'no-libs'} not found; install it with: "
        "deploy/kafka/fetch.sh (needs mvn: apt-get install maven)"
    )


def test_missing_java_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceMissing) as info:
        KafkaBroker(tmp_path, default_libs_dir()).start()
    assert info.value.fix == "apt-get install openjdk-17-jdk-headless"


def test_libs_ready_needs_the_stamp(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    assert libs_ready(kafka_broker.libs_dir)
    partial = tmp_path / "libs"
    partial.mkdir()
    for jar in kafka_broker.libs_dir.glob("kafka_2.13-*.jar"):
        shutil.copy(jar, partial)
    assert not libs_ready(partial)


def test_server_properties_single_node_settings(tmp_path: Path) -> None:
    props = dict(
        line.split("=", 1)
        for line in server_properties(19092, 19093, tmp_path).splitlines()
        if line
    )
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "4"
    assert props["log.dirs"] == str(tmp_path)


def test_a_cluster_id_starting_with_a_dash_formats(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path)
    broker._cluster_id = "-" + broker._cluster_id[1:]  # 1 in 32 random ids look like this
    try:
        broker.start()
        assert broker.running
    finally:
        broker.stop()
