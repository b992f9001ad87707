"""The latency benchmark's live maximum, and the measuring pieces its levels share with it.

The drain maximum runs with nothing else on the machine; live, the open-loop producer
process and the broker share its cores with hotpath, which then decides much less. So
``probe_max`` has the producer (``benchmarks.open_loop``, its own process: ``OpenLoop``)
offer the ceiling for a probe's seconds after a 1 s warm-up, counts hotpath's decided
points/s inside the producer's window from the ``Observer``'s stamps, offers a second probe
1.25x that when hotpath fell behind, and waits after each probe until everything produced
is decided (``until``). Which probe to run next and which maximum to take are pure
(``benchmarks.latency_stats.next_probe``/``probe_result``/``chosen_max``); this module does
the I/O. ``benchmarks.latency`` runs the levels with the same producer, observer and wait.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.common import REPO
from benchmarks.latency_stats import Stamps, chosen_max, next_probe, probe_result
from benchmarks.throughput import STALL_S, BenchmarkError, race_serve
from hotpath.processor import BatchResult
from hotpath.runtime import Running

# The producer stands for services on other machines: above the processor's priority, it
# keeps its schedule instead of queueing for a core behind what it measures (its CPU is a
# fraction of a core). Applied where permitted; the report says which niceness ran.
PRODUCER_NICE = -5
# A probe overloads hotpath from its first tick: one second lets the producer's start and
# hotpath's first fetches of the probe pass before decided/s is counted.
PROBE_WARMUP_S = 1.0

Clock = Callable[[], float]


class Observer:
    """The on_batch hook: one clock reading and the batch's ts arrays per batch."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stamps: Stamps = []
        self.points = 0
        self.box: list[Running] = []

    def ready(self, running: Running) -> None:
        self.box.append(running)
        running.on_batch.append(self.on_batch)

    def on_batch(self, res: BatchResult) -> None:
        if res.points:
            self.stamps.append((self.clock(), res.event_ts))
            self.points += res.points


async def until(task: asyncio.Task[None], count: Callable[[], int], n: int,
                limit_s: float) -> bool:
    """Wait until ``count()`` reaches ``n``; False if ``limit_s`` passed without it. The
    consumer's ``task`` ending first is the failure (see ``throughput.race_serve``)."""
    deadline = time.monotonic() + limit_s
    while count() < n:
        if time.monotonic() > deadline:
            return False
        await race_serve(task, asyncio.sleep(0.05))
    return True


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """One case's open-loop producer (``benchmarks.open_loop``), run as its own process."""

    bootstrap: str
    case: str
    services: int
    seed: int

    def argv(self, topic: str, rate: float, warmup_s: float, duration_s: float) -> list[str]:
        """The producer's command line.

        >>> OpenLoop("k:9092", "point", 20, 7).argv("t", 1000.0, 1.0, 3.0)[2:8]
        ['benchmarks.open_loop', '--bootstrap', 'k:9092', '--topic', 't', '--case']
        """
        return [sys.executable, "-m", "benchmarks.open_loop", "--bootstrap", self.bootstrap,
                "--topic", topic, "--case", self.case, "--services", str(self.services),
                "--rate", repr(rate), "--warmup", repr(warmup_s),
                "--duration", repr(duration_s), "--seed", str(self.seed),
                "--nice", str(PRODUCER_NICE)]

    async def run(self, topic: str, rate: float, warmup_s: float,
                  duration_s: float) -> dict[str, Any]:
        """One schedule at ``rate`` points/s; the producer's report."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(topic, rate, warmup_s, duration_s), cwd=REPO,
            stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:  # the run failed elsewhere: no producer outlives it
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise BenchmarkError(f"open-loop producer at {rate:,.0f} points/s exited "
                                 f"{proc.returncode}")
        report: dict[str, Any] = orjson.loads(out)
        return report


async def probe_max(serving: asyncio.Task[None], obs: Observer, producer: OpenLoop,
                    topic: str, ceiling: float, ceiling_source: str, probe_s: float,
                    expected: int) -> tuple[float, str, list[dict[str, Any]], int]:
    """Probe hotpath (``serving``, deciding ``expected`` points so far) live on ``topic``:
    the levels' maximum, its source, the probes, and the points expected decided after
    them. ``probe_s`` 0 runs no probe: the ceiling is the maximum."""
    probes = list[dict[str, Any]]()
    while probe_s > 0 and (offered := next_probe(ceiling, probes)) is not None:
        report = await race_serve(serving, producer.run(topic, offered, PROBE_WARMUP_S,
                                                        probe_s))
        probes.append(probe_result(offered, report, obs.stamps))
        expected += report["points"]
        if not await until(serving, lambda: obs.points, expected, STALL_S):
            raise BenchmarkError(f"hotpath on {topic}: no catch-up after the probe "
                                 f"at {offered:,.0f} points/s "
                                 f"({obs.points}/{expected} points)")
    max_rate, source = chosen_max(ceiling, ceiling_source, probes)
    return max_rate, source, probes, expected
