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
"""

from __future__ import annotations

import argparse
import asyncio
import math
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
    format_table,
    machine_info,
    mark_when,
    run_and_report,
    target,
)
from benchmarks.promstack import DEFAULT, FAST, Setting, measure_setting, missing_binaries
from benchmarks.throughput import BenchmarkError, bench_config, produce, race_serve
from hotpath.config import Config
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.runtime import Running, serve
from hotpath.services.kafka_admin import create_topic

# A p99 latency in ms of a healthy service: any level works, the detectors are scale-free.
LEVEL = 100.0
# Far outside the noise (2 % of the level), so that every detector and the Prometheus rule
# see the same unmistakable incident: the benchmark times paging, not detection quality.
STEP_FACTOR = 3.0
THRESHOLD = 200.0  # halfway between the level and the step: noise never crosses it
NOISE_FRAC = 0.02  # as benchmarks.throughput: the steady-state workload's noise
NOISE_CLIP_SIGMA = 1.5  # as benchmarks.throughput: no noise point looks like an incident
# No bounds and, for the trial services, no remediation rule in the shipped config: the
# default ensemble decides and a page is the only outcome.
METRIC = "http_latency_p99_ms"
LABELS = {"region": "eu-west-1"}
# As benchmarks.throughput: a production topic has several partitions, so the measured
# path includes the processor's per-partition batches, state and offsets.
PARTITIONS = 4
# The level-shift detector scores nothing before 50 points; 60 is the least history that
# gives it a few scored points, the default 120 (Params.history) a settled baseline for it
# and the spike detector's jump scale.
MIN_HISTORY = 60
# Live points before the first possible step: the hot path sees the live cadence first.
WARM_TICKS = 3
# Steps at least this far apart, so that each page is measured alone, not queued behind
# another trial's.
MIN_SPACING_S = 2.0
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
MAX_TRIALS = 100  # series are named with two digits
DEFAULT_SEED = 7  # as benchmarks.throughput
# Seed streams (with the seed): the series use 0..MAX_TRIALS-1, the step schedule and each
# Prometheus setting have their own, so that changing one size never reshuffles another.
SCHEDULE_STREAM = 1_000_001
PROM_STREAM = 2_000_000
PROM_SIDES = {s.name: s for s in (DEFAULT, FAST)}


@dataclass(frozen=True, slots=True)
class Params:
    """Sizes of one run.

    >>> Params(trials=0).check()
    Traceback (most recent call last):
    ...
    ValueError: --trials 0 must be in 1..100
    >>> Params(history=10).check()
    Traceback (most recent call last):
    ...
    ValueError: --history 10 must be at least 60 (the detectors' warm-up)
    """

    trials: int = 24
    prom_trials: int = 12
    history: int = 120
    seed: int = DEFAULT_SEED
    prom_settings: tuple[str, ...] = ("prom_default", "prom_fast")

    @classmethod
    def quick(cls) -> Params:
        """CI sizes: about a minute with the broker's start; the 15 s setting is skipped."""
        return cls(trials=6, prom_trials=8, prom_settings=("prom_fast",))

    def check(self) -> Params:
        for name, n in (("--trials", self.trials), ("--prom-trials", self.prom_trials)):
            if not 1 <= n <= MAX_TRIALS:
                raise ValueError(f"{name} {n} must be in 1..{MAX_TRIALS}")
        if self.history < MIN_HISTORY:
            raise ValueError(f"--history {self.history} must be at least {MIN_HISTORY} "
                             "(the detectors' warm-up)")
        return self


def series_value(rng: np.random.Generator, stepped: bool) -> float:
    """One point: the level (×3 once stepped) times clipped gaussian noise.

    >>> rng = np.random.default_rng(1)
    >>> 97 <= series_value(rng, False) <= 103, 291 <= series_value(rng, True) <= 309
    (True, True)
    """
    noise = float(np.clip(rng.standard_normal(), -NOISE_CLIP_SIGMA, NOISE_CLIP_SIGMA))
    return LEVEL * (STEP_FACTOR if stepped else 1.0) * (1.0 + NOISE_FRAC * noise)


def stagger(n: int, window_s: float, rng: np.random.Generator) -> list[float]:
    """``n`` offsets in ``[0, window_s)``, one uniformly in each of ``n`` equal slots.

    Each step's phase against a scrape or poll cycle is random, yet no two crowd together.

    >>> offs = stagger(4, 8.0, np.random.default_rng(3))
    >>> [int(o // 2) for o in offs]
    [0, 1, 2, 3]
    """
    slot = window_s / n
    return [(i + float(rng.uniform())) * slot for i in range(n)]


def step_spacing_s(storm_max_per_min: int | None) -> float:
    """Seconds between steps so that no minute holds more pages than the storm threshold.

    One slot per step; two spare for steps at the ends of two adjacent slots.

    >>> round(step_spacing_s(20), 2), step_spacing_s(None), step_spacing_s(3)
    (3.33, 2.0, 60.0)
    """
    if storm_max_per_min is None:
        return MIN_SPACING_S
    return max(MIN_SPACING_S, 60.0 / max(1, storm_max_per_min - 2))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: a value that was measured (with few trials, p99 is the max).

    >>> percentile([5.0, 1.0, 3.0, 2.0], 50), percentile([5.0, 1.0, 3.0, 2.0], 99)
    (2.0, 5.0)
    """
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def summarize(latencies_s: Sequence[float], missed: int) -> dict[str, Any]:
    """n, misses and p50/p99/max in ms (None when no trial paged).

    >>> summarize([0.010, 0.020, 0.030], missed=1)
    {'n': 3, 'missed': 1, 'p50_ms': 20.0, 'p99_ms': 30.0, 'max_ms': 30.0}
    """
    ms = [x * 1000 for x in latencies_s]
    stats = {k: (round(percentile(ms, q), 3) if ms else None)
             for k, q in (("p50_ms", 50), ("p99_ms", 99), ("max_ms", 100))}
    return {"n": len(ms), "missed": missed, **stats}


def ratio(slow: float | None, fast: float | None) -> float | None:
    """How many times faster ``fast`` is (None when either side was not measured).

    >>> ratio(1500.0, 30.0), ratio(None, 30.0)
    (50.0, None)
    """
    return None if slow is None or fast is None or fast <= 0 else slow / fast


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
            spacing = step_spacing_s(cfg.delivery.storm_max_per_min)
            offsets = stagger(len(names), len(names) * spacing, sched)
            phases = sched.uniform(size=len(names)).tolist()
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
            await producer.start()
            try:
                start = time.perf_counter() + LIVE_LEAD_S
                await race_serve(task, asyncio.gather(*[
                    _publish(producer, topic, name, rng,
                             start + phase, WARM_TICKS + int(offset), stepped_at, arrived)
                    for name, rng, phase, offset in zip(names, rngs, phases, offsets,
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


def guard_name(side: str) -> str:
    """The guard ratio of a Prometheus side: its median over hotpath's.

    >>> guard_name("prom_fast")
    'prom_fast_over_hotpath'
    """
    return f"{side}_over_hotpath"


def guard_skipped(skipped: dict[str, str]) -> dict[str, str]:
    """The guard ratios a run did not measure by design (side → why), with the reason.

    Every skipped side's ratio is listed, floor or not (``prom_default`` has none: --quick
    skips it); the guard reports those with a floor as skipped, not failed. A side that ran
    but never paged is not here: its missing ratio fails the guard.

    >>> guard_skipped({"prom_default": "skipped in --quick"})
    {'prom_default_over_hotpath': 'skipped in --quick'}
    """
    return {guard_name(side): why for side, why in skipped.items()}


def _unmeasured(name: str, goal: float, unit: str, why: str) -> dict[str, Any]:
    return {"name": name, "value": None, "target": goal, "unit": unit, "met": None,
            "note": why}


def assess(results: dict[str, dict[str, Any]], skipped: dict[str, str]
           ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The issue's three targets and the guard ratios, from the per-side summaries.

    A side that was not measured (``skipped``: side → why) leaves its target ``met: null``
    with the reason, and no guard ratio.

    >>> hot = {"n": 5, "missed": 0, "p50_ms": 20.0, "p99_ms": 40.0}
    >>> fast = {"n": 5, "missed": 0, "p50_ms": 1000.0, "p99_ms": 1600.0}
    >>> targets, guard = assess({"hotpath": hot, "prom_fast": fast},
    ...                         {"prom_default": "skipped in --quick"})
    >>> [(t["name"], t["met"]) for t in targets]
    [('deviation_to_page_p99_ms', True), ('speedup_vs_prom_default', None), \
('speedup_vs_prom_fast', True)]
    >>> guard
    {'prom_fast_over_hotpath': 50.0}
    """
    hot = results["hotpath"]
    p99 = hot["p99_ms"]
    first = target("deviation_to_page_p99_ms", p99 if p99 is not None else math.inf, 100.0,
                   "ms", higher_is_better=False, n=hot["n"], missed=hot["missed"])
    if hot["missed"] or p99 is None:
        first |= {"met": False, "note": f"{hot['missed']} trial(s) never paged"}
    targets = [first]
    guard: dict[str, float] = {}
    for side, goal in (("prom_default", 300.0), ("prom_fast", 8.0)):
        name, unit = f"speedup_vs_{side}", "x (ratio of medians)"
        if side not in results:
            targets.append(_unmeasured(name, goal, unit, skipped.get(side, "not measured")))
            continue
        r50 = ratio(results[side]["p50_ms"], hot["p50_ms"])
        r99 = ratio(results[side]["p99_ms"], hot["p99_ms"])
        if r50 is None:
            targets.append(_unmeasured(name, goal, unit, _no_ratio(results, side)))
            continue
        targets.append(target(name, r50, goal, unit, p99_ratio=r99))
        guard[guard_name(side)] = r50
    return targets, guard


def _no_ratio(results: dict[str, dict[str, Any]], side: str) -> str:
    """Why ``side`` and hotpath give no ratio of medians: the side(s) that never paged.

    >>> _no_ratio({"hotpath": {"p50_ms": None}, "prom_fast": {"p50_ms": 900.0}}, "prom_fast")
    'hotpath: no trial paged'
    """
    silent = [s for s in ("hotpath", side) if results[s]["p50_ms"] is None]
    if not silent:
        return f"hotpath's p50 of {results['hotpath']['p50_ms']} ms gives no ratio"
    return f"{' and '.join(silent)}: no trial paged"


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
        "notes": [
            "hotpath: from just before the producer's send of the first stepped point to the "
            "first page of the incident at a local webhook receiver; serve() shares one event "
            "loop with the producer and the receiver.",
            "prometheus: from the first instant the exporter serves the stepped value to "
            "Alertmanager's first webhook for the series; the rule is a static threshold with "
            "for: 0s, the fastest Prometheus can page, which favours Prometheus.",
            "within one Prometheus process the scrape and evaluation phases are fixed (hashed "
            "offsets), so prom_fast's median moves between runs with their lag (0.6-1.2 s "
            "seen) while trials of one run spread only over the step's phase.",
            "speed-ups are ratios of medians; p99 ratios are given as p99_ratio.",
            "percentiles are nearest-rank over few trials: p99 is the slowest trial.",
            "2 shared cores: the Kafka JVM, redis-server, Prometheus, Alertmanager and the "
            "processor share them; figures compare only within one run.",
        ],
    }


def render(doc: dict[str, Any]) -> str:
    """The sides as a table, then the targets."""
    res = doc["results"]
    hot = res["hotpath"]["p50_ms"]
    rows = [[side, r["n"], r["missed"], *(r[k] if r[k] is not None else "-"
                                          for k in ("p50_ms", "p99_ms", "max_ms")),
             "-" if side == "hotpath" else f"{ratio(r['p50_ms'], hot) or 0:,.1f}x"]
            for side, r in res.items()]
    rows += [[side, 0, 0, "-", "-", "-", why] for side, why in doc["skipped"].items()]
    head = (f"page_latency: deviation→page, nearest-rank; {doc['machine']['cores']} cores, "
            f"python {doc['machine']['python']}")
    lines = [f"  {t['name']}: {t['value'] if t['value'] is None else round(t['value'], 2)} "
             f"(target {t['target']} {t['unit']}) met={t['met']}" for t in doc["targets"]]
    return "\n".join([head, format_table(
        ["side", "n", "missed", "p50 ms", "p99 ms", "max ms", "p50 speed-up"], rows),
        "targets:", *lines])


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
