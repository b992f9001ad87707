"""Produce→decision latency of the hot path at fixed fractions of its maximum throughput,
beside raw aiokafka's produce→receipt latency at the same rates.

    python -m benchmarks.latency [--quick] [--cases point,batch100] [--series S]
                                 [--backlog-steps K] [--warmup S] [--duration S] [--probe S]
                                 [--max-rate CASE=POINTS_PER_S ...] [--seed SEED]
                                 [--bootstrap HOST:PORT] [--redis-url URL] [--out PATH]

Per case (``point``: one point per message; ``batch100``: 100 metrics per message), on a
fresh 4-partition topic of a real Apache Kafka broker, with one ``hotpath.runtime.serve``
running throughout:

1. **Drain maximum.** A backlog of ``K`` steps (10 K for batch100) of every series
   (the steady-state noisy workload of ``benchmarks.throughput``, ts in the past) is
   produced first, then drained: points ÷ wall seconds from its first batch's decision to
   its last is the drain maximum (``--max-rate`` gives this ceiling instead). The backlog
   also takes every detector past its warm-up, so the measured levels see no warm-up alerts.
2. **Live maximum.** The drain runs with nothing else on the machine; live, the producer
   process and the broker share its cores with hotpath, which then decides much less (on
   2 cores, 10,000 series: drain 449k points/s, live about half). So the open-loop
   producer offers the ceiling for ``--probe`` seconds (after a 1 s warm-up): if hotpath
   falls behind, its decided points/s inside the producer's window is its capacity with a
   producer running, and a second probe offers 1.25x that (a lighter producer, nearer the
   levels' load). Each probe is followed by a catch-up until everything produced is
   decided. The levels are fractions of min(most decided/s in a probe, ceiling)
   (``benchmarks.latency_stats.next_probe``/``chosen_max``); ``--probe 0`` skips this.
   The probes run in ``benchmarks.latency_probe``.
3. **Levels.** At 10 %, 50 % and 90 % of that maximum, ``benchmarks.open_loop`` runs as
   its own process: a fixed schedule whose messages carry their *intended* send time as
   ``ts`` and as their Kafka timestamp (a producer that falls behind counts as latency: no
   coordinated omission). After a warm-up, every point whose ts lies in the ``--duration``
   window is measured.
4. **Raw, beside each level.** Right after it, the same schedule is produced again to a
   second topic of the same shape (partitions, keys) and read by a plain
   ``AIOKafkaConsumer`` with the runtime's settings (fetch size, ``getmany`` timeout and
   ``max_records``) that does nothing but note each record's timestamp: the latency any
   Kafka consumer in this process sees on this machine, the ceiling hotpath is read
   against (``raw_over_hotpath_*`` ratios). A second topic, not hotpath's own: the
   processor stays subscribed to its topic (warm detectors, measured maximum), so it would
   process a raw run there too; on its own topic hotpath idles while raw runs, and raw and
   hotpath alternate level by level under the same conditions of the shared machine.
   The raw consumer is ``benchmarks.latency_raw``.

Decision time is read in ``Running.on_batch``, which fires right after a batch's decisions
are durable (audit written, pages in the outbox); the hook only appends the clock reading
and the batch's ``event_ts`` arrays, so measuring costs the processor nothing per point.
Receipt time is read once per raw ``getmany``. Latency = that time − intended time,
recorded after the run into an HdrHistogram (µs, 3 significant digits) weighted per point
on both sides (a batch100 record counts 100 times); each level reports p50/p99/p99.9/max,
a percentile table and the encoded histogram (``benchmarks.latency_stats``). Producer and
consumers share the machine's cores with the broker: the report says how punctually the
producer kept its schedule, and flags a level where it was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    add_run_options,
    machine_info,
    run_and_report,
)
from benchmarks.latency_probe import Clock, Observer, OpenLoop, probe_max, until
from benchmarks.latency_raw import raw_level
from benchmarks.latency_stats import (
    FRACTIONS,
    drain_rate,
    guard,
    level_result,
    render,
    targets,
    with_raw,
)
from benchmarks.throughput import (
    CASES,
    METRICS_PER_BATCH,
    PARTITIONS,
    STALL_S,
    BenchmarkError,
    batch_messages,
    bench_config,
    point_messages,
    produce,
    race_serve,
    series_values,
)
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import Running, serve
from hotpath.services.kafka_admin import create_topic

# Batch messages drain about 8x more points/s than point messages (throughput.json: 2.1M vs
# 268k), so their backlog gets 10x the steps and both drains last about as long.
BATCH_BACKLOG_FACTOR = 10
# After a level, the processor gets this long (and at least the level's duration) to decide
# what is left before the next level starts; what it did not decide is reported.
SETTLE_S = 5.0


@dataclass(frozen=True, slots=True)
class Params:
    """Sizes of one latency run.

    >>> Params().check().services
    100
    >>> Params(backlog_steps=10).check()
    Traceback (most recent call last):
    ...
    ValueError: --backlog-steps 10 must be at least 30 (the detectors' warm-up)
    """

    # The throughput benchmark's 10,000 series; 60 backlog steps (600 for batch100) drain
    # in a few seconds, long enough for a stable maximum.
    series: int = 10_000
    backlog_steps: int = 60
    warmup_s: float = 3.0
    duration_s: float = 10.0
    # Each live-maximum probe: 5 s of decided batches average over the ~100 ms swings of a
    # shared machine; 0 skips the probes.
    probe_s: float = 5.0
    cases: tuple[str, ...] = tuple(CASES)
    max_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 7

    @classmethod
    def quick(cls) -> Params:
        """CI sizes: a few seconds per level; a backlog that drains in about half a second."""
        return cls(series=2_000, backlog_steps=60, warmup_s=1.0, duration_s=3.0, probe_s=2.0)

    @property
    def services(self) -> int:
        return self.series // METRICS_PER_BATCH

    def backlog_steps_for(self, case: str) -> int:
        return self.backlog_steps * (1 if CASES[case] == 1 else BATCH_BACKLOG_FACTOR)

    def check(self) -> Params:
        """``self`` when every option is usable, else ValueError naming the option."""
        if self.series <= 0 or self.series % METRICS_PER_BATCH:
            raise ValueError(f"--series {self.series} must be a positive multiple of "
                             f"{METRICS_PER_BATCH} (metrics per batch message)")
        if self.backlog_steps < 30:
            raise ValueError(f"--backlog-steps {self.backlog_steps} must be at least 30 "
                             "(the detectors' warm-up)")
        if self.warmup_s < 0:
            raise ValueError(f"--warmup {self.warmup_s:g} must not be negative")
        if self.duration_s <= 0:
            raise ValueError(f"--duration {self.duration_s:g} must be greater than 0")
        if self.probe_s < 0:
            raise ValueError(f"--probe {self.probe_s:g} must not be negative (0 skips it)")
        for case in (*self.cases, *self.max_rates):
            if case not in CASES:
                raise ValueError(f"unknown case {case!r}: choose from {', '.join(CASES)}")
        for case, rate in self.max_rates.items():
            if not rate > 0:
                raise ValueError(f"--max-rate {case}={rate:g} must be greater than 0")
        return self


def parse_max_rate(text: str) -> tuple[str, float]:
    """``CASE=POINTS_PER_S`` from the command line.

    >>> parse_max_rate("batch100=2e6")
    ('batch100', 2000000.0)
    >>> parse_max_rate("point")
    Traceback (most recent call last):
    ...
    ValueError: --max-rate 'point' must be CASE=POINTS_PER_S, e.g. point=250000
    """
    case, sep, rate = text.partition("=")
    try:
        if sep:
            return case, float(rate)
    except ValueError:
        pass
    raise ValueError(f"--max-rate {text!r} must be CASE=POINTS_PER_S, e.g. point=250000")


def _batch_seconds(running: Running) -> tuple[float, float]:
    """The processor's own ``hotpath_batch_seconds`` (getmany → decisions durable): sum, count.

    Beside the end-to-end figures it splits a level's latency into processing and the rest
    (producer tick, broker, fetch, waiting for the batch before).
    """
    got = {s.name: s.value for f in running.metrics.batch_seconds.collect() for s in f.samples}
    return got["hotpath_batch_seconds_sum"], got["hotpath_batch_seconds_count"]


async def measure_case(case: str, params: Params, bootstrap: str, redis_url: str,
                       workdir: Path, clock: Clock) -> dict[str, Any]:
    """Backlog, maximum, then the three levels of one case, with one processor throughout,
    each followed by the raw consumer at the same rate."""
    per_message = CASES[case]
    run_id = uuid.uuid4().hex[:8]
    topic, raw_topic = (f"bench-latency-{case}-{kind}{run_id}" for kind in ("", "raw-"))
    for t in (topic, raw_topic):
        await create_topic(bootstrap, t, PARTITIONS)
    steps = params.backlog_steps_for(case)
    values = series_values(params.services, steps, params.seed)
    encode = point_messages if per_message == 1 else batch_messages
    # A step a second ending now: the live stream's ts continue from the backlog's.
    backlog = per_message * await produce(bootstrap, topic, encode(values, clock() - steps))
    obs = Observer(clock)
    producer = OpenLoop(bootstrap, case, params.services, params.seed)
    stop = asyncio.Event()
    async with ActionReceiver() as actions, PageReceiver() as pages:
        run_dir = workdir / case
        run_dir.mkdir(parents=True)
        cfg = bench_config(bootstrap, redis_url, topic, f"hotpath-{run_id}", run_dir,
                      actions, pages)
        serving = asyncio.create_task(serve(cfg, stop, ready=obs.ready))
        try:
            if not await until(serving, lambda: obs.points, backlog, STALL_S):
                raise BenchmarkError(f"hotpath on {topic}: backlog stalled at "
                                     f"{obs.points}/{backlog} points")
            measured, drained = drain_rate(obs.stamps, backlog)
            ceiling_source = "given" if case in params.max_rates else "drain"
            ceiling = params.max_rates.get(case, measured)
            max_rate, source, probes, expected = await probe_max(
                serving, obs, producer, topic, ceiling, ceiling_source, params.probe_s,
                backlog)
            levels = []
            settle_s = max(SETTLE_S, params.duration_s)
            for fraction in FRACTIONS:
                rate = fraction * max_rate
                before = _batch_seconds(obs.box[0])
                report = await race_serve(serving, producer.run(
                    topic, rate, params.warmup_s, params.duration_s))
                expected += report["points"]
                await until(serving, lambda: obs.points, expected, settle_s)
                undecided = max(0, expected - obs.points)
                spent, batches = (a - b for a, b in zip(_batch_seconds(obs.box[0]), before,
                                                        strict=True))
                raw = await race_serve(serving, raw_level(
                    producer, raw_topic, f"raw-{run_id}-{round(fraction * 100)}", rate,
                    params.warmup_s, params.duration_s, settle_s, cfg, clock))
                levels.append((fraction, rate, report, {
                    "undecided_after_settle": undecided, "batches": int(batches),
                    "processing_ms_per_batch": 1000 * spent / batches if batches else 0.0},
                    raw))
        finally:
            stop.set()
            await serving
        m = obs.box[0].metrics
        findings = int(m.findings._value.get())
        dlq = sum(s.value for f in m.dlq.collect() for s in f.samples
                  if s.name.endswith("_total"))
    results = [with_raw({**level_result(fraction, rate, report, obs.stamps), **extra},
                        {**level_result(fraction, rate, raw_report, raw_stamps, per_message),
                         **raw_extra})
               for fraction, rate, report, extra, (raw_report, raw_stamps, raw_extra)
               in levels]
    return {"case": case, "points_per_message": per_message, "backlog_points": backlog,
            "backlog_drain_s": drained, "drain_max_points_per_s": measured,
            "given_max_points_per_s": params.max_rates.get(case),
            "probes": probes,
            "live_max_points_per_s": max((p["decided_points_per_s"] for p in probes),
                                         default=None),
            "max_points_per_s": max_rate, "max_rate_source": source,
            "findings": findings, "dlq": int(dlq), "pages": len(pages.pages),
            "levels": results}


NOTES = [
    "Results compare only with the same machine: the Kafka broker (JVM), redis, the "
    "open-loop producer process and the processor share its cores.",
    "The levels are fractions of max_points_per_s, from max_rate_source: 'live probe' is "
    "the most hotpath decided per second while the open-loop producer offered more than it "
    "could take (probes), when under the ceiling: the backlog drain rate ('drain', nothing "
    "else running) or the throughput benchmark's rate handed over by --max-rate ('given'). "
    "Live, the producer process (about half a core at 225k points/s) and the broker share "
    "the cores with hotpath, so its live capacity is well under its drain rate; levels of "
    "the drain rate would lie beyond what this machine sustains in this set-up.",
    "A probe's producer offers at least the level's rate, so the live maximum is a low "
    "estimate of the capacity at the 90 % level's load: a kept_up below 1 there is "
    "hotpath or the shared machine, not an unreachable level.",
    "Latency includes the producer's tick (≤ 1 ms), the broker round trip, the consumer's "
    "fetch and the batch's processing and durable decisions; a late producer counts too.",
    "raw: the same schedule on a second topic of the same shape, read by a plain "
    "AIOKafkaConsumer with the runtime's fetch size, poll timeout and max_records, noting "
    "receipt time − record timestamp; it runs right after each hotpath level, in this "
    "process, while hotpath idles on its own topic. It is the ceiling: no consumer in "
    "this process on this machine sees lower latency.",
    "raw latency uses the Kafka record timestamp, the intended send time rounded to the "
    "millisecond: each raw figure is within ±0.5 ms of the exact one (no bias in the mean).",
    "Both sides weight latency per point: a batch100 record counts as its 100 points.",
    "raw_over_hotpath_p50/p99 = raw ÷ hotpath at the same level (1 = hotpath adds nothing). "
    "The guard uses p50 at 50 %: a quick level's p99 rests on a few hundred batches.",
]


async def measure(params: Params, bootstrap: str, redis_url: str, workdir: Path,
                  *, clock: Clock = time.time, quick: bool = False) -> dict[str, Any]:
    """Every selected case against the given broker and Redis; the results document."""
    params.check()
    results = [await measure_case(case, params, bootstrap, redis_url, workdir, clock)
               for case in params.cases]
    return {
        "benchmark": "latency", "machine": machine_info(),
        "params": {**asdict(params), "fractions": list(FRACTIONS), "services": params.services,
                   "partitions": PARTITIONS, "quick": quick},
        "results": results, "targets": targets(results), "guard": guard(results),
        "notes": NOTES,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--cases", help=f"comma-separated (default {','.join(CASES)})")
    p.add_argument("--series", type=int, help="distinct series (default 10000; quick 2000)")
    p.add_argument("--backlog-steps", type=int,
                   help="points per series drained for the maximum, x10 for batch100 "
                   "(default 60; quick 60)")
    p.add_argument("--warmup", type=float, help="seconds per level before measuring "
                   "(default 3; quick 1)")
    p.add_argument("--duration", type=float, help="measured seconds per level "
                   "(default 10; quick 3)")
    p.add_argument("--probe", type=float, help="seconds of each live-maximum probe "
                   "(default 5; quick 2); 0 skips the probes: the levels are then fractions "
                   "of the drain or --max-rate maximum")
    p.add_argument("--max-rate", action="append", default=[], metavar="CASE=POINTS_PER_S",
                   help="use this ceiling instead of the drain rate (repeatable); the probes "
                   "offer it, and the levels use it when hotpath keeps up with it live")
    p.add_argument("--seed", type=int, default=7)
    add_run_options(p, RESULTS_DIR / "latency.json", "short levels for the CI guard")
    return p


def params_from(args: argparse.Namespace) -> Params:
    """The run's sizes from parsed options; ValueError (with the option) when unusable."""
    base = Params.quick() if args.quick else Params()
    given: dict[str, Any] = {k: v for k, v in (
        ("series", args.series), ("backlog_steps", args.backlog_steps),
        ("warmup_s", args.warmup), ("duration_s", args.duration),
        ("probe_s", args.probe)) if v is not None}
    if args.cases is not None:
        given["cases"] = tuple(c.strip() for c in args.cases.split(",") if c.strip())
        if not given["cases"]:
            raise ValueError("--cases must name at least one case")
    given["max_rates"] = dict(parse_max_rate(t) for t in args.max_rate)
    return replace(base, seed=args.seed, **given).check()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        params = params_from(args)
    except ValueError as e:
        parser.error(str(e))
    # serve() runs in this process: it gets `hotpath run`'s collector settings.
    return run_and_report(
        args, "latency",
        lambda bootstrap, redis_url, tmp: measure(params, bootstrap, redis_url, tmp,
                                                  quick=args.quick),
        render, serves_here=True)


if __name__ == "__main__":
    raise SystemExit(main())
