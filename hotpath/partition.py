"""The detector state of one Kafka partition, and how it is saved with its offset.

Producers key messages by service, so a series lives on exactly one partition. Each
assigned partition therefore owns a series index, the recent values its pages quote,
and an ensemble of detectors. Its snapshot (``to_bytes``) is checkpointed to Redis
together with the offset it corresponds to (:mod:`hotpath.checkpoint`), so a restart or
a rebalance resumes the detectors where they were instead of warming up again.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import NamedTuple

import numpy as np
import orjson

from detectors.ensemble import Ensemble, EnsembleOutput
from detectors.errors import DetectorError
from detectors.static_bounds import StaticBounds
from hotpath.config import BoundConfig
from hotpath.errors import CheckpointError
from hotpath.series import RecentValues, SeriesIndex
from hotpath.wire import Decoded, RawMessage, decode_batch

_META_KEY = "__meta__"  # series index and recent values, as JSON bytes


class Detected(NamedTuple):
    decoded: Decoded
    output: EnsembleOutput | None  # None when the batch held no valid point


class PartitionState:
    def __init__(self, ensemble: Ensemble, bounds: tuple[BoundConfig, ...] = ()) -> None:
        self.index = SeriesIndex()
        self.recent = RecentValues()
        self.ensemble = ensemble
        self._bounds = bounds
        self._static = next(
            (d for d in ensemble.detectors if isinstance(d, StaticBounds)), None
        )

    def grow(self, n_before: int) -> None:
        """Size every array for the rows the index just assigned; new rows get their bounds."""
        n = self.index.n
        if n == n_before:
            return
        self.ensemble.resize(n)
        if self._static is None or not self._bounds:
            return
        # Only new rows are visited, so this Python loop runs once per series lifetime.
        rows, lower, upper = [], [], []
        for row in range(n_before, n):
            service, metric, _ = self.index.meta(row)
            for b in self._bounds:
                if fnmatchcase(service, b.service) and fnmatchcase(metric, b.metric):
                    rows.append(row)
                    lower.append(np.nan if b.lower is None else b.lower)
                    upper.append(np.nan if b.upper is None else b.upper)
                    break
        if rows:
            self._static.set_bounds(
                np.asarray(rows, dtype=np.intp),
                np.asarray(lower, dtype=np.float64),
                np.asarray(upper, dtype=np.float64),
            )

    def ingest(self, messages: Sequence[RawMessage], now: float) -> Detected:
        """Decode, index and detect one batch of this partition's messages.

        The one code path from wire bytes to detector output: the live processor, replay
        and the NAB harness all call it, so they cannot drift apart.
        """
        n_before = self.index.n
        dec = decode_batch(messages, now, self.index)
        self.grow(n_before)
        if not dec.points:
            return Detected(dec, None)
        out = self.ensemble.update(dec.rows, dec.ts, dec.values)
        self.recent.push(dec.rows, dec.values)
        return Detected(dec, out)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = dict(self.ensemble.export_state())
        meta = {"index": self.index.export(), "recent": self.recent.export()}
        arrays[_META_KEY] = np.frombuffer(orjson.dumps(meta), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        return buf.getvalue()

    def load_bytes(self, blob: bytes) -> None:
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = orjson.loads(arrays.pop(_META_KEY).tobytes())
            index = SeriesIndex.load(meta["index"])
            recent = RecentValues.load(meta["recent"])
            self.ensemble.load_state(arrays)
        except (ValueError, KeyError, TypeError, OSError, DetectorError) as e:
            raise CheckpointError(f"detector checkpoint unreadable: {e}") from e
        self.index, self.recent = index, recent


StateFactory = Callable[[], PartitionState]
