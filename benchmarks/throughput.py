"""End-to-end throughput of the hot path through a real Apache Kafka broker.

    python -m benchmarks.throughput [--quick] [--messages N] [--series S] [--repeat R]
                                    [--batch-messages M] [--seed SEED]
                                    [--bootstrap HOST:PORT] [--redis-url URL] [--out PATH]

Two cases carry the same points: ``point`` (N messages of one point) and ``batch100``
(N/100 messages of 100 metrics). Each case's messages are produced to a fresh 4-partition
topic, keyed by service, with values in their normal range (seeded noise, no incidents),
so what is measured is the steady-state path. Then, per repeat:

- ``raw``: an ``AIOKafkaConsumer`` that only ``getmany``s every message (the ceiling);
- ``hotpath``: ``hotpath.runtime.serve`` on the example config, until its ``points``
  counter reaches the total.

Both are timed from the moment the group assigns them the partitions (their first batch
is fetched right after) to the last message, in wall time and process CPU time. The
report is the median over repeats. ``ratio_to_raw`` = hotpath points per CPU-second ÷ raw
points per CPU-second: both run in this one process, one after the other, so CPU time
charges each only for its own work, where wall time would also charge it for whatever
else the 2 shared cores were doing at that moment (``wall_ratio_to_raw`` is reported too).
The process runs with the garbage-collector settings of ``hotpath run``
(:func:`hotpath.gc_tuning.tune_gc`), for both measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.common import (
    REPO,
    RESULTS_DIR,
    Mark,
    Timing,
    add_run_options,
    format_table,
    machine_info,
    mark,
    mark_when,
    median,
    render_targets,
    run_and_report,
    target,
)
from hotpath.config import Config, load_config, with_overrides
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.processor import BatchResult
from hotpath.runtime import Running, serve
from hotpath.services.kafka_admin import create_topic

_T = TypeVar("_T")
EXAMPLE_CONFIG = REPO / "deploy" / "hotpath.yaml"
METRICS_PER_BATCH = 100
CASES = {"point": 1, f"batch{METRICS_PER_BATCH}": METRICS_PER_BATCH}  # case → points/message
PARTITIONS = 4
LABELS = {"region": "eu-west-1"}
# Noise as a fraction of each series' level, clipped: the demo fleet measured one false
# alert per 2,000,000 points at 2 σ, so 1.5 σ keeps the detectors' |z| ≥ 4 further out.
# The results count findings: a run that left the steady state says so.
NOISE_FRAC = 0.02
NOISE_CLIP_SIGMA = 1.5
# The same fetch limit as the runtime's consumer, so the ceiling fetches the same way.
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
# No progress for this long means the run is broken (a crash, a stuck rebalance), not slow.
STALL_S = 60.0
# Granularity of the "partitions assigned" stamp; both measurements use the same poll.
ASSIGN_POLL_S = 0.001
DEFAULT_SEED = 7
# Messages in flight while producing: enough to fill the producer's batches, and a bound on
# the futures held, which for millions of messages would otherwise cost hundreds of MB.
PRODUCE_CHUNK = 20_000


class BenchmarkError(Exception):
    """A measurement could not complete: the message says which one and how far it got."""


@dataclass(frozen=True, slots=True)
class Params:
    """Sizes of one benchmark run.

    >>> Params(messages=1000, series=100).points_per_series
    10
    >>> Params(messages=1000, series=150).check()
    Traceback (most recent call last):
    ...
    ValueError: --series 150 must be a multiple of 100 (metrics per batch message)
    """

    # 200 points per series, most past the 30-point detector warm-up; the batch100 case then
    # has 20,000 messages, enough for several full getmany batches of 5,000 records.
    messages: int = 2_000_000
    series: int = 10_000
    batch_messages: int | None = None
    repeat: int = 3
    seed: int = DEFAULT_SEED

    @classmethod
    def quick(cls) -> Params:
        """CI guard sizes: well under a minute in all, 100 points per series (past detector
        warm-up), and each measurement long enough (about a second) for a stable ratio: the
        batch case gets 5x the points, since it runs 5x faster per point."""
        return cls(messages=200_000, series=2_000, batch_messages=10_000, repeat=3)

    @classmethod
    def smoke(cls) -> Params:
        """The test suite's sizes: counts every point in seconds; its ratios mean nothing."""
        return cls(messages=20_000, series=400, repeat=1)

    @property
    def services(self) -> int:
        return self.series // METRICS_PER_BATCH

    @property
    def points_per_series(self) -> int:
        return self.messages // self.series

    @property
    def batches(self) -> int:
        return (self.batch_messages if self.batch_messages is not None
                else self.messages // METRICS_PER_BATCH)

    def check(self) -> Params:
        """``self`` when the sizes divide evenly, else ValueError naming the option."""
        if self.series <= 0 or self.series % METRICS_PER_BATCH:
            raise ValueError(f"--series {self.series} must be a multiple of {METRICS_PER_BATCH}"
                             " (metrics per batch message)")
        if self.messages <= 0 or self.messages % self.series:
            raise ValueError(f"--messages {self.messages} must be a multiple of --series "
                             f"{self.series} (every series gets the same number of points)")
        if self.batches <= 0 or self.batches % self.services:
            raise ValueError(f"--batch-messages {self.batches} must be a multiple of "
                             f"{self.services} services")
        if self.repeat <= 0:
            raise ValueError(f"--repeat {self.repeat} must be at least 1")
        return self


def series_values(services: int, steps: int, seed: int) -> npt.NDArray[np.float64]:
    """Values ``[step, service, metric]``: a level per series times clipped gaussian noise.

    >>> v = series_values(2, 50, seed=1)
    >>> v.shape, bool((np.abs(v / v[0] - 1) < 0.07).all())
    ((50, 2, 100), True)
    """
    rng = np.random.default_rng(seed)
    levels = rng.uniform(10.0, 1000.0, size=(services, METRICS_PER_BATCH))
    noise = np.clip(rng.standard_normal((steps, services, METRICS_PER_BATCH)),
                    -NOISE_CLIP_SIGMA, NOISE_CLIP_SIGMA)
    return levels * (1.0 + NOISE_FRAC * noise)


def fleet_names(services: int) -> tuple[list[str], list[str]]:
    return ([f"svc-{i:04d}" for i in range(services)],
            [f"m{j:03d}" for j in range(METRICS_PER_BATCH)])


def point_messages(values: npt.NDArray[np.float64], t0: float) -> Iterator[tuple[bytes, bytes]]:
    """One message per point, keyed by service, interleaved by time (step by step).

    >>> msgs = list(point_messages(series_values(1, 2, seed=1), 1.7e9))
    >>> len(msgs), msgs[0][0], sorted(orjson.loads(msgs[-1][1]))
    (200, b'svc-0000', ['labels', 'metric', 'service', 'ts', 'value'])
    """
    svcs, metrics = fleet_names(values.shape[1])
    for k, step in enumerate(values.tolist()):
        for svc, row in zip(svcs, step, strict=True):
            key = svc.encode()
            for metric, value in zip(metrics, row, strict=True):
                yield key, orjson.dumps({"service": svc, "metric": metric, "ts": t0 + k,
                                         "value": value, "labels": LABELS})


def batch_messages(values: npt.NDArray[np.float64], t0: float) -> Iterator[tuple[bytes, bytes]]:
    """One message per service and step holding its 100 metrics, keyed by service.

    >>> msgs = list(batch_messages(series_values(1, 2, seed=1), 1.7e9))
    >>> len(msgs), len(orjson.loads(msgs[0][1])["metrics"])
    (2, 100)
    """
    svcs, metrics = fleet_names(values.shape[1])
    for k, step in enumerate(values.tolist()):
        for svc, row in zip(svcs, step, strict=True):
            yield svc.encode(), orjson.dumps({"service": svc, "ts": t0 + k, "labels": LABELS,
                                              "metrics": dict(zip(metrics, row, strict=True))})


def _chunks(items: Iterator[_T], size: int) -> Iterator[list[_T]]:
    """``items`` in lists of ``size`` (the last may be shorter).

    >>> list(_chunks(iter(range(5)), 2))
    [[0, 1], [2, 3], [4]]
    """
    while chunk := list(itertools.islice(items, size)):
        yield chunk


async def produce(bootstrap: str, topic: str, msgs: Iterator[tuple[bytes, bytes]]) -> int:
    """Send every message (acks=all) and wait until all are written; returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    sent = 0
    try:
        for chunk in _chunks(msgs, PRODUCE_CHUNK):
            await asyncio.gather(*[await producer.send(topic, value=v, key=k) for k, v in chunk])
            sent += len(chunk)
        return sent
    finally:
        await producer.stop()


@dataclass(frozen=True, slots=True)
class Run:
    """One measurement, the non-empty batches it took, and what the hot path raised."""

    timing: Timing
    batches: int
    findings: int = 0
    dlq: int = 0

    def to_dict(self, unit: str) -> dict[str, float]:
        return {**self.timing.to_dict(unit), "batches": self.batches}


async def run_raw(bootstrap: str, topic: str, group: str, messages: int, cfg: Config) -> Run:
    """The ceiling: consume every message of ``topic`` and do nothing with it."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES)
    await consumer.start()
    assigned = asyncio.create_task(mark_when(lambda: bool(consumer.assignment()),
                                             ASSIGN_POLL_S))
    try:
        seen, batches, last_progress = 0, 0, time.monotonic()
        while seen < messages:
            got = await consumer.getmany(timeout_ms=cfg.kafka.poll_timeout_ms,
                                         max_records=cfg.kafka.max_batch)
            if got:
                seen += sum(len(recs) for recs in got.values())
                batches, last_progress = batches + 1, time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                raise BenchmarkError(f"raw consumer of {topic}: stalled at {seen}/{messages}")
        return Run(Timing.since(await assigned, seen), batches)
    finally:
        assigned.cancel()
        await consumer.stop()


async def run_hotpath(cfg: Config, points: int) -> Run:
    """``serve(cfg)`` until its ``points`` counter reaches ``points``, then stop it."""
    stop = asyncio.Event()
    box: list[Running] = []
    result: list[Timing] = []
    start: list[Mark] = []
    batches = [0]

    def processed() -> int:
        return int(box[0].metrics.points._value.get()) if box else 0

    def on_batch(res: BatchResult) -> None:
        if res.messages:
            batches[0] += 1
        if not start:  # only if the loop outran the 1 ms assignment poll
            start.append(mark())
        if not result and processed() >= points:
            result.append(Timing.since(start[0], processed()))
            stop.set()

    def ready(running: Running) -> None:
        box.append(running)
        running.on_batch.append(on_batch)

    task = asyncio.create_task(serve(cfg, stop, ready=ready))
    try:
        assigned = await race_serve(task, mark_when(lambda: bool(box and box[0].states.states),
                                                    ASSIGN_POLL_S))
        if not start:
            start.append(assigned)
        last = -1
        while not result:
            await race_serve(task, asyncio.wait_for(stop.wait(), STALL_S), allow_timeout=True)
            if processed() == last and not result:
                raise BenchmarkError(f"hotpath on {cfg.kafka.topic}: stalled at "
                                     f"{processed()}/{points} points")
            last = processed()
    finally:
        stop.set()
        await task
    m = box[0].metrics
    dlq = sum(s.value for f in m.dlq.collect() for s in f.samples if s.name.endswith("_total"))
    return Run(result[0], batches[0], int(m.findings._value.get()), int(dlq))


async def race_serve(serving: asyncio.Task[None], aw: Any, allow_timeout: bool = False) -> Any:
    """Await ``aw`` unless ``serve`` ends first: its error (or early return) is the failure."""
    waiter = asyncio.ensure_future(aw)
    await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        waiter.cancel()
        serving.result()  # raises serve's own exception, with its traceback
        raise BenchmarkError("hotpath.runtime.serve returned before the run finished")
    try:
        return waiter.result()
    except TimeoutError:
        if not allow_timeout:
            raise
        return None


def bench_config(bootstrap: str, redis_url: str, topic: str, group: str, workdir: Path,
            actions: ActionReceiver, pages: PageReceiver) -> Config:
    # Everything else (batch size, poll timeout, commit interval, detectors) stays as the
    # example config ships, so the figure is the one a deployment would see.
    return with_overrides(load_config(EXAMPLE_CONFIG), {
        "kafka": {"bootstrap": bootstrap, "topic": topic, "group": group},
        "redis": {"url": redis_url},
        "pagers": {"webhook": {"url": pages.url},
                   "console": {"path": workdir / "pages.jsonl", "echo": False},
                   # No Alertmanager runs here: its pages would only fail.
                   "alertmanager": None},
        "audit": {"path": workdir / "audit.jsonl"},
        "spool": {"dir": workdir / "spool"},
        "metrics": {"port": 0},
        "api": {"port": 0},
        "executors": {"webhook": {"url": actions.url},
                      "plugins": {"jsonl": {"path": str(workdir / "changes.jsonl")}}},
    })


async def measure_case(case: str, params: Params, bootstrap: str, redis_url: str,
                       workdir: Path, now: float) -> dict[str, Any]:
    """Produce one case's messages to a fresh topic, then measure raw and hotpath ``repeat``×."""
    per_message = CASES[case]
    steps = params.points_per_series if per_message == 1 else params.batches // params.services
    values = series_values(params.services, steps, params.seed)
    encode = point_messages if per_message == 1 else batch_messages
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-throughput-{case}-{run_id}"
    await create_topic(bootstrap, topic, PARTITIONS)
    # Oldest point a minute before the steps: every ts is valid (past 2000, not in the future).
    messages = await produce(bootstrap, topic, encode(values, now - steps - 60.0))
    points = messages * per_message
    raws: list[Run] = []
    hots: list[Run] = []
    # Unmeasured first read: the broker's first fetches of a topic run cold (JIT, index
    # files), which would otherwise count against whichever measurement comes first.
    await run_raw(bootstrap, topic, f"warmup-{run_id}", messages, load_config(EXAMPLE_CONFIG))
    async with ActionReceiver() as actions, PageReceiver() as pages:
        for r in range(params.repeat):
            run_dir = workdir / f"{case}-{r}"
            run_dir.mkdir(parents=True)  # the audit log opens its file, not the directory
            cfg = bench_config(bootstrap, redis_url, topic, f"hotpath-{run_id}-{r}", run_dir,
                          actions, pages)
            raws.append(await run_raw(bootstrap, topic, f"raw-{run_id}-{r}", messages, cfg))
            hots.append(await run_hotpath(cfg, points))
    hot_pps = median([h.timing.rate() for h in hots])
    raw_pps = median([r.timing.rate(per_message) for r in raws])
    hot_cpu = median([h.timing.cpu_rate() for h in hots])
    raw_cpu = median([r.timing.cpu_rate(per_message) for r in raws])
    return {
        "case": case, "messages": messages, "points_per_message": per_message, "points": points,
        "hotpath_points_per_s": hot_pps,
        "hotpath_points_per_cpu_s": hot_cpu,
        "raw_points_per_s": raw_pps,
        "raw_points_per_cpu_s": raw_cpu,
        "ratio_to_raw": hot_cpu / raw_cpu,
        "wall_ratio_to_raw": hot_pps / raw_pps,
        "hotpath_points_processed": min(h.timing.count for h in hots),
        "raw_messages_consumed": min(r.timing.count for r in raws),
        # Over all repeats; a steady-state workload has none of them.
        "findings": sum(h.findings for h in hots), "dlq": sum(h.dlq for h in hots),
        "pages": len(pages.pages), "actions": len(actions.received),
        "runs": [{"raw": r.to_dict("messages"), "hotpath": h.to_dict("points")}
                 for r, h in zip(raws, hots, strict=True)],
    }


async def measure(params: Params, bootstrap: str, redis_url: str, workdir: Path,
                  *, now: Callable[[], float] = time.time, quick: bool = False) -> dict[str, Any]:
    """Both cases against the given broker and Redis; the results document."""
    params.check()
    results = [await measure_case(case, params, bootstrap, redis_url, workdir, now())
               for case in CASES]
    cfg = load_config(EXAMPLE_CONFIG)
    by_case = {r["case"]: r for r in results}
    point, batch = by_case["point"], by_case[f"batch{METRICS_PER_BATCH}"]
    return {
        "benchmark": "throughput",
        "machine": machine_info(),
        "params": {**asdict(params), "batch_messages": params.batches,
                   "services": params.services, "metrics_per_batch": METRICS_PER_BATCH,
                   "points_per_series": params.points_per_series, "partitions": PARTITIONS,
                   "max_batch": cfg.kafka.max_batch, "poll_timeout_ms": cfg.kafka.poll_timeout_ms,
                   "commit_interval_s": cfg.kafka.commit_interval_s, "quick": quick},
        "results": results,
        "targets": [
            target("point_points_per_cpu_s", point["hotpath_points_per_cpu_s"], 150_000.0,
                   "points/s/core"),
            target("point_ratio_to_raw", point["ratio_to_raw"], 0.6, "x raw aiokafka"),
            target("batch100_points_per_cpu_s", batch["hotpath_points_per_cpu_s"], 2_000_000.0,
                   "points/s/core"),
        ],
        "guard": {"point_ratio_to_raw": point["ratio_to_raw"],
                  "batch100_ratio_to_raw": batch["ratio_to_raw"]},
    }


def render(doc: dict[str, Any]) -> str:
    """The results as a table, medians of the repeats."""
    rows = [[r["case"], r["messages"], r["points"], r["hotpath_points_per_s"],
             r["hotpath_points_per_cpu_s"], r["raw_points_per_s"], r["raw_points_per_cpu_s"],
             r["ratio_to_raw"], r["findings"]] for r in doc["results"]]
    p = doc["params"]
    head = (f"throughput: {p['series']:,} series, {p['repeat']} repeat(s), median; "
            f"{doc['machine']['cores']} cores, python {doc['machine']['python']}")
    return head + "\n" + format_table(
        ["case", "messages", "points", "hotpath pts/s", "hotpath pts/cpu-s", "raw pts/s",
         "raw pts/cpu-s", "ratio (cpu)", "findings"], rows) + "\n" + render_targets(doc)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--messages", type=int, help="point messages (default 2000000; quick 200000)")
    p.add_argument("--series", type=int, help="distinct series (default 10000; quick 2000)")
    p.add_argument("--batch-messages", type=int, help="batch messages (default messages/100)")
    p.add_argument("--repeat", type=int, help="runs per measurement (default 3; quick 3)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    add_run_options(p, RESULTS_DIR / "throughput.json", "short sizes for the CI guard")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    base = Params.quick() if args.quick else Params()
    given = {k: getattr(args, k) for k in ("messages", "series", "batch_messages", "repeat")
             if getattr(args, k) is not None}
    try:
        params = replace(base, seed=args.seed, **given).check()
    except ValueError as e:
        parser.error(str(e))
    return run_and_report(
        args, "throughput",
        lambda bootstrap, redis_url, tmp: measure(params, bootstrap, redis_url, tmp,
                                                  quick=args.quick),
        render, serves_here=True)


if __name__ == "__main__":
    raise SystemExit(main())
