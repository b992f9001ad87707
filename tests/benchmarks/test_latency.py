"""The latency benchmark's measuring hooks, sizes and options (figures: test_latency_stats)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer

from benchmarks.latency import Observer, Params, RawReader, main
from benchmarks.throughput import EXAMPLE_CONFIG
from hotpath.config import load_config
from hotpath.processor import BatchResult


def test_observer_keeps_one_stamp_per_batch_with_points() -> None:
    clock = iter([5.0, 6.0])
    obs = Observer(lambda: next(clock))
    obs.on_batch(BatchResult(points=2, event_ts=[np.array([4.0, 4.5])]))
    obs.on_batch(BatchResult())  # an empty poll: nothing decided
    obs.on_batch(BatchResult(points=1, event_ts=[np.array([5.5])]))
    assert obs.points == 3
    assert [(t, [a.tolist() for a in arrays]) for t, arrays in obs.stamps] == [
        (5.0, [[4.0, 4.5]]), (6.0, [[5.5]])]


@dataclass
class _Record:
    timestamp: int


class _Polls:
    """What ``getmany`` returns, poll by poll, and the arguments it was called with."""

    def __init__(self, polls: list[dict[str, list[_Record]]]) -> None:
        self.polls, self.calls = polls, list[dict[str, int]]()

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, Any]:
        self.calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        if not self.polls:
            await asyncio.Event().wait()  # nothing more: block until cancelled
        return self.polls.pop(0)


async def test_raw_reader_notes_one_clock_reading_and_the_timestamps_per_poll() -> None:
    polls = _Polls([{"p0": [_Record(1000), _Record(1001)], "p1": [_Record(999)]}, {},
                    {"p2": [_Record(1500)]}])
    clock = iter([1.01, 1.52])
    cfg = load_config(EXAMPLE_CONFIG)
    reader = RawReader(cast(AIOKafkaConsumer, polls), cfg, lambda: next(clock))
    task = asyncio.create_task(reader.read())
    while reader.records < 4:
        await asyncio.sleep(0)
    task.cancel()
    assert reader.batches == [(1.01, [[1000, 1001], [999]]), (1.52, [[1500]])]
    # The runtime's own poll: the same timeout and batch size as hotpath's consumer.
    assert polls.calls[0] == {"timeout_ms": cfg.kafka.poll_timeout_ms,
                              "max_records": cfg.kafka.max_batch}


def test_quick_params_stay_past_the_detector_warm_up() -> None:
    q = Params.quick().check()
    assert 0 < q.probe_s <= Params().probe_s
    assert q.backlog_steps_for("point") >= 30
    assert q.backlog_steps_for("batch100") == 10 * q.backlog_steps


@pytest.mark.parametrize(("argv", "message"), [
    (["--series", "150"],
     "--series 150 must be a positive multiple of 100 (metrics per batch message)"),
    (["--backlog-steps", "29"], "--backlog-steps 29 must be at least 30 (the detectors' warm-up)"),
    (["--warmup", "-1"], "--warmup -1 must not be negative"),
    (["--duration", "0"], "--duration 0 must be greater than 0"),
    (["--probe", "-1"], "--probe -1 must not be negative (0 skips it)"),
    (["--cases", "point,batch7"], "unknown case 'batch7': choose from point, batch100"),
    (["--cases", ","], "--cases must name at least one case"),
    (["--max-rate", "point"], "--max-rate 'point' must be CASE=POINTS_PER_S, e.g. point=250000"),
    (["--max-rate", "point=fast"],
     "--max-rate 'point=fast' must be CASE=POINTS_PER_S, e.g. point=250000"),
    (["--max-rate", "point=-5"], "--max-rate point=-5 must be greater than 0"),
    (["--max-rate", "pt=5"], "unknown case 'pt': choose from point, batch100"),
])
def test_bad_options_are_refused_before_any_service_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m benchmarks.latency: error: {message}")
