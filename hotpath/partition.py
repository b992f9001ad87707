"""The detector state of one Kafka partition, and how it is saved with its offset.

Producers key messages by service, so a series lives on exactly one partition. Each
assigned partition therefore owns a series index, the recent values its pages quote, and one
ensemble per detector profile: a series is routed, when first seen, to the first profile
whose selector matches it (else the default set) and gets a row in that profile's ensemble.
A batch is split by profile with one mask per profile, never a loop per point.

Its snapshot (``to_bytes``, a :mod:`hotpath.state_blob`) is checkpointed to Redis together
with the offset it corresponds to (:mod:`hotpath.checkpoint`), so a restart or a rebalance
resumes the detectors where they were instead of warming up again. A snapshot taken under a
different detector configuration is refused (``CheckpointError``) and the partition starts
cold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from detectors.ensemble import Ensemble
from detectors.errors import DetectorError
from detectors.static_bounds import StaticBounds
from hotpath.config import BoundConfig
from hotpath.detector_config import Selector
from hotpath.errors import CheckpointError
from hotpath.series import RecentValues, SeriesIndex
from hotpath.state_blob import pack, unpack
from hotpath.wire import Decoded, RawMessage, decode_batch
from hotpath.wire_fast import decode_fast

# Recent values as arrays, not JSON lists: a Python float per value made them most of a
# checkpoint's cost. No "/" in these names, so no profile's arrays can collide with them.
_RECENT_VALUES, _RECENT_KEPT = "__recent_values__", "__recent_kept__"
_INDEX = "__index__"  # the series index, as JSON bytes
_FORMAT = 3


@dataclass
class Profile:
    """One ensemble and the series routed to it (``rows``: local row → global row)."""

    name: str
    selector: Selector | None  # None: the default set, matches every series
    ensemble: Ensemble
    rows: list[int] = field(default_factory=list)

    @property
    def static(self) -> StaticBounds | None:
        return next((d for d in self.ensemble.detectors if isinstance(d, StaticBounds)), None)


class PartitionOutput(NamedTuple):
    """Per point of a batch (decoded order): the fused result across profiles."""

    confidence: npt.NDArray[np.float64]
    alert: npt.NDArray[np.bool_]
    baseline: npt.NDArray[np.float64]
    deviation: npt.NDArray[np.float64]
    agreed: list[tuple[str, ...] | None]  # filled for alert points only (None elsewhere)


class TickAlert(NamedTuple):
    """A series some detector reported at a clock tick (no point arrived): one finding."""

    row: int
    confidence: float
    baseline: float
    deviation: float
    agreed: tuple[str, ...]


class Detected(NamedTuple):
    decoded: Decoded
    output: PartitionOutput | None  # None when the batch held no valid point


class PartitionState:
    def __init__(self, profiles: Sequence[Profile], bounds: tuple[BoundConfig, ...] = (),
                 fingerprint: str = "") -> None:
        if not profiles or profiles[-1].selector is not None:
            raise ValueError("the last profile must be the default one (selector None)")
        self.index = SeriesIndex()
        self.recent = RecentValues()
        self.profiles = list(profiles)
        self.fingerprint = fingerprint
        self._bounds = bounds
        self._profile_of = np.zeros(0, dtype=np.int16)
        self._local = np.zeros(0, dtype=np.intp)
        # Event-time watermark: the newest point ts and the clock reading when it came in.
        self._event_max = -np.inf
        self._seen_at = 0.0

    def _route(self, row: int) -> int:
        service, metric, labels = self.index.meta(row)
        for i, p in enumerate(self.profiles):
            if p.selector is None or p.selector.matches(service, metric, labels):
                return i
        raise AssertionError("unreachable: the default profile matches every series")

    def grow(self, n_before: int) -> None:
        """Route the rows the index just assigned; size arrays; set their static bounds."""
        n = self.index.n
        if n == n_before:
            return
        # Only new rows are visited, so this Python loop runs once per series lifetime.
        prof = np.empty(n - n_before, dtype=np.int16)
        local = np.empty(n - n_before, dtype=np.intp)
        bounds: dict[int, tuple[list[int], list[float], list[float]]] = {}
        for k, row in enumerate(range(n_before, n)):
            i = self._route(row)
            p = self.profiles[i]
            prof[k], local[k] = i, len(p.rows)
            p.rows.append(row)
            b = self._bound_for(row)
            if b is not None:
                acc = bounds.setdefault(i, ([], [], []))
                acc[0].append(int(local[k]))
                acc[1].append(np.nan if b.lower is None else b.lower)
                acc[2].append(np.nan if b.upper is None else b.upper)
        self._profile_of = np.concatenate([self._profile_of, prof])
        self._local = np.concatenate([self._local, local])
        for i, p in enumerate(self.profiles):
            if p.ensemble.n_series < len(p.rows):
                p.ensemble.resize(len(p.rows))
            static = p.static
            if i in bounds and static is not None:
                r, lo, hi = bounds[i]
                static.set_bounds(np.asarray(r, dtype=np.intp), np.asarray(lo), np.asarray(hi))

    def _bound_for(self, row: int) -> BoundConfig | None:
        service, metric, _ = self.index.meta(row)
        return next((b for b in self._bounds
                     if fnmatchcase(service, b.service) and fnmatchcase(metric, b.metric)),
                    None)

    def ingest(self, messages: Sequence[RawMessage], now: float) -> Detected:
        """Decode, index and detect one batch of this partition's messages.

        The one code path from wire bytes to detector output: the live processor, replay
        and the NAB harness all call it, so they cannot drift apart.
        """
        n_before = self.index.n
        # The careful decoder only when the fast one declines (a bad or unusual message):
        # same points either way, and the careful one names each bad message's reason.
        dec = decode_fast(messages, now, self.index)
        if dec is None:
            dec = decode_batch(messages, now, self.index)
        self.grow(n_before)
        if not dec.points:
            return Detected(dec, None)
        out = self._detect(dec)
        self.recent.push(dec.rows, dec.values)
        self._event_max = max(self._event_max, float(dec.ts.max()))
        self._seen_at = now
        return Detected(dec, out)

    def event_time(self, now: float) -> float | None:
        """The partition's "now" in its points' time base, or None before any point.

        A consumer catching up reads old points: measured on the wall clock every series
        would look silent. The watermark (newest ts seen) plus the time since it arrived
        moves with the wall clock when the partition is idle — a dead producer is still
        noticed — and stays with the data when the consumer lags.
        """
        if self._event_max == -np.inf:
            return None
        return self._event_max + max(0.0, now - self._seen_at)

    def _detect(self, dec: Decoded) -> PartitionOutput:
        n = dec.points
        if len(self.profiles) == 1:  # the common case: no routing, no masks
            p = self.profiles[0]
            o = p.ensemble.update(self._local[dec.rows], dec.ts, dec.values)
            names = p.ensemble.detector_names
            agreed: list[tuple[str, ...] | None] = [None] * n
            for i in np.flatnonzero(o.alert):
                agreed[i] = tuple(nm for nm, a in zip(names, o.agreed[i], strict=True) if a)
            return PartitionOutput(o.confidence, o.alert, o.baseline, o.deviation, agreed)
        confidence = np.zeros(n)
        alert = np.zeros(n, dtype=np.bool_)
        baseline = np.full(n, np.nan)
        deviation = np.zeros(n)
        agreed = [None] * n
        prof = self._profile_of[dec.rows]
        for pi, p in enumerate(self.profiles):
            where = np.flatnonzero(prof == pi)
            if where.size == 0:
                continue
            o = p.ensemble.update(self._local[dec.rows[where]], dec.ts[where],
                                  dec.values[where])
            confidence[where], alert[where] = o.confidence, o.alert
            baseline[where], deviation[where] = o.baseline, o.deviation
            names = p.ensemble.detector_names
            for k in np.flatnonzero(o.alert):
                agreed[int(where[k])] = tuple(
                    nm for nm, a in zip(names, o.agreed[k], strict=True) if a)
        return PartitionOutput(confidence, alert, baseline, deviation, agreed)

    def tick(self, now: float) -> list[TickAlert]:
        """What the passing of time says (absent series), as alerts on global rows.

        ``now`` is the clock reading; the detectors are ticked at :meth:`event_time`.
        """
        alerts: list[TickAlert] = []
        at = self.event_time(now)
        if at is None:
            return alerts
        for p in self.profiles:
            t = p.ensemble.tick(at)
            if not t.alert.any():
                continue
            names = p.ensemble.detector_names
            for k in np.flatnonzero(t.alert):
                alerts.append(TickAlert(
                    row=p.rows[int(t.rows[k])], confidence=float(t.confidence[k]),
                    baseline=float(t.baseline[k]), deviation=float(t.deviation[k]),
                    agreed=tuple(nm for nm, a in zip(names, t.agreed[k], strict=True) if a)))
        return alerts

    def to_bytes(self) -> bytes:
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        for p in self.profiles:
            for k, v in p.ensemble.export_state().items():
                arrays[f"{p.name}/{k}"] = v
        meta = {"format": _FORMAT, "fingerprint": self.fingerprint,
                "profiles": [[p.name, p.rows] for p in self.profiles],
                "recent_window": self.recent.window}
        # The index as cached JSON bytes: re-serialised only when series were added.
        arrays[_INDEX] = np.frombuffer(self.index.export_json(), dtype=np.uint8)
        arrays[_RECENT_VALUES], arrays[_RECENT_KEPT] = self.recent.to_arrays()
        return pack(arrays, meta)

    def load_bytes(self, blob: bytes) -> None:
        try:
            meta, arrays = unpack(blob)
            if meta.get("format") != _FORMAT:
                raise CheckpointError(f"checkpoint format {meta.get('format')!r}, "
                                      f"expected {_FORMAT}")
            if meta["fingerprint"] != self.fingerprint:
                raise CheckpointError("checkpoint was taken under another detector "
                                      "configuration")
            names = [name for name, _ in meta["profiles"]]
            if names != [p.name for p in self.profiles]:
                raise CheckpointError(f"checkpoint profiles {names} differ from the config's")
            index = SeriesIndex.load_json(arrays.pop(_INDEX).tobytes())
            recent = RecentValues.from_arrays(int(meta["recent_window"]),
                                              arrays.pop(_RECENT_VALUES),
                                              arrays.pop(_RECENT_KEPT))
            for p, (_, rows) in zip(self.profiles, meta["profiles"], strict=True):
                prefix = f"{p.name}/"
                p.ensemble.load_state({k[len(prefix):]: v for k, v in arrays.items()
                                       if k.startswith(prefix)})
                p.rows = [int(r) for r in rows]
        except (ValueError, KeyError, TypeError, OSError, DetectorError) as e:
            raise CheckpointError(f"detector checkpoint unreadable: {e}") from e
        self.index, self.recent = index, recent
        n = index.n
        self._profile_of = np.zeros(n, dtype=np.int16)
        self._local = np.zeros(n, dtype=np.intp)
        for i, p in enumerate(self.profiles):
            self._profile_of[p.rows] = i
            self._local[p.rows] = np.arange(len(p.rows))


StateFactory = Callable[[], PartitionState]
