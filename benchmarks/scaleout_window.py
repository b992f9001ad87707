"""The scale-out benchmark's measurements: a process's points counter from its ``/metrics``,
CPU seconds from ``/proc``, and the steady window of a run's samples.

Pure functions of text and of sample sequences; the reading of the files and the polling
live in :mod:`benchmarks.scaleout_procs`. The window runs from the first sample where every
process has counted points until the first process has drained its partitions, less
``TRIM`` at each end; each process's rate runs between its first and last counter step
inside it, and the group's rate is their sum.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Trimmed off each end of the steady window: just after the rebalance the new owners load
# the partitions' detector checkpoints, and the last batches of a drained partition are
# part-filled; neither is the steady state being compared.
TRIM = 0.1
_POINTS = re.compile(rb"^hotpath_points_total (\S+)$", re.MULTILINE)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def points_total(exposition: bytes) -> int:
    """``hotpath_points_total`` from a Prometheus text exposition.

    >>> points_total(b"# TYPE hotpath_points counter\\nhotpath_points_total 1.5e+06\\n")
    1500000
    >>> points_total(b"up 1\\n")
    Traceback (most recent call last):
    ...
    ValueError: no hotpath_points_total in the scrape
    """
    m = _POINTS.search(exposition)
    if m is None:
        raise ValueError("no hotpath_points_total in the scrape")
    return int(float(m.group(1)))


def cpu_seconds(stat: str) -> float:
    """User + system CPU seconds of a process from its ``/proc/<pid>/stat`` line.

    >>> cpu_seconds("42 (a b) S 1 2 3 4 5 6 7 8 9 10 " + str(3 * os.sysconf("SC_CLK_TCK"))
    ...             + " 0 0 0")
    3.0
    """
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds(proc_stat: str) -> float:
    """CPU seconds all cores spent not idle, from the ``cpu`` line of ``/proc/stat``.

    >>> t = os.sysconf("SC_CLK_TCK")
    >>> machine_busy_seconds(f"cpu  {t} 0 {t} {5 * t} {t} 0 0 0 0 0\\ncpu0 1 2 3\\n")
    2.0
    """
    # user nice system idle iowait irq softirq steal; guest time is inside user already.
    ticks = [int(x) for x in proc_stat.split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLK_TCK


def listen_inodes(proc_net_tcp: str, port: int) -> set[str]:
    """Socket inodes listening on ``port`` in a ``/proc/net/tcp`` or ``tcp6`` table.

    >>> listen_inodes("  sl local rem st\\n   0: 0100007F:2384 00000000:0000 0A 0:0 0:0 0 "
    ...               "1000 0 5551 1\\n", 9092)
    {'5551'}
    """
    out = set()
    for line in proc_net_tcp.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
            out.add(cols[9])
    return out


@dataclass(frozen=True, slots=True)
class Sample:
    """One poll: per process the time its scrape answered, its points counter and CPU s;
    the broker's and the whole machine's busy CPU s. ``t`` is the poll's end."""

    times: tuple[float, ...]
    counts: tuple[int, ...]
    cpu: tuple[float, ...]
    broker_cpu: float | None = None
    machine_cpu: float | None = None

    @property
    def t(self) -> float:
        return max(self.times)


def sample(t: float, counts: tuple[int, ...], cpu: tuple[float, ...] | None = None,
           broker_cpu: float | None = None, machine_cpu: float | None = None) -> Sample:
    """A :class:`Sample` whose scrapes all answered at ``t`` (for tests and doctests)."""
    return Sample((t,) * len(counts), counts, cpu or (0.0,) * len(counts), broker_cpu,
                  machine_cpu)


@dataclass(frozen=True, slots=True)
class Window:
    """The steady part of a run: per process its points and seconds between its first and
    last counter change inside the window, and the CPU s everyone used over the window."""

    t0: float
    t1: float
    points: tuple[int, ...]
    seconds: tuple[float, ...]
    cpu: tuple[float, ...]
    broker_cpu: float | None
    machine_cpu: float | None
    samples: int

    @property
    def rate(self) -> float:
        return sum(p / s for p, s in zip(self.points, self.seconds, strict=True))

    def to_dict(self) -> dict[str, Any]:
        span = self.t1 - self.t0
        cpu_s = sum(self.cpu)
        return {"window_s": span, "samples": self.samples, "points_per_s": self.rate,
                "process_points_per_s": [p / s for p, s in zip(self.points, self.seconds,
                                                                strict=True)],
                "process_cores": [c / span for c in self.cpu],
                "points_per_cpu_s": self.rate * span / cpu_s if cpu_s else None,
                "broker_cores": None if self.broker_cpu is None else self.broker_cpu / span,
                # Everything else that ran meanwhile (redis, this benchmark, neighbours):
                # a high figure says the run was starved and the ratio is not the code's.
                "other_cores": None if self.machine_cpu is None else (
                    self.machine_cpu - cpu_s - (self.broker_cpu or 0.0)) / span}


def steady_window(samples: Sequence[Sample], trim: float = TRIM) -> Window:
    """The steady window of a run's samples (see the module doc) and the rates inside it.

    A counter moves in steps of a whole batch (500,000 points for a batch100 getmany), and
    the scrape is answered between batches; so each process's rate runs from its first to
    its last step inside the window, which ends on batch boundaries instead of cutting
    batches at arbitrary instants. Their sum is the group's rate.

    >>> s = [sample(t, (min(100 * t, 800), max(0, min(100 * (t - 2), 600))), (t, t))
    ...      for t in range(12)]
    >>> w = steady_window(s, trim=0.0)
    >>> (w.t0, w.t1, w.points, w.seconds, w.rate)
    (3, 8, (500, 500), (5, 5), 200.0)
    """
    if not samples:
        raise ValueError("no samples")
    finals = samples[-1].counts
    start = next((s.t for s in samples if all(c > 0 for c in s.counts)), None)
    if start is None or not all(finals):
        raise ValueError(f"a process never counted a point (final counts {list(finals)}): "
                         "the backlog ran out before the group settled; raise the backlog")
    end = min(next(s.t for s in samples if s.counts[i] >= finals[i])
              for i in range(len(finals)))
    lo, hi = start + trim * (end - start), end - trim * (end - start)
    inside = [k for k, s in enumerate(samples) if lo <= s.t <= hi]
    points, seconds = [], []
    for i in range(len(finals)):
        steps = [k for k in inside if k > 0 and samples[k].counts[i] != samples[k - 1].counts[i]]
        if len(steps) < 2:
            raise ValueError(f"the steady window ({end - start:.3f} s) holds {len(steps)} "
                             f"step(s) of process {i}'s counter: raise the backlog")
        a, b = samples[steps[0]], samples[steps[-1]]
        points.append(b.counts[i] - a.counts[i])
        seconds.append(b.times[i] - a.times[i])
    a, b = samples[inside[0]], samples[inside[-1]]
    return Window(a.t, b.t, tuple(points), tuple(seconds),
                  tuple(y - x for x, y in zip(a.cpu, b.cpu, strict=True)),
                  _delta(a.broker_cpu, b.broker_cpu), _delta(a.machine_cpu, b.machine_cpu),
                  len(inside))


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a
