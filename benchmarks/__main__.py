"""Run the benchmarks: ``python -m benchmarks all [--quick] [--only a,b] [--skip-readme]``.

``all`` starts one Apache Kafka broker and one redis-server (or uses ``--bootstrap`` /
``--redis-url``), then runs each benchmark in its own interpreter — its garbage-collector
and allocator settings, memory and event loop are its own — in this order: detectors,
throughput, latency, page_latency, scaleout. Each prints its table and writes its JSON.

- Full run: ``benchmarks/results/<name>.json`` and the performance table in README.md —
  unless a benchmark failed: README is then left as it was (the failed one has no rows).
- ``--quick``: the CI guard. Short sizes, JSON under ``benchmarks/results/quick/``, README
  untouched; the same-run ratios each document carries under ``guard`` are checked against
  ``benchmarks/floors.toml`` and the exit status is 1 if one is below its floor or missing
  (a ratio a benchmark lists under ``guard_skipped``, with the reason, is reported skipped).

A benchmark stuck past its timeout gets SIGINT to its process group (its clean-up stops the
servers it started), then SIGKILL to the group if that does not end it within 20 s.

A full run checks the floors too. Targets the issue sets are reported (the ``targets`` list
of every document, the README table), never turned into an exit status: a target is what
the product aims at on a given machine, a floor is what CI holds it to.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
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
# After SIGINT a benchmark stops its Prometheus, Alertmanager and `hotpath run` children
# (up to ten seconds each for a clean shutdown, see hotpath.services.process); beyond this
# it is not shutting down.
STOP_GRACE_S = 20.0
# How often the stop looks whether the process group is gone: a small fraction of the grace.
STOP_POLL_S = 0.05


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
        if bootstrap is None or redis_url is None:
            raise RunError(f"{name}: needs a Kafka broker and Redis, but the runner was given "
                           f"bootstrap={bootstrap!r} and redis_url={redis_url!r}")
        argv += ["--bootstrap", bootstrap, "--redis-url", redis_url]
    return argv


def group_members(pgid: int, proc_dir: Path = Path("/proc")) -> list[int]:
    """The live processes of group ``pgid``, zombies left out: an exited child whose parent
    died waits for PID 1 to reap it, which in a container may be never.

    >>> os.getpid() in group_members(os.getpgrp())
    True
    """
    found = []
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone since the listing
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        state, _ppid, pgrp = text.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> str:
    """Stop ``proc`` (started with ``start_new_session``) and every process of its group.

    SIGINT first, so that the benchmark's ``finally`` and exit stacks stop what it started
    in sessions of its own (Prometheus, Alertmanager), which no group signal reaches; then,
    if any of the group outlives ``grace_s``, SIGKILL to the group. Says which it took.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while proc.poll() is None or group_members(proc.pid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return (f"its process group outlived SIGINT by {grace_s:g} s and was "
                    "sent SIGKILL")
        time.sleep(STOP_POLL_S)
    return "its process group was stopped with SIGINT"


def run_process(name: str, argv: list[str], timeout_s: float,
                grace_s: float = STOP_GRACE_S) -> int:
    """Run ``argv`` in a session of its own; its exit status. Stuck past ``timeout_s``, it
    and its whole process group are stopped (:func:`stop_group`) and RunError says so.

    Its own session, because a timeout must reach the grandchildren too; Ctrl-C in our
    terminal then no longer reaches the group by itself, so it is passed on.
    """
    proc = subprocess.Popen(argv, cwd=REPO, start_new_session=True)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        how = stop_group(proc, grace_s)
        raise RunError(f"{name}: still running after {timeout_s:g} s; {how}") from None
    except BaseException:  # Ctrl-C: stop the benchmark as the terminal would have
        stop_group(proc, grace_s)
        raise


def handed_on(name: str, docs: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Options one benchmark takes from another's results in this run.

    latency's levels are fractions of the maximum throughput; the throughput benchmark has
    just measured it as the median of repeated drains, a steadier figure than the single
    short drain latency would otherwise make (seen swinging 2x between quick runs).

    >>> handed_on("latency", {"throughput": {"results": [
    ...     {"case": "point", "hotpath_points_per_s": 250000.5},
    ...     {"case": "batch100", "hotpath_points_per_s": 2e6}]}})
    ['--max-rate', 'point=250000.5', '--max-rate', 'batch100=2000000.0']
    >>> handed_on("latency", {"throughput": {}}), handed_on("scaleout", {})
    ([], [])
    """
    source = docs.get("throughput") or {}
    if name != "latency" or not source.get("results"):
        return []
    return [arg for r in source["results"]
            for arg in ("--max-rate", f"{r['case']}={float(r['hotpath_points_per_s'])!r}")]


def run_one(name: str, out: Path, quick: bool, bootstrap: str | None,
            redis_url: str | None, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run one benchmark in a fresh interpreter (its output goes to ours); its document."""
    out.unlink(missing_ok=True)
    argv = [*_argv(name, out, quick, bootstrap, redis_url), *extra]
    print(f"\n===== {name} =====\n$ {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    status = run_process(name, argv, TIMEOUT_S[quick])
    if status != 0:
        raise RunError(f"{name}: exited with status {status}")
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


def readme_left_because(quick: bool, skip_readme: bool, ran: list[str],
                        failed: list[str]) -> str | None:
    """Why this run leaves README.md as it is (None: it rewrites the table).

    A failed benchmark has no rows: rewriting would drop its last measured ones.

    >>> readme_left_because(False, False, ["latency", "scaleout"], ["scaleout"])
    'scaleout failed: its rows would disappear'
    >>> readme_left_because(False, False, ["latency"], []) is None
    True
    """
    if quick:
        return "--quick never writes it"
    if skip_readme:
        return "--skip-readme"
    if not ran:
        return "no benchmark was selected"
    if failed:
        their = "its" if len(failed) == 1 else "their"
        return f"{', '.join(failed)} failed: {their} rows would disappear"
    return None


def _with_earlier_results(measured: dict[str, dict[str, Any]], out_dir: Path,
                          ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """This run's documents plus, for benchmarks it did not run (``--only``), the JSON an
    earlier run left in ``out_dir``: the README table keeps every benchmark's rows."""
    table: dict[str, dict[str, Any]] = {}
    earlier: list[str] = []
    for name in BENCHMARKS:
        path = out_dir / f"{name}.json"
        if name in measured:
            table[name] = measured[name]
        elif path.is_file():
            table[name] = orjson.loads(path.read_bytes())
            earlier.append(name)
    return table, earlier


def run_all(args: argparse.Namespace) -> int:
    names = _selection(args.only)
    floors = load_floors(args.floors)
    out_dir = args.results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    docs: dict[str, dict[str, Any] | None] = {}
    failures: list[str] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hotpath-benchmarks-") as tmp, ExitStack() as stack:
        endpoints: tuple[str | None, str | None] = (None, None)
        if any(BENCHMARKS[n] for n in names):
            endpoints = stack.enter_context(services(Path(tmp), args.bootstrap, args.redis_url))
        bootstrap, redis_url = endpoints
        for name in names:
            try:
                docs[name] = run_one(name, out_dir / f"{name}.json", args.quick,
                                     bootstrap, redis_url, handed_on(name, docs))
            except RunError as e:
                failures.append(str(e))
                failed.append(name)
                docs[name] = {}  # its floors then report "not measured"
    checks = check(docs, floors)
    print("\n===== guard: same-run ratios against benchmarks/floors.toml =====")
    print(render_checks(checks) if checks else "(no guarded ratio among these benchmarks)")
    measured = {n: d for n, d in docs.items() if d}
    left = readme_left_because(args.quick, args.skip_readme, names, failed)
    if left is not None:
        if not args.quick:
            print(f"left {README} as it was: {left}")
    else:
        table, earlier = _with_earlier_results(measured, out_dir)
        try:
            print(write_readme(table, earlier))
        except ReadmeError as e:
            failures.append(str(e))
    bad = [c for c in checks if not c.ok]
    for c in bad:
        failures.append(f"{c.benchmark}.{c.name} {c.reason}")
    if failures:
        print("\nFAILED:\n" + "\n".join(f"- {f}" for f in failures), file=sys.stderr)
        return 1
    skipped = sum(c.skipped is not None for c in checks)
    print("\nall benchmarks ran; every guarded ratio is above its floor"
          + (f" ({skipped} skipped, see the table)" if skipped else ""))
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
    sub.add_parser("readme", help="rewrite the README table from benchmarks/results/*.json")
    return p


def write_readme(docs: dict[str, dict[str, Any]], earlier: list[str],
                 when: dt.datetime | None = None) -> str:
    """Rewrite the table in README.md (measured ``when``, default now); what to print."""
    when = when or dt.datetime.now(dt.UTC)
    body = section(docs, machine_info(), versions(), when.strftime("%Y-%m-%d"),
                   earlier=earlier)
    README.write_text(update(README.read_text(encoding="utf-8"), body), encoding="utf-8")
    return f"wrote the performance table in {README}"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "readme":
        # Every row from an earlier run's JSON, dated by the newest of those files.
        table, _ = _with_earlier_results({}, RESULTS_DIR)
        stamps = [(RESULTS_DIR / f"{n}.json").stat().st_mtime for n in table]
        when = dt.datetime.fromtimestamp(max(stamps), dt.UTC) if stamps else None
        try:
            print(write_readme(table, [], when))
        except ReadmeError as e:
            print(f"README.md not rewritten: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        _selection(args.only)
        load_floors(args.floors)
    except (ValueError, FloorsError) as e:
        parser.error(str(e))
    return run_all(args)


if __name__ == "__main__":
    raise SystemExit(main())
