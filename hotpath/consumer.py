"""The consume loop: getmany → process → commit, with a rebalance listener.

Offsets are committed every ``commit_interval_s`` (a commit is a broker round trip; per
batch would cap throughput), and only ever for batches whose decisions the processor has
made durable. Before each commit the partitions' detector state is checkpointed with the
same offsets. The state is snapshotted in the loop; saving it and committing run in a
background task, so the round trips do not hold up the next batches (the latency benchmark
measured 20-55 ms stalls every interval when they did). When partitions are revoked, what
was processed is checkpointed and committed (after any commit in flight) before another
consumer takes them over; when assigned, the checkpoint is restored and the consumer seeks
to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from hotpath.checkpoint import Checkpoint, CheckpointStore
from hotpath.errors import CheckpointError
from hotpath.metrics import Metrics
from hotpath.partition import PartitionState, StateFactory
from hotpath.processor import TP, BatchResult, Processor

log = logging.getLogger(__name__)
# How long "nothing fetched" may last before the loop checks for unread data and says so.
_STUCK_WARN_S = 30.0


class PartitionStates(ConsumerRebalanceListener):  # type: ignore[misc]
    """Owns the per-partition state and the processed offsets; reacts to rebalances."""

    def __init__(self, consumer: AIOKafkaConsumer, factory: StateFactory,
                 store: CheckpointStore, metrics: Metrics) -> None:
        self.consumer = consumer
        self.factory = factory
        self.store = store
        self.metrics = metrics
        self.states: dict[TP, PartitionState] = {}
        self.processed: dict[TP, int] = {}   # next offset to read, per partition, durable
        self.committed: dict[TP, int] = {}
        # Held while a batch is processed, so a rebalance never sees half a batch.
        self.lock = asyncio.Lock()
        self.restored: dict[TP, int] = {}    # partitions resumed from a checkpoint, at offset
        self._persisting: asyncio.Task[None] | None = None  # the commit in flight

    def snapshot(self, only: set[TP] | None = None) -> tuple[dict[TP, int], dict[TP, Checkpoint]]:
        """What to commit now: processed offsets not yet committed, and the detector state
        at exactly those offsets (taken under the lock, so it matches them)."""
        todo = {tp: off for tp, off in self.processed.items()
                if (only is None or tp in only) and self.committed.get(tp) != off}
        cks = {tp: Checkpoint(off, self.states[tp].to_bytes())
               for tp, off in todo.items() if tp in self.states}
        return todo, cks

    async def persist(self, todo: dict[TP, int], cks: dict[TP, Checkpoint]) -> None:
        """Save the checkpoints, then commit the offsets (in that order: see checkpoint.py)."""
        if not todo:
            return
        if not await self.store.save_many(cks):
            # Safe to go on: a stale checkpoint only means a replay from an older offset,
            # and replays are idempotent (deterministic finding ids and dedup keys).
            self.metrics.checkpoint_failures.inc()
        try:
            await self.consumer.commit({TopicPartition(t, p): off for (t, p), off in todo.items()})
        except (CommitFailedError, KafkaError) as e:
            log.warning("offset commit failed (will retry next interval): %s", e)
            return
        self.committed.update({tp: off for tp, off in todo.items() if tp in self.processed})
        self.metrics.commits.inc()

    async def commit(self, only: set[TP] | None = None) -> None:
        """Checkpoint and commit now (rebalance, shutdown), after any commit in flight."""
        await self.settle()
        await self.persist(*self.snapshot(only))

    def commit_in_background(self) -> None:
        """Snapshot now (the caller holds the lock) and persist in a task, so batches keep
        flowing during the Redis and Kafka round trips; one at a time, never overlapping,
        so a commit can never land after a newer one. A commit still in flight when the
        next is due is simply followed by it one interval later."""
        task = self._persisting
        if task is not None:
            if not task.done():
                return
            self._persisting = None
            if not task.cancelled() and task.exception() is not None:
                # persist() catches what a commit can meet; anything else is a bug worth a
                # traceback, and the next commit tries again from the processed offsets.
                log.error("background commit failed", exc_info=task.exception())
        todo, cks = self.snapshot()
        if todo:
            self._persisting = asyncio.create_task(self.persist(todo, cks))

    async def settle(self) -> None:
        """Wait for the commit in flight, if any (its errors surface here)."""
        task, self._persisting = self._persisting, None
        if task is not None:
            await task

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in revoked}
        log.info("partitions revoked: %s", sorted(gone))
        async with self.lock:
            try:
                await self.commit(only=gone)
            finally:
                # Forgotten even if the commit failed: offsets of partitions this member no
                # longer owns would make every later commit fail.
                for tp in gone:
                    self.states.pop(tp, None)
                    self.processed.pop(tp, None)
                    self.committed.pop(tp, None)
                    self.restored.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for ktp in assigned:
            tp = (ktp.topic, ktp.partition)
            state = self.factory()
            ck = await self.store.load(*tp)
            if ck is not None:
                try:
                    state.load_bytes(ck.state)
                except CheckpointError as e:
                    log.warning("partition %s: %s; starting cold", tp, e)
                    state = self.factory()
                else:
                    self.consumer.seek(ktp, ck.offset)
                    self.processed[tp] = self.committed[tp] = ck.offset
                    self.restored[tp] = ck.offset
            self.states[tp] = state
        log.info("partitions assigned: %s; resumed from checkpoints: %s",
                 sorted((t.topic, t.partition) for t in assigned), self.restored)


FIRST_POINTS_PER_MESSAGE = 100.0  # why: the size of a typical batch message (wire format)


def batch_limit(max_messages: int, max_points: int, points_per_message: float) -> int:
    """Records to ask ``getmany`` for: ``max_messages``, fewer when messages carry many points.

    >>> batch_limit(5000, 50_000, 1.0), batch_limit(5000, 50_000, 100.0)
    (5000, 500)
    >>> batch_limit(5000, 50_000, 1e9)  # one message always fits
    1
    """
    return max(1, min(max_messages, int(max_points / max(points_per_message, 1.0))))


class ConsumeLoop:
    def __init__(self, consumer: AIOKafkaConsumer, states: PartitionStates,
                 processor: Processor, metrics: Metrics, commit_interval_s: float,
                 max_records: int, poll_timeout_ms: int,
                 monotonic: Callable[[], float], tick_interval_s: float = 5.0,
                 max_points: int | None = None) -> None:
        self.consumer = consumer
        self.states = states
        self.processor = processor
        self.metrics = metrics
        self.commit_interval_s = commit_interval_s
        self.max_records = max_records
        self.max_points = max_points
        # Points per message of the last batch that had any: sizes the next one. It starts
        # as if messages were fat, so a first batch of batch messages is not 100x too big
        # (a first batch of point messages is merely small).
        self.points_per_message = FIRST_POINTS_PER_MESSAGE
        self.poll_timeout_ms = poll_timeout_ms
        self.monotonic = monotonic
        self.tick_interval_s = tick_interval_s
        self.on_batch: Callable[[BatchResult], Any] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        last_commit = last_tick = self.monotonic()
        idle_since: float | None = None
        while not stop.is_set():
            limit = (self.max_records if self.max_points is None else
                     batch_limit(self.max_records, self.max_points, self.points_per_message))
            got = await self.consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=limit)
            if not got:
                idle_since = self._note_idle(idle_since)
            if got:
                idle_since = None
                async with self.states.lock:
                    batch = {(tp.topic, tp.partition): recs for tp, recs in got.items()
                             if (tp.topic, tp.partition) in self.states.states}
                    res = await self.processor.process(batch, self.states.states)
                    self.states.processed.update(res.next_offsets)
                if res.points:
                    self.points_per_message = res.points / res.messages
                self._lag(got.keys())
                self.metrics.series.set(sum(st.index.n for st in self.states.states.values()))
                if self.on_batch is not None:
                    self.on_batch(res)
            if self.monotonic() - last_tick >= self.tick_interval_s:
                # Time passing is an input too: a series that stopped reporting.
                async with self.states.lock:
                    await self.processor.tick(self.states.states)
                last_tick = self.monotonic()
            if self.monotonic() - last_commit >= self.commit_interval_s:
                async with self.states.lock:
                    self.states.commit_in_background()
                last_commit = self.monotonic()
                m = self.metrics
                log.info("processed %d messages, %d points, %d findings; committed %s",
                         m.messages._value.get(), m.points._value.get(),
                         m.findings._value.get(), self.states.committed)
        # Clean shutdown: the last batch is done; make it durable and commit it.
        async with self.states.lock:
            await self.states.commit()

    def _note_idle(self, idle_since: float | None) -> float | None:
        """Say so when nothing arrives for a while although the broker holds unread data.

        An idle partition is normal; an assigned partition with a high watermark above the
        position that yields nothing is a stuck fetch, and the log should show it.
        """
        now = self.monotonic()
        if idle_since is None:
            return now
        if now - idle_since < _STUCK_WARN_S:
            return idle_since
        behind = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            pos = self.states.processed.get((tp.topic, tp.partition))
            if high is not None and (pos is None or high > pos):
                behind[(tp.topic, tp.partition)] = (pos, high)
        if behind:
            log.warning("no records for %.0fs although partitions have unread data "
                        "(position, high watermark): %s", now - idle_since, behind)
        return now

    def _lag(self, tps: Any) -> None:
        for tp in tps:
            high = self.consumer.highwater(tp)
            pos = self.states.processed.get((tp.topic, tp.partition))
            if high is not None and pos is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(high - pos)
