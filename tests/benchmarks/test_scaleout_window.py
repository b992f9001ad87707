"""The scale-out benchmark's measurements: the points counter of a real exposition, CPU
seconds from /proc, the listening sockets table, and the steady window of a run's samples.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from benchmarks.scaleout_window import (
    Sample,
    cpu_seconds,
    listen_inodes,
    machine_busy_seconds,
    points_total,
    sample,
    steady_window,
)
from hotpath.metrics import Metrics

# --- counters and /proc -----------------------------------------------------------------------


def test_points_counter_is_read_from_a_real_exposition() -> None:
    metrics = Metrics()
    metrics.points.inc(1_234_567)
    metrics.messages.inc(9)
    assert points_total(generate_latest(metrics.registry)) == 1_234_567


def test_cpu_seconds_of_this_process_match_its_own_clock() -> None:
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    own = cpu_seconds(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert own == pytest.approx(time.process_time(), abs=0.05)


def test_machine_busy_seconds_leave_out_idle_and_iowait() -> None:
    tck = os.sysconf("SC_CLK_TCK")
    line = "cpu  " + " ".join(str(n * tck) for n in (1, 2, 3, 100, 50, 4, 5, 6, 7, 8))
    assert machine_busy_seconds(line + "\ncpu0 0\n") == 21.0
    assert machine_busy_seconds(Path("/proc/stat").read_text()) > 0


def test_a_listening_socket_is_found_in_the_tcp_table() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        inode = str(os.fstat(s.fileno()).st_ino)
        assert inode in listen_inodes(Path("/proc/net/tcp").read_text(), port)
    assert inode not in listen_inodes(Path("/proc/net/tcp").read_text(), port)


# --- the steady window ------------------------------------------------------------------------


def _ramp(t: float, start: float, rate: float, total: int, step: int = 1) -> int:
    """A counter that starts at ``start``, counts ``rate``/s in steps of ``step``, stops."""
    done = max(0.0, (t - start) * rate)
    return int(min(total, done // step * step))


def test_window_starts_when_all_count_and_ends_when_the_first_drains() -> None:
    # p0 alone from t=1 (the join), p1 from t=3; p0 drains at t=9, p1 at t=11.
    samples = [sample(t / 10, (_ramp(t / 10, 1, 100, 800), _ramp(t / 10, 3, 100, 800)),
                      (t / 10, t / 20), broker_cpu=t / 40, machine_cpu=t / 5)
               for t in range(0, 140)]
    w = steady_window(samples, trim=0.0)
    assert (w.t0, w.t1) == pytest.approx((3.1, 9.0))
    assert w.rate == pytest.approx(200.0, rel=0.02)
    d = w.to_dict()
    assert d["process_cores"] == pytest.approx([1.0, 0.5])
    assert d["broker_cores"] == pytest.approx(0.25)
    assert d["other_cores"] == pytest.approx(2.0 - 1.5 - 0.25)
    trimmed = steady_window(samples)
    assert trimmed.t0 > w.t0 and trimmed.t1 < w.t1


def test_batch_sized_steps_give_the_rate_between_batch_boundaries() -> None:
    # 1000 points/s in steps of 250 (a batch each 0.25 s), sampled every 0.1 s: cutting the
    # window at arbitrary samples would miss up to a step at each end.
    samples = [sample(t / 10, (_ramp(t / 10, 0.05, 1000, 10_000, step=250),))
               for t in range(0, 130)]
    for trim in (0.0, 0.1, 0.23):
        assert steady_window(samples, trim=trim).rate == pytest.approx(1000, rel=0.05)


def test_scrapes_answering_at_different_times_use_their_own_times() -> None:
    # p1's last answer came a second late (its loop was inside a batch): its rate runs to
    # when it answered, not to when the poll began.
    samples = [Sample((t, t + 0.5), (100 * t + 1, 100 * t + 1), (0, 0))
               for t in range(10)] + [Sample((10, 11.5), (1001, 1001), (0, 0))]
    w = steady_window(samples, trim=0.0)
    assert (w.points, w.seconds) == ((900, 900), (9, 10))


@pytest.mark.parametrize(("samples", "message"), [
    ([], "no samples"),
    ([sample(t, (t, 0)) for t in range(5)],
     "a process never counted a point (final counts [4, 0]): the backlog ran out before the"
     " group settled; raise the backlog"),
    ([sample(t, (min(t, 1), min(t, 1))) for t in range(5)],
     "the steady window (0.000 s) holds 1 step(s) of process 0's counter: raise the backlog"),
])
def test_a_window_too_short_to_measure_says_so(samples: list[Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        steady_window(samples, trim=0.0)
    assert str(info.value) == message


