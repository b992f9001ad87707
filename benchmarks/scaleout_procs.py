"""The scale-out benchmark's processes: config for each ``hotpath run``, starting and
stopping them, polling their counters and CPU, and finding the broker's pid.

Each process gets the example config with its own group, files and ports merged in; it is
started as a real OS process with its output captured to a log, sampled every ``sample_s``
until the backlog is counted and every counter has settled, and stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from ruamel.yaml import YAML

from benchmarks.scaleout_window import (
    Sample,
    cpu_seconds,
    listen_inodes,
    machine_busy_seconds,
    points_total,
)
from benchmarks.throughput import BenchmarkError

# The shipped 3 s heartbeat lets the first member consume alone for up to 3 s before it
# notices the second one joining, which would eat a small backlog. 200 ms bounds the join
# to a fraction of a second; heartbeats run beside the loop, so steady state is unchanged.
HEARTBEAT_MS = 200
# Every count unchanged this long after the backlog is in: the run is over.
SETTLED_S = 0.6
# No progress for this long means a crash or a stuck group, not a slow run.
STALL_S = 60.0
# SIGTERM finishes the batch, commits and flushes; a process still alive after this is killed.
STOP_TIMEOUT_S = 20.0
# Of a failed child's log: its traceback and the few lines logged before it.
STDERR_TAIL = 3000


# --- config ----------------------------------------------------------------------------------


def merged(base: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with nested ``updates`` merged in; a non-mapping update replaces.

    >>> merged({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 9}, "d": None})
    {'a': {'b': 9, 'c': 2}, 'd': None}
    """
    out = dict(base)
    for k, v in updates.items():
        out[k] = (merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
                  else v)
    return out


def config_text(base_yaml: str, updates: Mapping[str, Any]) -> str:
    """The YAML of a processor's config: the example config with ``updates`` merged in."""
    yaml = YAML(typ="safe")
    out = io.StringIO()
    yaml.dump(merged(yaml.load(base_yaml), updates), out)
    return out.getvalue()


def processor_overrides(bootstrap: str, redis_url: str, topic: str, group: str,
                        workdir: Path, metrics_port: int, pages_url: str,
                        actions_url: str) -> dict[str, Any]:
    """What one processor changes in the example config (its own files and ports).

    >>> o = processor_overrides("k:9", "redis://r", "t", "g", Path("/w"), 9001, "p", "a")
    >>> o["kafka"]["group"], o["metrics"], o["audit"]
    ('g', {'port': 9001}, {'path': '/w/audit.jsonl'})
    """
    return {
        "kafka": {"bootstrap": bootstrap, "topic": topic, "group": group,
                  "heartbeat_interval_ms": HEARTBEAT_MS},
        "redis": {"url": redis_url},
        "pagers": {"webhook": {"url": pages_url},
                   "console": {"path": str(workdir / "pages.jsonl"), "echo": False},
                   "alertmanager": None},  # no Alertmanager here: its pages would only fail
        "audit": {"path": str(workdir / "audit.jsonl")},
        "spool": {"dir": str(workdir / "spool")},
        "metrics": {"port": metrics_port},
        "api": {"port": 0},
        "executors": {"webhook": {"url": actions_url},
                      "plugins": {"jsonl": {"path": str(workdir / "changes.jsonl")}}},
    }


# --- processes, ports, /proc ----------------------------------------------------------------


def free_port() -> int:
    """A port free right now: the processor binds it a moment later (a race we accept)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener_pid(port: int) -> int | None:
    """The local process listening on ``port`` (the broker JVM), if this user can see it."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            inodes |= listen_inodes(Path(table).read_text(), port)
        except OSError:
            continue
    links = {f"socket:[{i}]" for i in inodes}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()) if links else ():
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in links
                   for fd in os.listdir(f"/proc/{pid}/fd")):
                return pid
        except OSError:
            continue
    return None


def read_cpu(pid: int) -> float | None:
    try:
        return cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return None


def read_machine_cpu() -> float | None:
    try:
        return machine_busy_seconds(Path("/proc/stat").read_text())
    except (OSError, ValueError):
        return None


def hotpath_command() -> list[str]:
    """``hotpath`` of this interpreter's environment (the console script beside python)."""
    beside = Path(sys.executable).with_name("hotpath")
    found = str(beside) if beside.exists() else shutil.which("hotpath")
    if found is None:
        raise BenchmarkError("no `hotpath` command beside the interpreter or on PATH: "
                             "install the project (pip install -e .)")
    return [found]


@dataclass
class Proc:
    """One ``hotpath run`` process, its metrics URL and its captured output."""

    name: str
    popen: subprocess.Popen[bytes]
    metrics_url: str
    log: Path

    def tail(self) -> str:
        text = self.log.read_text(errors="replace")
        return f"--- {self.name} ({self.log}) ---\n{text[-STDERR_TAIL:]}"


def start_proc(name: str, config: Path, workdir: Path, metrics_port: int) -> Proc:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:  # the child writes through its own copy of the descriptor
        popen = subprocess.Popen([*hotpath_command(), "run", "--config", str(config)],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    return Proc(name, popen, f"http://127.0.0.1:{metrics_port}/metrics", log)


async def stop_procs(procs: Sequence[Proc]) -> list[int]:
    """SIGTERM every process, wait for the clean shutdown, kill what outlives the timeout."""
    for p in procs:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(p.popen.poll() is None for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    codes = []
    for p in procs:
        if p.popen.poll() is None:
            p.popen.kill()
        codes.append(p.popen.wait())
    return codes


# --- the sampler -----------------------------------------------------------------------------


async def _scrape(session: aiohttp.ClientSession, proc: Proc,
                  clock: Callable[[], float]) -> tuple[float, int]:
    """When the process answered, and its points counter (0 until its server is up)."""
    if proc.popen.poll() is not None:
        raise BenchmarkError(f"{proc.name} exited with {proc.popen.returncode} mid-run\n"
                             + proc.tail())
    try:
        async with session.get(proc.metrics_url) as resp:
            body = await resp.read()
        return clock(), points_total(body)
    except aiohttp.ClientConnectionError:
        return clock(), 0


async def sample_until_drained(procs: Sequence[Proc], total: int, sample_s: float,
                               broker_pid: int | None,
                               clock: Callable[[], float] = time.perf_counter) -> list[Sample]:
    """Samples every ``sample_s`` until the processes have counted ``total`` points between
    them and every counter has stood still for ``SETTLED_S``."""
    samples: list[Sample] = []
    timeout = aiohttp.ClientTimeout(total=5.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        changed_at = clock()
        while True:
            t_before = clock()
            answers = await asyncio.gather(*(_scrape(session, p, clock) for p in procs))
            counts = tuple(c for _, c in answers)
            cpu = tuple(read_cpu(p.popen.pid) or 0.0 for p in procs)
            broker = None if broker_pid is None else read_cpu(broker_pid)
            samples.append(Sample(tuple(t for t, _ in answers), counts, cpu, broker,
                                  read_machine_cpu()))
            t = samples[-1].t
            if len(samples) == 1 or counts != samples[-2].counts:
                changed_at = t
            if sum(counts) >= total and t - changed_at >= SETTLED_S:
                return samples
            if t - changed_at > STALL_S:
                raise BenchmarkError(f"no progress for {STALL_S:.0f} s at {list(counts)} of "
                                     f"{total} points\n" + "\n".join(p.tail() for p in procs))
            await asyncio.sleep(max(0.0, sample_s - (clock() - t_before)))
