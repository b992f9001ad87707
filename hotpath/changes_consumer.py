"""Feeds :class:`~escalation.changes.RecentChanges` from the ``changes`` topic.

Every replica needs every change (any replica may page about any service), so there is no
consumer group: the consumer assigns itself all partitions of the topic and, at start,
seeks each to the first message at or after ``now - horizon_s`` (``offsets_for_times``),
so the changes of the last horizon are loaded before the live ones arrive. Nothing is
committed; a restart reads the horizon again, and :class:`RecentChanges` keeps an event
seen twice once.

A bad message is logged and counted (``stats``, and the ``on_outcome`` hook for a metric)
and skipped; a broker error is logged and retried. Only ``stop`` ends :meth:`run`.

``caught_up`` is set once the backlog present at start has been read, so the runtime can
tell whether a page might lack a change that is on the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from escalation.changes import REASON_KINDS, RecentChanges, parse_change
from escalation.errors import ChangeError

log = logging.getLogger(__name__)

Clock = Callable[[], float]

OUTCOMES = frozenset(("loaded", "ignored")) | REASON_KINDS
"""Every value ``on_outcome`` is called with: a change kept, a valid change not kept
(duplicate, past the horizon, crowded out), or the reason kind of a rejected message."""

# why: a missing topic is usually created within seconds by the first producer or by
# deploy tooling; polling the metadata every 5 s costs one small request.
TOPIC_RETRY_S = 5.0
# why: after a broker error aiokafka reconnects on its own; a short pause keeps the loop
# from spinning on an error that repeats at once (e.g. an authorisation failure).
ERROR_PAUSE_S = 1.0


@dataclass
class ChangesStats:
    loaded: int = 0
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by reason kind
    errors: int = 0                                          # broker errors survived

    @property
    def bad(self) -> int:
        return sum(self.rejected.values())


class ChangesConsumer:
    """Reads ``topic`` from every partition into ``changes`` until ``stop`` is set."""

    def __init__(self, bootstrap: str, topic: str, changes: RecentChanges, clock: Clock, *,
                 horizon_s: float | None = None, poll_timeout_ms: int = 500,
                 max_records: int = 500,
                 on_outcome: Callable[[str], None] | None = None,
                 consumer_options: Mapping[str, Any] | None = None,
                 topic_retry_s: float = TOPIC_RETRY_S) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.changes = changes
        self.clock = clock
        self.horizon_s = changes.horizon_s if horizon_s is None else horizon_s
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.on_outcome = on_outcome or (lambda _: None)
        self.consumer_options = dict(consumer_options or {})
        self.topic_retry_s = topic_retry_s
        self.stats = ChangesStats()
        self.caught_up = asyncio.Event()
        self._next: dict[TopicPartition, int] = {}  # next offset to read, per partition
        self._ends: dict[TopicPartition, int] = {}  # the backlog at start, per partition
        self._warned_missing = False

    async def run(self, stop: asyncio.Event) -> None:
        consumer = await self._start(stop)
        if consumer is None:
            return
        try:
            while not stop.is_set():
                try:
                    if not self._next and not await self._discover(consumer):
                        await _sleep(stop, self.topic_retry_s)
                        continue
                    # Partitions added later show in the metadata the client refreshes.
                    await self._assign(consumer, consumer.partitions_for_topic(self.topic))
                    got = await consumer.getmany(timeout_ms=self.poll_timeout_ms,
                                                 max_records=self.max_records)
                except KafkaError as e:
                    self.stats.errors += 1
                    log.warning("changes topic %s: %s; retrying", self.topic, e)
                    await _sleep(stop, ERROR_PAUSE_S)
                    continue
                for tp, records in got.items():
                    for rec in records:
                        self._take(tp, rec.offset, rec.value)
                if not self.caught_up.is_set() and await self._reached_ends(consumer):
                    self.caught_up.set()
                    log.info("changes topic %s: caught up, %d changes of %d services kept",
                             self.topic, len(self.changes), len(self.changes.services()))
        finally:
            await consumer.stop()

    async def _reached_ends(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether every partition is read up to where it ended at start. The position, not
        the last record's offset: transaction markers take offsets no record carries."""
        for tp, end in self._ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _take(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        self._next[tp] = offset + 1
        try:
            ev = parse_change(value, now=self.clock())
        except ChangeError as e:
            self.stats.rejected[e.kind] += 1
            self.on_outcome(e.kind)
            log.warning("changes topic %s partition %d offset %d skipped: %s",
                        tp.topic, tp.partition, offset, e.reason)
            return
        if self.changes.add(ev):
            self.stats.loaded += 1
            self.on_outcome("loaded")
        else:
            self.stats.ignored += 1
            self.on_outcome("ignored")

    async def _start(self, stop: asyncio.Event) -> AIOKafkaConsumer | None:
        """A started consumer; None if ``stop`` was set before the broker answered."""
        while not stop.is_set():
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False, **self.consumer_options)
            try:
                await consumer.start()
            except KafkaError as e:
                self.stats.errors += 1
                log.warning("changes topic %s: %s; retrying", self.topic, e)
                await consumer.stop()
                await _sleep(stop, ERROR_PAUSE_S)
                continue
            return consumer
        return None

    async def _discover(self, consumer: AIOKafkaConsumer) -> bool:
        """Assign the topic's partitions once they exist and each has a leader.

        The consumer's own metadata covers only topics it reads, so the first look goes
        through the admin API. Like any consumer's metadata request, it lets a broker that
        auto-creates topics create this one: the next look then finds it led.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        parts = described[0]["partitions"] if described and not described[0][
            "error_code"] else []
        if not parts or any(p["leader"] < 0 for p in parts):
            if not self._warned_missing:
                log.warning("changes topic %s does not exist yet (or has no leader); pages "
                            "carry no changes until it does", self.topic)
                self._warned_missing = True
            return False
        await self._assign(consumer, {p["partition"] for p in parts})
        return True

    async def _assign(self, consumer: AIOKafkaConsumer, ids: set[int] | None) -> None:
        """Assign every partition; new ones (first call: all) start at the horizon.

        ``assign`` replaces the whole assignment, so partitions already read are put back
        at their next offset.
        """
        tps = {TopicPartition(self.topic, p) for p in ids or ()}
        new = tps - set(self._next)
        if not new:
            return
        since_ms = int((self.clock() - self.horizon_s) * 1000)
        found = await consumer.offsets_for_times({tp: since_ms for tp in new})
        ends = await consumer.end_offsets(list(new))
        tps |= set(self._next)
        consumer.assign(sorted(tps))
        for tp in tps:
            if tp in new:
                at = found.get(tp)
                self._next[tp] = ends[tp] if at is None else at.offset
                self._ends[tp] = ends[tp]
            consumer.seek(tp, self._next[tp])
        log.info("changes topic %s: reading partitions %s from %s (horizon %.0f s)",
                 self.topic, sorted(tp.partition for tp in new),
                 {tp.partition: self._next[tp] for tp in sorted(new)}, self.horizon_s)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, waking early when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
