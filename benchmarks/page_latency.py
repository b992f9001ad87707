"""Deviation→page latency: hotpath against a real Prometheus + Alertmanager, same step change.

    python -m benchmarks.page_latency [--quick] [--trials N] [--prom-trials N] [--history H]
                                      [--seed SEED] [--bootstrap HOST:PORT] [--redis-url URL]
                                      [--out PATH]

Every trial is one series at level 100 with 2 % noise that steps to 3× its level (far outside
the noise; the Prometheus rule's threshold is halfway, 200).

- ``hotpath``: ``serve()`` on deploy/hotpath.yaml as shipped (its default detector ensemble,
  decide threshold, incident grouping, outbox and sender), pages going to a local webhook
  receiver, on a real Apache Kafka broker and redis-server. Each trial is its own service
  (incidents group by service, so none merges into another) with ``history`` points
  backfilled at 1 s spacing, then points published live once a second (the cadence of a
  1 s scrape), each series at its own seeded phase. The steps come at seeded, staggered
  instants, spaced so that the pages stay under the config's page-storm threshold. A trial
  runs from just before the producer's ``send`` of the first stepped point to the arrival
  of the incident's first page at the receiver.
- ``prom_default`` / ``prom_fast`` (:mod:`benchmarks.promstack`): the same series served by
  an exporter, a threshold rule with ``for: 0s`` (the fastest rule there is: this favours
  Prometheus), Alertmanager grouping by series; 15 s scrape and evaluation with group_wait
  30 s, and 1 s / 1 s / 0 s. All trials of a setting run at once, their steps spread over one
  scrape cycle. A trial runs from the first instant the exporter serves the stepped value to
  the arrival of Alertmanager's first notification for it. ``--quick`` skips ``prom_default``.

Speed-ups are ratios of medians (p50 ÷ p50); ratios of p99s are reported beside them. The
guard ratios are ``<side>_over_hotpath``, the speed-up per Prometheus setting; a setting not
run (skipped in ``--quick``, binaries missing) lists its ratio under ``guard_skipped`` with
the reason, which the CI guard reports as skipped instead of failing it.

The pure parts (the trials' values and schedule, statistics, targets, guard ratios, table)
are in :mod:`benchmarks.page_latency_trials`; this module measures and runs the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from benchmarks.common import (
    RESULTS_DIR,
    add_run_options,
    machine_info,
    mark_when,
    run_and_report,
)
from benchmarks.page_latency_trials import (
    DEFAULT_SEED,
    LEVEL,
    NOISE_FRAC,
    NOTES,
    PROM_STREAM,
    SCHEDULE_STREAM,
    STEP_FACTOR,
    THRESHOLD,
    WARM_TICKS,
    Params,
    assess,
    guard_skipped,
    live_schedule,
    render,
    series_value,
    stagger,
    summarize,
)
from benchmarks.promstack import DEFAULT, FAST, Setting, measure_setting, missing_binaries
from benchmarks.throughput import BenchmarkError, bench_config, produce, race_serve
from hotpath.config import Config
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import Running, serve
from hotpath.services.kafka_admin import create_topic

# No bounds and, for the trial services, no remediation rule in the shipped config: the
# default ensemble decides and a page is the only outcome.
METRIC = "http_latency_p99_ms"
LABELS = {"region": "eu-west-1"}
# As benchmarks.throughput: a production topic has several partitions, so the measured
# path includes the processor's per-partition batches, state and offsets.
PARTITIONS = 4
# A page this late is a miss, not a latency: the target is 100 ms.
PAGE_TIMEOUT_S = 10.0
# The processor's start (consumer group join, partition assignment) and the backfill's
# processing take a few seconds on the shared 2-core machine; a minute without them is a
# hang, not a slow machine.
STALL_S = 60.0
# How often readiness and backfill progress are checked: these waits precede the measured
# part, so 10 ms only has to be far below the second they take, not precise.
POLL_S = 0.01
# The first live point comes this long after the backfill: every series' phase then falls
# in one future second, none is late before it starts.
LIVE_LEAD_S = 0.5
PROM_SIDES = {s.name: s for s in (DEFAULT, FAST)}


@dataclass(frozen=True, slots=True)
class HotpathRun:
    latencies_s: list[float]
    missed: int
    early: list[str]  # services paged before their step: false pages
    pages: int


async def measure_hotpath(params: Params, bootstrap: str, redis_url: str,
                          workdir: Path) -> HotpathRun:
    """Backfill, then publish live once a second and step every series once; see the module."""
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-page-latency-{run_id}"
    await create_topic(bootstrap, topic, PARTITIONS)
    workdir.mkdir(parents=True, exist_ok=True)  # the audit log opens a file in it
    # Named per run: a Redis shared with earlier runs holds their incidents and hold-offs.
    names = [f"pl{run_id}-{i:02d}" for i in range(params.trials)]
    rngs = [np.random.default_rng([params.seed, i]) for i in range(params.trials)]
    sched = np.random.default_rng([params.seed, SCHEDULE_STREAM])
    stepped_at: dict[str, float] = {}
    arrived: dict[str, float] = {}
    early: list[str] = []

    def on_page(page: dict[str, Any]) -> None:
        now = time.perf_counter()
        service = page["service"]
        if service in stepped_at:
            arrived.setdefault(service, now)
        else:
            early.append(service)

    box: list[Running] = []
    stop = asyncio.Event()
    async with ActionReceiver() as actions, PageReceiver(on_page=on_page) as pages:
        cfg = bench_config(bootstrap, redis_url, topic, f"page-latency-{run_id}", workdir,
                      actions, pages)
        task = asyncio.create_task(serve(cfg, stop, ready=box.append))
        try:
            await race_serve(task, asyncio.wait_for(
                mark_when(lambda: bool(box and box[0].states.states), POLL_S), STALL_S))
            await _backfill(cfg, bootstrap, topic, names, rngs, params.history, box[0], task)
            schedule = live_schedule(len(names), cfg.delivery.storm_max_per_min, sched)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
            await producer.start()
            try:
                start = time.perf_counter() + LIVE_LEAD_S
                await race_serve(task, asyncio.gather(*[
                    _publish(producer, topic, name, rng, start + phase, step_tick,
                             stepped_at, arrived)
                    for name, rng, (phase, step_tick) in zip(names, rngs, schedule,
                                                             strict=True)]))
            finally:
                await producer.stop()
        finally:
            stop.set()
            await task
        return HotpathRun([arrived[n] - stepped_at[n] for n in names if n in arrived],
                          sum(n not in arrived for n in names), early, len(pages.pages))


async def _backfill(cfg: Config, bootstrap: str, topic: str, names: Sequence[str],
                    rngs: Sequence[np.random.Generator], history: int, running: Running,
                    task: asyncio.Task[None]) -> None:
    """``history`` past points per series at 1 s spacing, then wait until all are processed."""
    t0 = time.time() - history
    msgs = [(name.encode(), orjson.dumps({
        "service": name, "metric": METRIC, "ts": t0 + k, "labels": LABELS,
        "value": series_value(rng, False)}))
        for k in range(history) for name, rng in zip(names, rngs, strict=True)]
    total = await produce(bootstrap, topic, iter(msgs))

    def processed() -> bool:
        return int(running.metrics.points._value.get()) >= total

    try:
        await race_serve(task, asyncio.wait_for(mark_when(processed, POLL_S), STALL_S))
    except TimeoutError:
        raise BenchmarkError(f"hotpath on {topic}: backfill of {total} points not processed "
                             f"within {STALL_S:.0f} s") from None


async def _publish(producer: AIOKafkaProducer, topic: str, name: str,
                   rng: np.random.Generator, first: float, step_tick: int,
                   stepped_at: dict[str, float], arrived: dict[str, float]) -> None:
    """One series live: a point a second from ``first``; stepped from ``step_tick`` on."""
    key = name.encode()
    tick = 0
    while name not in arrived:
        await asyncio.sleep(max(0.0, first + tick - time.perf_counter()))
        stepped = tick >= step_tick
        body = orjson.dumps({"service": name, "metric": METRIC, "ts": time.time(),
                             "labels": LABELS, "value": series_value(rng, stepped)})
        if stepped and name not in stepped_at:
            stepped_at[name] = time.perf_counter()
        elif stepped and time.perf_counter() - stepped_at[name] > PAGE_TIMEOUT_S:
            return  # missed: no page for the whole timeout
        await producer.send_and_wait(topic, body, key=key)
        tick += 1


async def measure_prom(params: Params, workdir: Path) -> dict[str, dict[str, Any]]:
    """Each requested Prometheus + Alertmanager setting: summary, scrapes, notifications."""
    out: dict[str, dict[str, Any]] = {}
    for name in params.prom_settings:
        setting: Setting = PROM_SIDES[name]
        rng = np.random.default_rng([params.seed, PROM_STREAM + len(out)])
        offsets = stagger(params.prom_trials, setting.cycle_s, rng)

        def value_at(series: str, stepped: bool, rng: np.random.Generator = rng) -> float:
            return series_value(rng, stepped)

        run = await measure_setting(setting, workdir / name, offsets, value_at, THRESHOLD)
        out[name] = {**summarize(run.latencies_s(), run.missed), **asdict(setting),
                     "scrapes": run.scrapes, "notifications": run.notifications}
    return out


async def measure(params: Params, bootstrap: str, redis_url: str, workdir: Path,
                  *, quick: bool = False) -> dict[str, Any]:
    """Every side against the given broker and Redis; the results document."""
    params.check()
    hot = await measure_hotpath(params, bootstrap, redis_url, workdir / "hotpath")
    results: dict[str, dict[str, Any]] = {"hotpath": {
        **summarize(hot.latencies_s, hot.missed), "false_pages": len(hot.early),
        "pages": hot.pages}}
    skipped = {s: "skipped in --quick (about 1.5 min)" for s in PROM_SIDES
               if s not in params.prom_settings}
    missing = missing_binaries()
    if missing:
        skipped |= {s: f"not installed: {', '.join(missing)}" for s in params.prom_settings}
    else:
        results |= await measure_prom(params, workdir)
    targets, guard = assess(results, skipped)
    return {
        "benchmark": "page_latency",
        "machine": machine_info(),
        "params": {**asdict(params), "quick": quick, "level": LEVEL, "step_factor": STEP_FACTOR,
                   "prom_threshold": THRESHOLD, "noise_frac": NOISE_FRAC,
                   "warm_ticks": WARM_TICKS, "page_timeout_s": PAGE_TIMEOUT_S},
        "results": results,
        "skipped": skipped,
        "targets": targets,
        "guard": guard,
        "guard_skipped": guard_skipped(skipped),
        "notes": list(NOTES),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.page_latency",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--trials", type=int, help="hotpath trials (default 24; quick 6)")
    p.add_argument("--prom-trials", type=int,
                   help="trials per Prometheus setting (default 12; quick 8)")
    p.add_argument("--history", type=int, help="backfilled points per series (default 120)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    add_run_options(p, RESULTS_DIR / "page_latency.json",
                    "CI run: fewer trials, and the 15 s Prometheus setting skipped")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    base = Params.quick() if args.quick else Params()
    given = {k: getattr(args, k) for k in ("trials", "prom_trials", "history")
             if getattr(args, k) is not None}
    try:
        params = replace(base, seed=args.seed, **given).check()
    except ValueError as e:
        parser.error(str(e))
    return run_and_report(
        args, "page-latency",
        lambda bootstrap, redis_url, tmp: measure(params, bootstrap, redis_url, tmp,
                                                  quick=args.quick),
        render, serves_here=True)


if __name__ == "__main__":
    raise SystemExit(main())
