"""Mirror the audit log to a Kafka topic (``hotpath.audit``) without ever slowing the hot loop.

The local file stays authoritative; the topic is a copy others can read and verify. Each
message is one record: value = the exact line of the file (newline included), key = its seq
as ASCII digits, all on one partition so the topic keeps the chain's order. A consumer can
hand the values straight to :func:`escalation.audit.verify_lines`.

How it keeps up:

- ``AuditLog(..., on_flush=mirror.on_flush)``: after each flush the records just made
  durable go into a bounded in-memory queue (constant time, no I/O, never raises). When
  the queue is full the records are simply not queued: the file has them.
- One background task sends in order, one batch in flight at a time: from the queue when
  its head is the next seq to send, else (after an overflow, at start) read from the file,
  where line *n* holds seq *n* (the chain has no gaps). File reads run in a thread.
- Where to resume is always read from the topic itself: at start and after any failed send
  the task reads the last message of the partition and continues after its seq. So a broker
  outage or a process restart neither loses nor repeats a record, and no state file can
  disagree with the topic. The last message must equal the file's line of that seq; if not,
  the topic mirrors some other log and the mirror stops for good (``status().stopped``)
  rather than splice two chains.
- Residual case: a produce request the broker applies *after* its timeout was reported and
  the tail was re-read would appear twice. The copy is byte-identical with the same key;
  consumers drop a seq they already hold.

The producer is the caller's (started and stopped by it); ``acks="all"`` makes the tail
read after a failure see everything that was acknowledged. The topic must keep its
records (no deletion by retention before they are mirrored elsewhere): a partition whose
records are gone cannot say where to resume, and the mirror stops.

>>> tail = KafkaTail("127.0.0.1:9092")  # nothing connects before start()
>>> mirror = AuditMirror(producer=None, path=Path("audit.jsonl"), tail=tail, max_queued=2)
>>> mirror.on_flush([AuditRecord(1, 0.0, "k", {}, "0" * 64, "a" * 64, b"one\\n")])
>>> mirror.status().queued, mirror.status().durable_seq
(1, 1)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from escalation.audit import AuditRecord
from escalation.backoff import Backoff

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "hotpath.audit"
# About 5 MB of ~500-byte records: minutes of a busy processor's decisions, so a broker blip
# is bridged from memory; beyond it the file serves the backlog.
DEFAULT_MAX_QUEUED = 10_000
# Records read from the file per batch during a catch-up: large enough to stream a backlog,
# small enough that one thread read stays in the milliseconds.
FILE_BATCH = 2_000


class TopicTail(Protocol):
    async def last(self, topic: str, partition: int) -> tuple[int, bytes] | None:
        """The (seq key, value) of the partition's last message; None when it has none."""


class MirrorDiverged(Exception):
    """The topic cannot continue this file's chain; retrying cannot help."""


@dataclass(frozen=True, slots=True)
class MirrorStatus:
    mirrored_seq: int        # last seq Kafka acknowledged (or found at resume); 0: none
    durable_seq: int         # last seq known to be in the file
    queued: int              # records waiting in memory
    failures: int            # failed attempts since the last success
    last_error: str | None
    stopped: str | None      # why the mirror gave up for good (topic diverged), else None

    @property
    def lag(self) -> int:
        return max(self.durable_seq - self.mirrored_seq, 0)


class _Cursor:
    """Reads the file's lines by seq, remembering where the last read ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seq, self._pos = 1, 0  # the line holding seq ``_seq`` starts at byte ``_pos``

    def read(self, seq: int, limit: int) -> list[bytes]:
        """Up to ``limit`` complete lines from seq ``seq``; fewer when the file ends."""
        if seq < self._seq:
            self._seq, self._pos = 1, 0
        out: list[bytes] = []
        with self.path.open("rb") as f:
            f.seek(self._pos)
            while len(out) < limit:
                line = f.readline()
                if not line.endswith(b"\n"):  # end of file, or a write still under way
                    break
                self._seq, self._pos = self._seq + 1, self._pos + len(line)
                if self._seq > seq:
                    out.append(line)
        return out


class AuditMirror:
    """Copies every durable record of ``path`` to ``topic``/``partition``, in order, once."""

    def __init__(self, producer: Any, path: Path, tail: TopicTail, *,
                 topic: str = DEFAULT_TOPIC, partition: int = 0,
                 max_queued: int = DEFAULT_MAX_QUEUED,
                 backoff: Backoff | None = None) -> None:
        """``producer``: a started AIOKafkaProducer (``acks="all"``), owned by the caller."""
        self.producer, self.path, self.tail = producer, path, tail
        self.topic, self.partition = topic, partition
        self._max_queued = max_queued
        # At most one probe of a down broker every 10 s: catching up later costs nothing,
        # hammering a broker that is coming back does.
        self._backoff = backoff or Backoff(base_s=0.2, max_s=10.0, jitter=random.random)
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._cursor = _Cursor(path)
        self._wake = asyncio.Event()
        self._next = 0           # next seq to send; 0 until the tail was read
        self._durable = 0
        self._failures = 0
        self._last_error: str | None = None
        self._stopped: str | None = None
        self._task: asyncio.Task[None] | None = None

    def on_flush(self, records: Sequence[AuditRecord]) -> None:
        """AuditLog's listener; call from the event loop's thread. Never blocks, never raises."""
        for rec in records:
            self._durable = max(self._durable, rec.seq)
            q = self._queue
            # Only contiguous runs are queued: a gap (after an overflow) is read from the file.
            if len(q) < self._max_queued and (not q or q[-1][0] + 1 == rec.seq):
                q.append((rec.seq, rec.line))
        self._wake.set()

    def status(self) -> MirrorStatus:
        return MirrorStatus(max(self._next - 1, 0), self._durable, len(self._queue),
                            self._failures, self._last_error, self._stopped)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-mirror")

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Give the backlog up to ``drain_timeout_s`` to go out, then stop; what is left
        goes out after the next start (it resumes from the topic)."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout_s):
                while self._stopped is None and self.status().lag > 0:
                    await asyncio.sleep(0.05)  # polling: stop is rare, 50 ms is cheap
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._resume()
                await self._pump()
            except MirrorDiverged as e:
                self._stopped = str(e)
                log.error("audit mirror stopped: %s", e)
                return
            except Exception as e:
                # Kafka down or slow (KafkaError, TimeoutError), the file unreadable
                # (OSError), or anything unforeseen: the mirror must outlive it, since nobody
                # would restart it, and the status says what went wrong.
                self._failures += 1
                self._last_error = f"{type(e).__name__}: {e}"
                expected = isinstance(e, KafkaError | OSError | TimeoutError)
                log.log(logging.WARNING if expected else logging.ERROR,
                        "audit mirror to %s failed (%d in a row): %s", self.topic,
                        self._failures, self._last_error, exc_info=not expected)
                await asyncio.sleep(self._backoff.delay(self._failures, None))

    async def _resume(self) -> None:
        """Continue after the topic's last record, once sure it is this file's."""
        partitions = await self.producer.partitions_for(self.topic)
        if self.partition not in partitions:
            raise MirrorDiverged(f"topic {self.topic!r} has no partition {self.partition}")
        last = await self.tail.last(self.topic, self.partition)
        if last is None:
            self._next = 1
            return
        seq, value = last
        lines = await asyncio.to_thread(self._cursor.read, seq, 1)
        if not lines or lines[0] != value:
            what = "does not have" if not lines else "holds other bytes for"
            raise MirrorDiverged(f"{self.topic}[{self.partition}] ends at seq {seq}, which "
                                 f"{self.path} {what}: the topic mirrors another log")
        self._next = seq + 1
        self._durable = max(self._durable, seq)

    async def _pump(self) -> None:
        """Send batches until a send fails (raises) or the task is cancelled."""
        while True:
            # Cleared before looking, so a flush while we look is not missed.
            self._wake.clear()
            lines = await self._take()
            if not lines:
                await self._wake.wait()
                continue
            batch = self.producer.create_batch()
            sent = 0
            for line in lines:
                if batch.append(key=str(self._next + sent).encode(), value=line,
                                timestamp=None) is None:
                    break  # batch full: the rest goes in the next round
                sent += 1
            delivered = await self.producer.send_batch(batch, self.topic,
                                                       partition=self.partition)
            await delivered
            self._next += sent
            self._failures, self._last_error = 0, None

    async def _take(self) -> list[bytes]:
        """The lines from seq ``_next`` on: the queue's if it starts there, else the file's.

        Queued lines leave the queue only once sent (next call), so a failed send loses
        nothing from memory either.
        """
        q = self._queue
        while q and q[0][0] < self._next:
            q.popleft()
        if q and q[0][0] == self._next:
            return [line for _, line in itertools.islice(q, FILE_BATCH)]
        upto = q[0][0] if q else None
        limit = FILE_BATCH if upto is None else min(FILE_BATCH, upto - self._next)
        lines = await asyncio.to_thread(self._cursor.read, self._next, limit)
        if lines:
            self._durable = max(self._durable, self._next + len(lines) - 1)
        return lines


class KafkaTail:
    """:class:`TopicTail` over a short-lived consumer (no group): read only at start and
    after a failure, so holding a connection open in between is not worth it."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s

    async def last(self, topic: str, partition: int) -> tuple[int, bytes] | None:
        tp = TopicPartition(topic, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False,
                                    request_timeout_ms=int(self.timeout_s * 1000))
        async with asyncio.timeout(self.timeout_s):
            try:
                await consumer.start()
                consumer.assign([tp])
                end = (await consumer.end_offsets([tp]))[tp]
                if end == 0:
                    return None
                if (await consumer.beginning_offsets([tp]))[tp] >= end:
                    raise MirrorDiverged(f"{topic}[{partition}]: its records were deleted "
                                         "(retention), so where to resume is unknown")
                consumer.seek(tp, end - 1)
                while True:
                    got = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                    for msg in got.get(tp, []):
                        return _seq_of(topic, msg.key), bytes(msg.value)
            finally:
                await consumer.stop()


def _seq_of(topic: str, key: bytes | None) -> int:
    """The seq a message key holds.

    >>> _seq_of("t", b"42")
    42
    >>> _seq_of("t", b"x")
    Traceback (most recent call last):
    ...
    hotpath.audit_mirror.MirrorDiverged: t: last message key b'x' is not an audit seq
    """
    if key is None or not key.isdigit():
        raise MirrorDiverged(f"{topic}: last message key {key!r} is not an audit seq")
    return int(key)
