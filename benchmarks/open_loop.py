"""An open-loop producer: telemetry at a fixed rate, each message stamped with its schedule.

    python -m benchmarks.open_loop --bootstrap HOST:PORT --topic T --case point|batch100
                                   --services N --rate POINTS_PER_S --warmup S --duration S
                                   [--seed SEED] [--lead S]

Message ``i`` is due at ``start + i / rate`` (messages/s) and carries that *intended* time as
its ``ts``, and as its Kafka record timestamp (rounded to the ms), whenever it is really
sent: a producer that falls behind its schedule shows up as latency downstream instead of
quietly sending less (no coordinated omission). Every tick the loop adds what has come due
to one aiokafka ``BatchBuilder`` per partition (the client's cheapest path: no per-message
future), hands the batches over without waiting for the broker, then sleeps until the next
message is due.

The workload is the steady state of ``benchmarks.throughput``: the same services, metrics,
levels (same seed) and clipped noise, keyed by service and partitioned as aiokafka's default
partitioner would, so a history produced by ``throughput.produce`` and this stream land each
series on one partition, in order. Messages are pre-encoded without their ``ts``; the loop
only formats the number in.

It runs as its own process, so its CPU is not the measured processor's, and prints one JSON
line: what it sent and how well it kept the schedule inside the measured window
(``start + warmup`` to ``start + warmup + duration``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from benchmarks.throughput import CASES, LABELS, METRICS_PER_BATCH, fleet_names, series_values

# Pre-encoded steps of values, cycled: enough that the noise does not repeat with a short
# period a detector could learn, few enough that 10,000 series stay a few MB.
CYCLE_STEPS = 16
# Shortest sleep between ticks: uvloop's timer resolution is 1 ms; at most this much of the
# measured latency is the producer batching what came due.
TICK_S = 0.001
# Most messages one tick sends: a producer far behind catches up in bounded steps (the lag
# stays visible in the report) instead of building one enormous request.
MAX_TICK_MESSAGES = 5_000
# Room per partition batch: a tick's point messages (~100 B) or batch messages (~2.5 kB)
# fit in one or a few; the broker's default limit on a message batch is 1 MiB.
MAX_BATCH_BYTES = 512 * 1024
# Time between connecting and the first message, so the first tick is not already late
# from the client's own start-up.
DEFAULT_LEAD_S = 0.2


def intended(start: float, rate: float, i: int) -> float:
    """When message ``i`` is due on the schedule ``start + i / rate``.

    >>> intended(100.0, 4.0, 6)
    101.5
    """
    return start + i / rate


def due(start: float, rate: float, now: float, total: int) -> int:
    """How many messages have come due by ``now`` (message 0 is due at ``start``).

    >>> [due(100.0, 4.0, t, 10) for t in (99.0, 100.0, 100.3, 101.0, 200.0)]
    [0, 1, 2, 5, 10]
    """
    if now < start:
        return 0
    n = int((now - start) * rate) + 1
    # The product rounds; settle the boundary on intended() itself, so the message counted
    # due is exactly the one whose ts is at most now.
    if intended(start, rate, n) <= now:
        n += 1
    elif intended(start, rate, n - 1) > now:
        n -= 1
    return min(total, n)


def encode_tails(case: str, services: int, seed: int) -> list[list[bytes]]:
    """``tails[k][j]``: message ``j`` of step ``k`` without its ts; ``b'{"ts":' + ts + tail``.

    Step ``k`` holds one message per point (``point``) or per service (``batch100``), in
    the order of ``throughput.point_messages`` / ``batch_messages``.

    >>> tails = encode_tails("batch100", 2, seed=1)
    >>> len(tails), len(tails[0])
    (16, 2)
    >>> msg = orjson.loads(b'{"ts":1700000000.25' + tails[3][1])
    >>> msg["ts"], msg["service"], len(msg["metrics"])
    (1700000000.25, 'svc-0001', 100)
    """
    svcs, metrics = fleet_names(services)
    values = series_values(services, CYCLE_STEPS, seed).tolist()
    tails: list[list[bytes]] = []
    for step in values:
        row: list[dict[str, Any]] = []
        for svc, vals in zip(svcs, step, strict=True):
            if CASES[case] == 1:
                row.extend({"ts": 0, "service": svc, "metric": m, "value": v, "labels": LABELS}
                           for m, v in zip(metrics, vals, strict=True))
            else:
                row.append({"ts": 0, "service": svc, "labels": LABELS,
                            "metrics": dict(zip(metrics, vals, strict=True))})
        # orjson keeps insertion order: every message starts b'{"ts":0'.
        tails.append([orjson.dumps(d)[len(b'{"ts":0'):] for d in row])
    return tails


def keys_and_partitions(case: str, services: int,
                        partitions: Sequence[int]) -> tuple[list[bytes], list[int]]:
    """Per message slot of a step: its key (the service) and the partition the default
    partitioner gives that key.

    >>> keys, parts = keys_and_partitions("point", 1, [0, 1, 2, 3])
    >>> len(keys), keys[0], len(set(parts))
    (100, b'svc-0000', 1)
    """
    per_service = METRICS_PER_BATCH if CASES[case] == 1 else 1
    keys = [svc.encode() for svc in fleet_names(services)[0] for _ in range(per_service)]
    choose = DefaultPartitioner()
    by_key = {k: choose(k, list(partitions), list(partitions)) for k in set(keys)}
    return keys, [by_key[k] for k in keys]


@dataclass(frozen=True, slots=True)
class Log:
    """Groups of messages, one entry each: the first (oldest) message's index, how many,
    and a time: when the loop took a tick's messages, or when the broker acknowledged a
    batch."""

    first: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    at: npt.NDArray[np.float64]

    @classmethod
    def of(cls, rows: Sequence[tuple[int, int, float]]) -> Log:
        """From ``(first, count, at)`` rows.

        >>> Log.of([(0, 5, 1.5)]).count.tolist()
        [5]
        """
        a = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return cls(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2])


def weighted_percentile(values: npt.NDArray[np.float64], weights: npt.NDArray[np.int64],
                        p: float) -> float:
    """The ``p``-th percentile of ``values`` each counted ``weights`` times.

    >>> weighted_percentile(np.array([0.0, 5.0, 1.0]), np.array([98, 1, 1]), 99.0)
    1.0
    >>> weighted_percentile(np.array([0.0, 5.0, 1.0]), np.array([98, 1, 1]), 100.0)
    5.0
    """
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    k = int(np.searchsorted(cum, p / 100.0 * cum[-1]))
    return float(values[order][min(k, len(order) - 1)])


def schedule_report(ticks: Log, acks: Log, start: float, rate: float, warmup: float,
                    duration: float) -> dict[str, float]:
    """How well the schedule was kept for the messages due inside the measured window.

    ``achieved_per_s``: those messages over the time it took to send them (the window, or
    longer when the last of them went out late). ``*_lag_s``: how late ticks took their
    messages, each message counted as late as its tick's oldest: the producer's own delay.
    ``ack_*_s``: from a batch's oldest message's intended time to the broker's
    acknowledgement, the part of produce→decision spent before a consumer can see it.

    >>> on_time = Log.of([(0, 10, 10.0), (10, 10, 11.0), (20, 10, 12.0), (30, 10, 13.0)])
    >>> acks = Log.of([(10, 10, 11.5), (20, 10, 12.5)])
    >>> r = schedule_report(on_time, acks, 10.0, 10.0, 1.0, 2.0)
    >>> r["messages"], r["achieved_per_s"], r["max_lag_s"], r["ack_max_s"]
    (20, 10.0, 0.0, 0.5)
    >>> late = Log.of([(0, 10, 10.0), (10, 10, 11.0), (20, 20, 13.5)])
    >>> r = schedule_report(late, acks, 10.0, 10.0, 1.0, 2.0)
    >>> r["messages"], r["achieved_per_s"], r["max_lag_s"], r["mean_lag_s"], r["p99_lag_s"]
    (20, 8.0, 1.5, 0.75, 1.5)
    """
    lo = int(np.ceil(warmup * rate))
    hi = int(np.ceil((warmup + duration) * rate))
    last = ticks.first + ticks.count
    inside = (last > lo) & (ticks.first < hi)
    report = dict.fromkeys(("messages", "achieved_per_s", "max_lag_s", "mean_lag_s",
                            "p99_lag_s", "ack_p50_s", "ack_p99_s", "ack_max_s"), 0.0)
    if inside.any():
        firsts = np.maximum(ticks.first[inside], lo)
        lags = ticks.at[inside] - (start + firsts / rate)
        counts = np.minimum(last[inside], hi) - firsts
        messages = int(counts.sum())
        took = max(duration, float(ticks.at[inside][-1]) - (start + lo / rate))
        report.update(messages=messages, achieved_per_s=messages / took,
                      max_lag_s=float(lags.max()), mean_lag_s=float(lags.mean()),
                      p99_lag_s=weighted_percentile(lags, counts, 99.0))
    acked = (acks.first >= lo) & (acks.first < hi)
    if acked.any():
        waits = acks.at[acked] - (start + acks.first[acked] / rate)
        report.update(ack_p50_s=weighted_percentile(waits, acks.count[acked], 50.0),
                      ack_p99_s=weighted_percentile(waits, acks.count[acked], 99.0),
                      ack_max_s=float(waits.max()))
    return report


class Shipper:
    """Per partition: the batch being filled, and the hand-over of the one before it.

    aiokafka keeps one request in flight per broker and one batch waiting per partition;
    ``send_batch`` blocks until that waiting batch leaves. Handing a partition's batch over
    only once its previous hand-over has finished, and filling a new one meanwhile, the
    tick loop never waits for the broker: messages wait in a batch, as they would in any
    producer, and the lag the loop reports is the producer's own.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, clock: Callable[[], float]):
        self.producer, self.topic, self.clock = producer, topic, clock
        self.filling: dict[int, Any] = {}  # partition → BatchBuilder
        self.oldest: dict[int, int] = {}
        self.handing: dict[int, asyncio.Task[Any]] = {}
        self.delivery: list[asyncio.Future[Any]] = []
        self.acks: list[tuple[int, int, float]] = []

    async def fresh(self, p: int, i: int) -> Any:
        """A new batch for partition ``p`` whose oldest message is ``i``; a full one is
        handed over first (waiting for the broker only then)."""
        if p in self.filling:
            t = self.handing.get(p)
            if t is not None:
                await t
            self._hand(p)
        b = self.filling[p] = self.producer.create_batch()
        self.oldest[p] = i
        return b

    def ready(self) -> None:
        """Hand over every partition's batch whose previous hand-over has finished."""
        for p in list(self.filling):
            t = self.handing.get(p)
            if t is None or t.done():
                if t is not None:
                    t.result()  # a failed hand-over ends the run with its error
                self._hand(p)

    async def flush(self) -> None:
        """Hand over everything and wait until the broker has acknowledged it all."""
        while self.filling:
            await asyncio.gather(*self.handing.values())
            self.ready()
        await asyncio.gather(*self.handing.values())
        await asyncio.gather(*self.delivery)

    def _hand(self, p: int) -> None:
        b, first = self.filling.pop(p), self.oldest.pop(p)
        n = b.record_count()
        t = asyncio.create_task(self.producer.send_batch(b, self.topic, partition=p))
        self.handing[p] = t

        def acked(_: asyncio.Future[Any]) -> None:
            self.acks.append((first, n, self.clock()))

        def handed(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is None:
                self.delivery.append(t.result())
                t.result().add_done_callback(acked)

        t.add_done_callback(handed)


async def run(bootstrap: str, topic: str, case: str, services: int, rate_points: float,
              warmup: float, duration: float, seed: int, lead: float,
              clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Produce the schedule to ``topic``; the report of what was sent and how punctually."""
    per_message = CASES[case]
    rate = rate_points / per_message
    total = int(np.ceil((warmup + duration) * rate))
    tails = encode_tails(case, services, seed)
    per_step = len(tails[0])
    # acks=1 and no linger: the broker has one replica, so acks=all waits for nothing more,
    # and any linger would be latency this producer adds on purpose.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0,
                                max_batch_size=MAX_BATCH_BYTES,
                                max_request_size=4 * MAX_BATCH_BYTES)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        keys, parts = keys_and_partitions(case, services, partitions)
        ship = Shipper(producer, topic, clock)
        filling = ship.filling
        start = clock() + lead
        sent = 0
        ticks: list[tuple[int, int, float]] = []
        while sent < total:
            now = clock()
            upto = min(due(start, rate, now, total), sent + MAX_TICK_MESSAGES)
            for i in range(sent, upto):
                step, j = divmod(i, per_step)
                at = start + i / rate
                value = b'{"ts":%.6f%b' % (at, tails[step % CYCLE_STEPS][j])
                # The record's timestamp is the intended time too (Kafka keeps whole ms):
                # a consumer that does not parse the JSON measures the same latency.
                ms = round(at * 1000)
                b = filling.get(parts[j])
                if b is None or b.append(key=keys[j], value=value, timestamp=ms) is None:
                    b = await ship.fresh(parts[j], i)
                    b.append(key=keys[j], value=value, timestamp=ms)
            if upto > sent:
                ticks.append((sent, upto - sent, now))
                sent = upto
            ship.ready()
            if sent < total:
                # Back within a tick while a batch waits for its hand-over.
                wait = intended(start, rate, sent) - clock()
                await asyncio.sleep(TICK_S if filling else max(TICK_S, wait))
        await ship.flush()
        finished = clock()
    finally:
        await producer.stop()
    window = schedule_report(Log.of(ticks), Log.of(ship.acks), start, rate, warmup, duration)
    return {"case": case, "topic": topic, "start": start, "rate_messages_per_s": rate,
            "rate_points_per_s": rate_points, "warmup_s": warmup, "duration_s": duration,
            "messages": sent, "points": sent * per_message, "finished": finished,
            "window": {**window, "points": int(window["messages"]) * per_message,
                       "achieved_points_per_s": float(window["achieved_per_s"]) * per_message}}


def set_nice(nice: int) -> int:
    """Run at ``nice`` if allowed (lowering it needs CAP_SYS_NICE); the niceness in effect.

    On a shared machine the producer would otherwise wait for a core behind the processor
    it is measuring, and its own wait would count as the processor's latency. Producers
    normally run elsewhere; a higher priority for this light process stands for that.
    """
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


def _positive(kind: type[float] | type[int], name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} {text} must be greater than 0")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.open_loop",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--case", required=True, choices=sorted(CASES))
    p.add_argument("--services", required=True, type=_positive(int, "--services"))
    p.add_argument("--rate", required=True, type=_positive(float, "--rate"),
                   help="points per second")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds before the window")
    p.add_argument("--duration", required=True, type=_positive(float, "--duration"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--lead", type=float, default=DEFAULT_LEAD_S)
    p.add_argument("--nice", type=int, default=0,
                   help="scheduling niceness, e.g. -5 to keep the schedule on a busy machine")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    if a.warmup < 0:
        parser.error(f"--warmup {a.warmup} must not be negative")
    nice = set_nice(a.nice)
    report = uvloop.run(run(a.bootstrap, a.topic, a.case, int(a.services), a.rate, a.warmup,
                            a.duration, a.seed, a.lead))
    sys.stdout.buffer.write(orjson.dumps({**report, "nice": nice}) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
