"""page_latency's pure parts: what a trial is and what the trials add up to.

A trial is one series stepping from its level to 3× it (:func:`series_value`); the hot path's
steps are staggered over slots spaced under the page-storm threshold, each series at its own
phase in the second (:func:`live_schedule`), all from seeded generators. The trials add up to
nearest-rank percentiles per side (:func:`summarize`), the issue's targets and the guard
ratios of medians (:func:`assess`, :func:`guard_skipped`), the document's notes and its
table (:func:`render`). :mod:`benchmarks.page_latency` does the measuring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.common import format_table, target

# A p99 latency in ms of a healthy service: any level works, the detectors are scale-free.
LEVEL = 100.0
# Far outside the noise (2 % of the level), so that every detector and the Prometheus rule
# see the same unmistakable incident: the benchmark times paging, not detection quality.
STEP_FACTOR = 3.0
THRESHOLD = 200.0  # halfway between the level and the step: noise never crosses it
NOISE_FRAC = 0.02  # as benchmarks.throughput: the steady-state workload's noise
NOISE_CLIP_SIGMA = 1.5  # as benchmarks.throughput: no noise point looks like an incident
# The level-shift detector scores nothing before 50 points; 60 is the least history that
# gives it a few scored points, the default 120 (Params.history) a settled baseline for it
# and the spike detector's jump scale.
MIN_HISTORY = 60
# Live points before the first possible step: the hot path sees the live cadence first.
WARM_TICKS = 3
# Steps at least this far apart, so that each page is measured alone, not queued behind
# another trial's.
MIN_SPACING_S = 2.0

MAX_TRIALS = 100  # series are named with two digits
DEFAULT_SEED = 7  # as benchmarks.throughput
# Seed streams (with the seed): the series use 0..MAX_TRIALS-1, the step schedule and each
# Prometheus setting have their own, so that changing one size never reshuffles another.
SCHEDULE_STREAM = 1_000_001
PROM_STREAM = 2_000_000


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


def live_schedule(n: int, storm_max_per_min: int | None,
                  rng: np.random.Generator) -> list[tuple[float, int]]:
    """Per series: its phase in the second (0..1) and the live tick of its step.

    Steps are staggered over ``n`` slots of :func:`step_spacing_s`, after ``WARM_TICKS``.

    >>> [(round(p, 2), t) for p, t in live_schedule(3, None, np.random.default_rng(3))]
    [(0.58, 3), (0.09, 5), (0.43, 8)]
    """
    offsets = stagger(n, n * step_spacing_s(storm_max_per_min), rng)
    phases = rng.uniform(size=n).tolist()
    return [(phase, WARM_TICKS + int(offset))
            for phase, offset in zip(phases, offsets, strict=True)]


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


# The document's notes: how each side is timed, and what its figures compare with.
NOTES = (
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
)


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
