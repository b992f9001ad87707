"""Run the benchmarks: ``python -m benchmarks all [--quick] [--only a,b] [--skip-readme]``.

``all`` starts one Apache Kafka broker and one redis-server (or uses ``--bootstrap`` /
``--redis-url``), then runs each benchmark in its own interpreter — its garbage-collector
and allocator settings, memory and event loop are its own — in this order: detectors,
throughput, latency, page_latency, scaleout. Each prints its table and writes its JSON.

- Full run: ``benchmarks/results/<name>.json`` and the performance table in README.md.
- ``--quick``: the CI guard. Short sizes, JSON under ``benchmarks/results/quick/``, README
  untouched; the same-run ratios each document carries under ``guard`` are checked against
  ``benchmarks/floors.toml`` and the exit status is 1 if one is below its floor.

A full run checks the floors too. Targets the issue sets are reported (the ``targets`` list
of every document, the README table), never turned into an exit status: a target is what
the product aims at on a given machine, a floor is what CI holds it to.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import REPO, RESULTS_DIR, format_table, machine_info, services
from benchmarks.guard import FLOORS, Check, FloorsError, check, load_floors
from benchmarks.readme_table import ReadmeError, section, update, versions

# name -> needs the Kafka broker and Redis (gets --bootstrap and --redis-url)
BENCHMARKS: dict[str, bool] = {
    "detectors": False,
    "throughput": True,
    "latency": True,
    "page_latency": True,
    "scaleout": True,
}
README = REPO / "README.md"
QUICK_DIR = RESULTS_DIR / "quick"
# A benchmark that runs longer than this is stuck, not slow (full runs take minutes).
TIMEOUT_S = {True: 15 * 60, False: 60 * 60}  # quick -> seconds


class RunError(Exception):
    """A benchmark process failed or wrote no results: the message names it and why."""


def _selection(only: str | None) -> list[str]:
    """The benchmarks to run, in the canonical order.

    >>> _selection("scaleout,throughput")
    ['throughput', 'scaleout']
    >>> _selection("nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --only: unknown benchmark 'nope' (known: detectors, throughput, latency, ...)
    """
    if only is None:
        return list(BENCHMARKS)
    asked = [s.strip() for s in only.split(",") if s.strip()]
    for name in asked:
        if name not in BENCHMARKS:
            raise ValueError(f"--only: unknown benchmark {name!r} "
                             f"(known: {', '.join(BENCHMARKS)})")
    return [b for b in BENCHMARKS if b in asked]


def _argv(name: str, out: Path, quick: bool, bootstrap: str | None,
          redis_url: str | None) -> list[str]:
    argv = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out)]
    if quick:
        argv.append("--quick")
    if BENCHMARKS[name]:
        assert bootstrap is not None and redis_url is not None
        argv += ["--bootstrap", bootstrap, "--redis-url", redis_url]
    return argv


def run_one(name: str, out: Path, quick: bool, bootstrap: str | None,
            redis_url: str | None) -> dict[str, Any]:
    """Run one benchmark in a fresh interpreter (its output goes to ours); its document."""
    out.unlink(missing_ok=True)
    argv = _argv(name, out, quick, bootstrap, redis_url)
    print(f"\n===== {name} =====\n$ {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=REPO, timeout=TIMEOUT_S[quick])
    except subprocess.TimeoutExpired as e:
        raise RunError(f"{name}: still running after {TIMEOUT_S[quick]} s") from e
    if proc.returncode != 0:
        raise RunError(f"{name}: exited with status {proc.returncode}")
    if not out.is_file():
        raise RunError(f"{name}: exited 0 but wrote no {out}")
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
    return doc


def render_checks(checks: list[Check]) -> str:
    """The guard's verdicts as a table."""
    return format_table(["benchmark", "ratio", "value", "floor", "verdict"],
                        [[c.benchmark, c.name, "-" if c.value is None else c.value, c.floor,
                          c.reason] for c in checks])


def run_all(args: argparse.Namespace) -> int:
    names = _selection(args.only)
    floors = load_floors(args.floors)
    out_dir = args.results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    docs: dict[str, dict[str, Any] | None] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hotpath-benchmarks-") as tmp, ExitStack() as stack:
        endpoints: tuple[str | None, str | None] = (None, None)
        if any(BENCHMARKS[n] for n in names):
            endpoints = stack.enter_context(services(Path(tmp), args.bootstrap, args.redis_url))
        bootstrap, redis_url = endpoints
        for name in names:
            try:
                docs[name] = run_one(name, out_dir / f"{name}.json", args.quick,
                                     bootstrap, redis_url)
            except RunError as e:
                failures.append(str(e))
                docs[name] = {}  # its floors then report "not measured"
    checks = check(docs, floors)
    print("\n===== guard: same-run ratios against benchmarks/floors.toml =====")
    print(render_checks(checks) if checks else "(no guarded ratio among these benchmarks)")
    measured = {n: d for n, d in docs.items() if d}
    if not args.quick and not args.skip_readme and measured:
        body = section(measured, machine_info(), versions(),
                       dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
        try:
            README.write_text(update(README.read_text(encoding="utf-8"), body),
                              encoding="utf-8")
        except ReadmeError as e:
            failures.append(str(e))
        else:
            print(f"wrote the performance table in {README}")
    bad = [c for c in checks if not c.ok]
    for c in bad:
        failures.append(f"{c.benchmark}.{c.name} {c.reason}")
    if failures:
        print("\nFAILED:\n" + "\n".join(f"- {f}" for f in failures), file=sys.stderr)
        return 1
    print("\nall benchmarks ran; every guarded ratio is above its floor")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("all", help="run the benchmarks, write JSON and the README table")
    a.add_argument("--quick", action="store_true",
                   help="short CI run: JSON under benchmarks/results/quick/, README untouched")
    a.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    a.add_argument("--skip-readme", action="store_true", help="do not rewrite README.md")
    a.add_argument("--results-dir", type=Path, help="write the JSON documents here instead")
    a.add_argument("--floors", type=Path, default=FLOORS, help="the guard's floors (TOML)")
    a.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    a.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _selection(args.only)
        load_floors(args.floors)
    except (ValueError, FloorsError) as e:
        parser.error(str(e))
    return run_all(args)


if __name__ == "__main__":
    raise SystemExit(main())
