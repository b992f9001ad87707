"""Replay NAB files through the live code path and write NAB result files.

Each file is an independent series: it gets a fresh :class:`PartitionState` from
``hotpath.runtime.partition_factory`` (the live loop's own), and its rows go in as wire
format v1 point messages through ``PartitionState.ingest``, in file order, in chunks, with
``now`` at the chunk's last row (replay time: nothing is "in the future" that was not when it
arrived). There is no look-ahead and no per-file tuning: one configuration for every file.

The NAB anomaly score of a row comes from the ensemble's output through :func:`row_score`
alone, so tuning what NAB sees means changing that one function (or the detectors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import orjson

from benchmarks.nab import ReplayError
from benchmarks.nab.data import Series, read_series, write_scores
from benchmarks.nab.scoring import FloatArray, IntArray
from hotpath.config import Config
from hotpath.partition import PartitionOutput, StateFactory
from hotpath.runtime import partition_factory
from hotpath.wire import RawMessage

DETECTOR = "hotpath"  # the results directory and file prefix, as NAB names detectors
SERVICE = "nab"
# Rows per ingest call: about a live batch (kafka.max_batch is a few thousand); results do
# not depend on it (batch == one-by-one), only the replay's speed does.
DEFAULT_CHUNK = 2000


def row_score(output: PartitionOutput) -> FloatArray:
    """The NAB anomaly score of each point: its confidence where it alerted, else 0.

    NAB counts every row at or above the threshold outside a window as a false positive and
    a window once, earliest detection best; so the score is high once, at the alert that
    opens an incident, and 0 while the incident goes on (the pager's behaviour too).

    >>> out = PartitionOutput(confidence=np.array([0.2, 0.9, 0.8]),
    ...                       alert=np.array([False, True, False]), baseline=np.zeros(3),
    ...                       deviation=np.zeros(3), agreed=[None, ("ewma",), None])
    >>> row_score(out).tolist()
    [0.0, 0.9, 0.0]
    """
    return np.where(output.alert, output.confidence, 0.0)


def chunk_bounds(ts: FloatArray, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk: at most ``size`` rows, and never a step back in time.

    A batch applies a series' points in ts order, so a chunk spanning a clock step back
    (a NAB file steps back an hour) would reorder rows that arrive in file order;
    cutting there keeps every chunk size equal to the row-by-row replay.

    >>> chunk_bounds(np.array([1.0, 2, 3, 4, 2, 3, 5]), 3)
    [(0, 3), (3, 4), (4, 6), (6, 7)]
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    steps_back = np.flatnonzero(np.diff(ts) < 0) + 1
    cuts = np.union1d(np.arange(0, ts.size, size), steps_back).tolist()
    return list(zip(cuts, [*cuts[1:], ts.size], strict=True))


def messages(metric: str, ts: FloatArray, values: FloatArray) -> list[RawMessage]:
    """One wire format v1 point message per row, offsets numbering the rows.

    >>> [m.value for m in messages("c/f", np.array([1.4e9]), np.array([2.5]))]
    [b'{"service":"nab","metric":"c/f","ts":1400000000.0,"value":2.5}']
    """
    return [RawMessage(orjson.dumps({"service": SERVICE, "metric": metric, "ts": t, "value": v}),
                       0, i)
            for i, (t, v) in enumerate(zip(ts.tolist(), values.tolist(), strict=True))]


def replay(series: Series, factory: StateFactory, chunk: int = DEFAULT_CHUNK) -> FloatArray:
    """Every row of ``series`` through a fresh partition state; one NAB score per row."""
    state = factory()
    ts = series.epoch_s()
    msgs = messages(series.name.removesuffix(".csv"), ts, series.values)
    out = np.empty(ts.size, dtype=np.float64)
    for start, stop in chunk_bounds(ts, chunk):
        det = state.ingest(msgs[start:stop], now=float(ts[stop - 1]))
        if det.decoded.rejects:
            bad = det.decoded.rejects[0]
            raise ReplayError(f"{series.name}: line {bad.message.offset + 2}: refused by the "
                              f"wire decoder: {bad.reason}")
        assert det.output is not None  # every message was accepted, so there are points
        rows: IntArray = det.decoded.msg_index  # one point per message
        out[start + rows] = row_score(det.output)
    return out


def result_path(out_dir: Path, name: str) -> Path:
    """``RESULTS/hotpath/<category>/hotpath_<file>.csv`` for ``<category>/<file>.csv``.

    >>> result_path(Path("r"), "realTweets/Twitter_volume_FB.csv").as_posix()
    'r/hotpath/realTweets/hotpath_Twitter_volume_FB.csv'
    """
    category, file = name.split("/", 1)
    return out_dir / DETECTOR / category / f"{DETECTOR}_{file}"


def run_file(cfg: Config, data_dir: Path, out_dir: Path, name: str, chunk: int) -> str:
    """Replay one file and write its result; returns its name (a worker's unit of work)."""
    series = read_series(data_dir, name)
    write_scores(result_path(out_dir, name), series,
                 replay(series, partition_factory(cfg), chunk))
    return name


def run(cfg: Config, data_dir: Path, out_dir: Path, names: Sequence[str], *,
        chunk: int = DEFAULT_CHUNK, jobs: int = 1,
        progress: Callable[[str], object] = lambda name: None) -> list[Path]:
    """Replay ``names`` (files are independent: ``jobs`` processes share them out)."""
    if jobs <= 1:
        for name in names:
            progress(run_file(cfg, data_dir, out_dir, name, chunk))
    else:
        with ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(run_file, cfg, data_dir, out_dir, n, chunk) for n in names]
            for done in as_completed(futures):
                progress(done.result())
    return [result_path(out_dir, n) for n in names]
