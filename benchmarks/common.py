"""Helpers shared by the benchmarks: machine facts, real services, medians, JSON, tables.

Results are only comparable with the machine they ran on, so every JSON document carries
:func:`machine_info`. Benchmarks compare ratios measured in one run, never fixed times.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import uvloop

from hotpath.gc_tuning import tune_gc
from hotpath.services.kafka_broker import KafkaBroker, default_libs_dir, libs_ready
from hotpath.services.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"


def machine_info() -> dict[str, Any]:
    """What the figures depend on: cores, interpreter and the libraries on the path.

    >>> sorted(machine_info())
    ['aiokafka', 'cores', 'numpy', 'platform', 'python']
    """
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": metadata.version("numpy"),
        "aiokafka": metadata.version("aiokafka"),
        "platform": platform.platform(),
    }


Mark = tuple[float, float]  # (time.perf_counter(), time.process_time())


def mark() -> Mark:
    """Wall and process-CPU clocks read together: the two ends of a measurement."""
    return time.perf_counter(), time.process_time()


@dataclass(frozen=True, slots=True)
class Timing:
    """What one measurement counted, and the wall and process-CPU seconds it took.

    >>> t = Timing(count=50, wall_s=0.5, cpu_s=0.25)
    >>> t.rate(per_count=2), t.cpu_rate(per_count=2), t.to_dict("points")
    (200.0, 400.0, {'points': 50, 'wall_s': 0.5, 'cpu_s': 0.25})
    """

    count: int
    wall_s: float
    cpu_s: float

    @classmethod
    def since(cls, start: Mark, count: int) -> Timing:
        wall, cpu = mark()
        return cls(count, wall - start[0], cpu - start[1])

    def rate(self, per_count: int = 1) -> float:
        return self.count * per_count / self.wall_s

    def cpu_rate(self, per_count: int = 1) -> float:
        return self.count * per_count / self.cpu_s

    def to_dict(self, unit: str) -> dict[str, float]:
        return {unit: self.count, "wall_s": self.wall_s, "cpu_s": self.cpu_s}


async def mark_when(cond: Callable[[], bool], poll_s: float) -> Mark:
    """:func:`mark` at the first poll that finds ``cond()`` true.

    For events the measured code does not announce; polling costs one wake-up per
    ``poll_s`` and only until the event, so it barely touches the CPU figure.
    """
    while not cond():
        await asyncio.sleep(poll_s)
    return mark()


def target(name: str, value: float, goal: float, unit: str, *,
           higher_is_better: bool = True, **extra: Any) -> dict[str, Any]:
    """One entry of a result's ``targets`` list: what was measured against what was asked.

    >>> target("p99_ms", 12.5, 20.0, "ms", higher_is_better=False)
    {'name': 'p99_ms', 'value': 12.5, 'target': 20.0, 'unit': 'ms', 'met': True}
    >>> target("ratio", 0.5, 0.6, "x raw", case="point")["met"]
    False
    """
    met = value >= goal if higher_is_better else value <= goal
    return {"name": name, "value": value, "target": goal, "unit": unit, "met": bool(met),
            **extra}


def render_targets(doc: Mapping[str, Any]) -> str:
    """The document's targets as a table: what held, what did not.

    >>> print(render_targets({"targets": [target("p99_ms", 12.5, 20.0, "ms",
    ...                                          higher_is_better=False)]}))
    target  value   goal  unit  met
    ------  -----  -----  ----  ---
    p99_ms  12.50  20.00  ms    yes
    """
    def met(t: Mapping[str, Any]) -> str:
        return {True: "yes", False: "NO"}.get(t["met"], "not measured")
    return format_table(["target", "value", "goal", "unit", "met"],
                        [[t["name"], float(t["value"]) if t["value"] is not None else "-",
                          float(t["target"]), t["unit"], met(t)] for t in doc["targets"]])


def median(values: Sequence[float]) -> float:
    """Median of the repeats; robust to one run disturbed by the broker's GC or a neighbour.

    >>> median([3.0, 1.0, 2.0])
    2.0
    """
    return float(statistics.median(values))


def write_json(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` as indented JSON (paths become strings), creating the directory.

    >>> import tempfile
    >>> p = write_json(Path(tempfile.mkdtemp()) / "r" / "x.json", {"a": 1})
    >>> p.read_text()
    '{\\n  "a": 1\\n}\\n'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str) + b"\n")
    return path


def format_cell(v: object) -> str:
    """One table cell: floats of 100 and more whole with separators, smaller ones to 2 places.

    >>> format_cell(1234567.8), format_cell(0.25), format_cell(1500), format_cell("x")
    ('1,234,568', '0.25', '1,500', 'x')
    """
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned with thousands separators.

    >>> print(format_table(["case", "points/s"], [["point", 1234567.8], ["batch100", 0.25]]))
    case       points/s
    --------  ---------
    point     1,234,568
    batch100       0.25
    """

    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows)
               for i in range(len(headers))]

    def line(items: Sequence[str]) -> str:
        return "  ".join(s.rjust(w) if num else s.ljust(w)
                         for s, w, num in zip(items, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]),
                      *(line(r) for r in cells)])


def add_run_options(p: argparse.ArgumentParser, out: Path, quick_help: str) -> None:
    """The options every service-backed benchmark takes (the ``all`` runner passes them)."""
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    p.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    p.add_argument("--out", type=Path, default=out)


def run_and_report(args: argparse.Namespace, name: str,
                   measure: Callable[[str, str, Path], Coroutine[Any, Any, dict[str, Any]]],
                   render: Callable[[dict[str, Any]], str], *, serves_here: bool) -> int:
    """Start (or use) Kafka and Redis, ``measure(bootstrap, redis_url, workdir)`` on uvloop,
    print the table, write the JSON to ``args.out``. ``serves_here``: the benchmark runs
    ``serve()`` in this process, which then gets ``hotpath run``'s collector settings."""
    logging.basicConfig(level=logging.WARNING)
    if serves_here:
        tune_gc()
    with tempfile.TemporaryDirectory(prefix=f"hotpath-{name}-") as tmp, \
            services(Path(tmp), args.bootstrap, args.redis_url) as (bootstrap, redis_url):
        doc = uvloop.run(measure(bootstrap, redis_url, Path(tmp)))
    print(render(doc))
    print(f"wrote {write_json(args.out, doc)}")
    return 0


@contextmanager
def services(workdir: Path, bootstrap: str | None,
             redis_url: str | None) -> Iterator[tuple[str, str]]:
    """``(bootstrap, redis_url)``: the given ones, or a broker / redis-server started here.

    A started broker needs the Kafka jars; they are fetched with ``deploy/kafka/fetch.sh``
    the first time, as the test fixtures do. Services started here stop on exit.
    """
    with ExitStack() as stack:
        if bootstrap is None:
            libs = default_libs_dir()
            if not libs_ready(libs):
                subprocess.run([str(REPO / "deploy" / "kafka" / "fetch.sh"), str(libs)],
                               check=True, stdout=sys.stderr)
            bootstrap = stack.enter_context(KafkaBroker(workdir / "kafka", libs)).bootstrap
        if redis_url is None:
            redis_url = stack.enter_context(RedisServer(workdir / "redis")).url
        yield bootstrap, redis_url
