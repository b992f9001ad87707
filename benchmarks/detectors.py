"""Detector cost: series-updates/s of the default ensemble, against a pure-Python loop.

    python -m benchmarks.detectors [--quick] [--series 10000,100000,1000000] [--points N]
                                   [--python-points N] [--warm-points N] [--seed SEED]
                                   [--malloc both|default|tuned|inherit] [--out PATH]

The ensemble is the live one, built at run time by ``hotpath.runtime.make_ensemble`` from
``deploy/hotpath.yaml`` (static bounds set from the config's ``bounds``, as a partition does).
Per size, one seeded workload: every series is warmed past the longest member warm-up, then
batches shaped like the live loop (a random half of the series, capped at a full Kafka
batch of points, 1-4 time-ordered points each, noisy values with rare spikes) are timed
around ``Ensemble.update`` alone: wall and process-CPU time, minor page faults.

The same run then takes the ensemble's state into :mod:`benchmarks.pyref` (plain floats and
lists, one point at a time, the same math) and runs it over the first ``--python-points``
points of the timed batches: the Python rate is extrapolated per update from that sample,
and its scores are checked against the vectorised ones. Members without a reference are
named in the output and the JSON, and left out of the Python loop (which flatters Python).

State per series: the ensemble's ``export_state()`` bytes / series, the page's recent-values
window (``hotpath.series.RecentValues``, measured), and the series index (tracemalloc while
a ``SeriesIndex`` grows). Each size runs in a subprocess per malloc setting: glibc's default,
and ``tuned`` (:data:`TUNED_MALLOC`), which stops numpy's large temporaries from being
mmapped and unmapped on every call, the page faults that dominated an earlier profile.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from benchmarks.common import (
    REPO,
    RESULTS_DIR,
    Timing,
    format_table,
    machine_info,
    mark,
    write_json,
)
from benchmarks.pyref import reference_ensemble
from detectors.ensemble import Ensemble
from detectors.static_bounds import StaticBounds
from hotpath.config import Config, load_config
from hotpath.runtime import make_ensemble
from hotpath.series import RecentValues, SeriesIndex

CONFIG = REPO / "deploy" / "hotpath.yaml"
# 100 metrics per service like the throughput benchmark's batch messages; two of them are the
# example config's bounded metrics, so static bounds are set on 2% of the series.
METRICS = ("error_ratio", "cpu_utilization", *(f"m{j:03d}" for j in range(2, 100)))
LABELS = {"region": "eu-west-1"}
INTERVAL_S = 10.0  # a common scrape interval; each series gets a fixed phase inside it
MAX_POINTS = 4  # points per series per batch: 1..4, as a poll catches up on a few scrapes
TOUCHED_FRACTION = 0.5  # a batch holds a random half of a partition's series
# kafka.max_batch (5000 messages) x 100 metrics per batch message: the most points one
# live batch can carry, so large sizes are not measured on batches the loop never sees.
MAX_BATCH_POINTS = 500_000
NOISE_FRAC = 0.02  # gaussian noise, 2% of the series' level
SPIKE_RATE = 1e-4  # rare x3 spikes, so the alert and hysteresis paths run too
SPIKE_FACTOR = 3.0
# Untimed batches of the timed shape: the heap grows to the largest batch seen so far, and
# each new largest batch faults its fresh pages in once; a few first batches absorb most.
STEADY_BATCHES = 5
INDEX_SAMPLE = 100_000  # series registered under tracemalloc (it slows allocation ~3x)
T0 = 1.7e9
# MMAP: above glibc's dynamic threshold numpy's multi-MB temporaries are mmapped and every
# page of them faults on first touch, per call; 32 MiB (the most glibc 2.36 accepts) keeps
# the timed batches' temporaries (500k points x 8 B = 4 MB) on the heap. TRIM: 256 MiB keeps
# freed heap top for the next call instead of returning it to the kernel.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
MALLOC_MODES = ("default", "tuned")

Batch = tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]


@dataclass(frozen=True, slots=True)
class Params:
    """Sizes of one run.

    >>> Params.quick().series
    (1000, 5000)
    >>> Params(series=(0,)).check()
    Traceback (most recent call last):
    ...
    ValueError: --series sizes must be >= 100, got 0
    """

    series: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    points: int = 10_000_000  # timed points per size: 20+ batches even at 1M series
    python_points: int = 200_000  # about a second of the pure-Python loop
    warm_points: int | None = None  # per series; default: the longest member warm-up + 2
    seed: int = 11

    @classmethod
    def quick(cls) -> Params:
        """CI smoke sizes: a few seconds for both malloc settings."""
        return cls(series=(1000, 5000), points=20_000, python_points=2_000)

    def check(self) -> Params:
        """``self`` when every size is usable, else ValueError naming the option."""
        for n in self.series:
            if n < len(METRICS):
                raise ValueError(f"--series sizes must be >= {len(METRICS)}, got {n}")
        if self.points < 1 or self.python_points < 1:
            raise ValueError("--points and --python-points must be >= 1")
        if self.warm_points is not None and self.warm_points < 0:
            raise ValueError(f"--warm-points must be >= 0, got {self.warm_points}")
        return self


class Workload:
    """Seeded series: a level per series, a scrape phase, batches of time-ordered points.

    >>> wl = Workload(200, seed=1)
    >>> rows, ts, values = wl.batch(touched=50)
    >>> len(set(rows.tolist())), bool(np.all(np.diff(ts) >= 0)), 50 <= len(rows) <= 200
    (50, True, True)
    """

    def __init__(self, n_series: int, seed: int) -> None:
        self.n = n_series
        self._rng = np.random.default_rng(seed)
        metric = np.arange(n_series) % len(METRICS)
        self.level = self._rng.uniform(10.0, 1000.0, n_series)
        self.level[metric == 0] = self._rng.uniform(0.001, 0.05, int((metric == 0).sum()))
        self.level[metric == 1] = self._rng.uniform(20.0, 80.0, int((metric == 1).sum()))
        self._phase = self._rng.uniform(0.0, INTERVAL_S, n_series)
        self._batches = 0

    def batch(self, touched: int, points: int | None = None) -> Batch:
        """``touched`` random series with 1..4 points each (``points`` each if given)."""
        rng = self._rng
        subset = (np.arange(self.n) if touched >= self.n
                  else np.sort(rng.choice(self.n, touched, replace=False)))
        k = (np.full(len(subset), points) if points is not None
             else rng.integers(1, MAX_POINTS + 1, len(subset)))
        rows = np.repeat(subset, k)
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(k) - k, k)
        t0 = T0 + self._batches * MAX_POINTS * INTERVAL_S
        self._batches += 1
        ts = t0 + rank * INTERVAL_S + self._phase[rows]
        values = self.level[rows] * (1.0 + NOISE_FRAC * rng.standard_normal(len(rows)))
        values[rng.random(len(rows)) < SPIKE_RATE] *= SPIKE_FACTOR
        order = np.argsort(ts, kind="stable")  # a partition delivers points in time order
        return rows[order].astype(np.intp), ts[order], values[order]


def series_names(row: int) -> tuple[str, str, dict[str, str]]:
    """(service, metric, labels) of a workload row; fresh objects, as a decoder makes them.

    >>> series_names(201)
    ('svc-00002', 'cpu_utilization', {'region': 'eu-west-1'})
    """
    service, j = divmod(row, len(METRICS))
    return f"svc-{service:05d}", METRICS[j].encode().decode(), dict(LABELS)


def build_ensemble(cfg: Config, n_series: int) -> Ensemble:
    """The live ensemble for ``n_series`` rows, static bounds from the config's ``bounds``."""
    ens = make_ensemble(cfg)
    ens.resize(n_series)
    static = [d for d in ens.detectors if isinstance(d, StaticBounds)]
    for j, metric in enumerate(METRICS):
        bound = next((b for b in cfg.detectors.bounds
                      if b.metric == metric and b.service == "*"), None)
        if bound is None:
            continue
        rows = np.arange(j, n_series, len(METRICS))
        for det in static:
            det.set_bounds(rows, np.full(len(rows), np.nan if bound.lower is None else bound.lower),
                           np.full(len(rows), np.nan if bound.upper is None else bound.upper))
    return ens


def longest_warmup(ens: Ensemble) -> int:
    """The largest ``warmup`` (points) any member declares; 0 if none does."""
    return max(int(getattr(d, "warmup", 0)) for d in ens.detectors)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def state_bytes(ens: Ensemble, n_series: int) -> dict[str, Any]:
    """Bytes per series: ensemble state, recent-values window, series index (measured)."""
    fields = {k: v.nbytes / n_series for k, v in ens.export_state().items()}
    tracemalloc.start()
    recent = RecentValues()
    recent.push(np.array([n_series - 1]), np.array([0.0]))  # grows to hold every row
    recent_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    sample = min(n_series, INDEX_SAMPLE)
    names = [series_names(r) for r in range(sample)]
    tracemalloc.start()
    index = SeriesIndex()
    for service, metric, labels in names:
        index.add(service, metric, labels)
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # The names were allocated before tracing; the index keeps them, so count them once.
    name_bytes = sum(sys.getsizeof(s) + sys.getsizeof(m) for s, m, _ in names) / sample
    ensemble = sum(fields.values())
    recent_row = recent_bytes / recent.capacity
    index_row = index_bytes / sample + name_bytes
    return {
        "ensemble_bytes_per_series": ensemble, "ensemble_fields": fields,
        "recent_window": recent.window, "recent_bytes_per_series": recent_row,
        "recent_allocated_bytes_per_series": recent_bytes / n_series,
        "index_bytes_per_series": index_row, "index_sample_series": sample,
        "total_bytes_per_series": ensemble + recent_row + index_row,
    }


def measure_size(ens: Ensemble, params: Params) -> dict[str, Any]:
    """Warm ``ens``, time it, then time its pure-Python reference on a sample of the points."""
    n_series = ens.n_series
    wl = Workload(n_series, params.seed)
    warm = (params.warm_points if params.warm_points is not None
            else longest_warmup(ens) + 2)
    for _ in range(math.ceil(warm / MAX_POINTS)):
        ens.update(*wl.batch(n_series, points=MAX_POINTS))
    touched = min(int(n_series * TOUCHED_FRACTION),
                  MAX_BATCH_POINTS * 2 // (MAX_POINTS + 1))  # mean 2.5 points per series
    for _ in range(STEADY_BATCHES):
        ens.update(*wl.batch(touched))
    ref, missing = reference_ensemble(ens)
    covered = [j for j, d in enumerate(ens.detectors) if d.name not in missing]
    sample: list[Batch] = []
    sample_scores: list[npt.NDArray[np.float64]] = []
    taken = batches = alerts = faults = 0
    wall = cpu = 0.0
    while taken < params.points:
        b = wl.batch(touched)
        faults -= minor_faults()
        start = mark()
        out = ens.update(*b)
        t = Timing.since(start, len(b[0]))
        faults += minor_faults()
        wall, cpu = wall + t.wall_s, cpu + t.cpu_s
        taken, batches, alerts = taken + t.count, batches + 1, alerts + int(out.alert.sum())
        have = sum(len(s[0]) for s in sample)
        if have < params.python_points:
            cut = params.python_points - have  # a prefix of a time-ordered batch: fair
            sample.append((b[0][:cut], b[1][:cut], b[2][:cut]))
            sample_scores.append(out.scores[:cut, covered])
    vec = Timing(taken, wall, cpu)
    rows = np.concatenate([s[0] for s in sample]).tolist()
    ts = np.concatenate([s[1] for s in sample]).tolist()
    values = np.concatenate([s[2] for s in sample]).tolist()
    update = ref.update
    start = mark()
    answers = [update(r, t, v) for r, t, v in zip(rows, ts, values, strict=True)]
    py = Timing.since(start, len(rows))
    diff = np.abs(np.array([a.scores for a in answers]) - np.concatenate(sample_scores))
    return {
        "series": n_series, "warm_points_per_series": warm, "batches": batches,
        "touched_series_per_batch": touched, "points_per_batch": taken / batches,
        "alerts": alerts, "minor_faults_per_batch": faults / batches,
        "vectorised": {**vec.to_dict("points"), "updates_per_s": vec.rate(),
                       "updates_per_cpu_s": vec.cpu_rate()},
        "python": {**py.to_dict("points"), "updates_per_s": py.rate(),
                   "updates_per_cpu_s": py.cpu_rate(), "extrapolated_from_sample": True,
                   "detectors": [d.name for d in ref.detectors],
                   "no_reference": list(missing),
                   "max_abs_score_diff": float(diff.max()) if diff.size else 0.0},
        "speedup_cpu": vec.cpu_rate() / py.cpu_rate(),
        "speedup_wall": vec.rate() / py.rate(),
        "state": state_bytes(ens, n_series),
    }


def run_sizes(params: Params, config: Path) -> list[dict[str, Any]]:
    """Every size in this process (a worker: its malloc setting is its environment's)."""
    cfg = load_config(config)
    return [measure_size(build_ensemble(cfg, n), params) for n in params.series]


def malloc_env(mode: str) -> dict[str, str]:
    """The child environment of ``mode``: glibc defaults, or :data:`TUNED_MALLOC` set."""
    env = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC}
    return env | TUNED_MALLOC if mode == "tuned" else env


def worker_argv(params: Params, config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.detectors",
            "--series", ",".join(map(str, params.series)), "--points", str(params.points),
            "--python-points", str(params.python_points), "--seed", str(params.seed),
            *(["--warm-points", str(params.warm_points)] if params.warm_points is not None
              else []),
            "--config", str(config), "--worker-out", str(out)]


def run_worker(mode: str, params: Params, config: Path) -> dict[str, Any]:
    """One malloc setting in a fresh interpreter; its results and the exact command."""
    with tempfile.TemporaryDirectory(prefix="hotpath-bench-detectors-") as tmp:
        out = Path(tmp) / "results.json"
        argv = worker_argv(params, config, out)
        subprocess.run(argv, env=malloc_env(mode), cwd=REPO, check=True)
        results = orjson.loads(out.read_bytes())["results"]
    set_env = TUNED_MALLOC if mode == "tuned" else {}
    unset = "" if mode == "tuned" else "env " + " ".join(f"-u {k}" for k in TUNED_MALLOC) + " "
    command = unset + " ".join([*(f"{k}={v}" for k, v in set_env.items()),
                                shlex.join(argv[:-2])])
    return {"malloc": mode, "env": set_env, "command": command, "results": results}


def _target(name: str, run: dict[str, Any], value_of: Any, target: float, unit: str,
            higher_is_better: bool = True) -> dict[str, Any]:
    row = min(run["results"], key=lambda r: abs(r["series"] - 100_000))
    value = float(value_of(row))
    judged = row["series"] == 100_000
    met = (value >= target if higher_is_better else value <= target) if judged else None
    doc = {"name": name, "value": value, "target": target, "unit": unit, "met": met,
           "series": row["series"], "malloc": run["malloc"]}
    if not judged:
        doc["note"] = f"measured at {row['series']} series, not 100000: not judged"
    return doc


def targets(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, judged on the default-malloc run, then repeated per other run."""
    ordered = sorted(runs, key=lambda r: r["malloc"] != "default")
    out = []
    for i, run in enumerate(ordered):
        suffix = "" if i == 0 else f"_malloc_{run['malloc']}"
        out += [
            _target(f"updates_per_s_100k{suffix}", run,
                    lambda r: r["vectorised"]["updates_per_cpu_s"], 5e6, "series-updates/s/core"),
            _target(f"speedup_vs_python_100k{suffix}", run, lambda r: r["speedup_cpu"], 50.0,
                    "x (cpu time)"),
            _target(f"state_bytes_per_series{suffix}", run,
                    lambda r: r["state"]["total_bytes_per_series"], 1024.0, "bytes/series",
                    higher_is_better=False),
        ]
    return out


def guard(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The CI guard's ratio: vectorised ÷ pure-Python CPU rate, same run, largest size of the
    default-malloc run (or the first run when only another setting was measured)."""
    run = next((r for r in runs if r["malloc"] == "default"), runs[0])
    row = max(run["results"], key=lambda r: r["series"])
    return {"speedup_vs_python": float(row["speedup_cpu"])}


def render(doc: dict[str, Any]) -> str:
    """One table per malloc setting, the notes the figures need, the targets."""
    lines = [f"detectors: default ensemble {doc['ensemble']['detectors']} from "
             f"{doc['ensemble']['config']}; {doc['machine']['cores']} cores, python "
             f"{doc['machine']['python']}, numpy {doc['machine']['numpy']}, "
             f"{doc['machine']['libc']}"]
    for run in doc["runs"]:
        lines += ["", f"malloc {run['malloc']}: {run['command']}", format_table(
            ["series", "timed pts", "pts/batch", "vec upd/s", "vec upd/cpu-s", "py upd/cpu-s",
             "speedup", "faults/batch", "state B/series"],
            [[r["series"], r["vectorised"]["points"], r["points_per_batch"],
              r["vectorised"]["updates_per_s"], r["vectorised"]["updates_per_cpu_s"],
              r["python"]["updates_per_cpu_s"], r["speedup_cpu"], r["minor_faults_per_batch"],
              r["state"]["total_bytes_per_series"]] for r in run["results"]])]
    ens = doc["ensemble"]
    lines += ["", f"python: a per-point pure-Python loop (benchmarks/pyref/) over the first "
              f"{doc['params']['python_points']:,} timed points per size, rate extrapolated "
              f"per update; covers {ens['python_reference']} + combination + hysteresis."]
    if ens["no_python_reference"]:
        lines.append(f"NO PYTHON REFERENCE for {ens['no_python_reference']}: left out of the "
                     "Python loop, so the speedup is understated by their cost.")
    first = doc["runs"][0]["results"]
    for r in first:
        s = r["state"]
        lines.append(f"state @ {r['series']:,}: ensemble {s['ensemble_bytes_per_series']:.0f}"
                     f" + recent window {s['recent_bytes_per_series']:.0f}"
                     f" + index {s['index_bytes_per_series']:.0f} B/series")
    lines += ["", format_table(["target", "value", "target", "met", "malloc"],
                               [[t["name"], t["value"], t["target"], str(t["met"]), t["malloc"]]
                                for t in doc["targets"]])]
    return "\n".join(lines)


def document(params: Params, config: Path, runs: list[dict[str, Any]],
             quick: bool) -> dict[str, Any]:
    ens = make_ensemble(load_config(config))
    ref, missing = reference_ensemble(ens)
    return {
        "benchmark": "detectors",
        "machine": {**machine_info(), "libc": " ".join(platform.libc_ver())},
        "params": {**asdict(params), "quick": quick, "interval_s": INTERVAL_S,
                   "max_points_per_series_per_batch": MAX_POINTS,
                   "touched_fraction": TOUCHED_FRACTION, "max_batch_points": MAX_BATCH_POINTS,
                   "noise_frac": NOISE_FRAC, "spike_rate": SPIKE_RATE},
        "ensemble": {"config": str(config), "detectors": list(ens.detector_names),
                     "python_reference": [d.name for d in ref.detectors],
                     "no_python_reference": list(missing)},
        "runs": runs,
        "targets": targets(runs),
        "guard": guard(runs),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.detectors",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--series", help="comma-separated sizes (default 10000,100000,1000000)")
    p.add_argument("--points", type=int, help="timed points per size (default 10000000)")
    p.add_argument("--python-points", type=int, help="pure-Python sample (default 200000)")
    p.add_argument("--warm-points", type=int, help="warm-up points per series")
    p.add_argument("--seed", type=int)
    p.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run")
    p.add_argument("--malloc", choices=("both", *MALLOC_MODES, "inherit"), default="both",
                   help="glibc malloc settings to run under (inherit: this process, as is)")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "detectors.json")
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    given: dict[str, Any] = {k: getattr(args, k) for k in
                             ("points", "python_points", "warm_points", "seed")
                             if getattr(args, k) is not None}
    try:
        if args.series is not None:
            given["series"] = tuple(int(s) for s in args.series.split(","))
        params = replace(Params.quick() if args.quick else Params(), **given).check()
    except ValueError as e:
        parser.error(str(e))
    if args.worker_out is not None:
        write_json(args.worker_out, {"results": run_sizes(params, args.config)})
        return 0
    if args.malloc == "inherit":
        env = {k: os.environ[k] for k in TUNED_MALLOC if k in os.environ}
        runs = [{"malloc": "inherit", "env": env, "command": shlex.join(sys.argv),
                 "results": run_sizes(params, args.config)}]
    else:
        modes = MALLOC_MODES if args.malloc == "both" else (args.malloc,)
        runs = [run_worker(m, params, args.config) for m in modes]
    doc = document(params, args.config, runs, args.quick)
    print(render(doc))
    print(f"wrote {write_json(args.out, doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
