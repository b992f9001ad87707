"""Series index and recent values: the row numbers every detector array is indexed by.

A series (service + metric + sorted labels, :func:`escalation.finding.series_key`) gets a
row the first time it is seen and keeps it for the life of the partition's state; both
structures export to plain JSON-able dicts so they are checkpointed together with the
detector state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from escalation.finding import series_key

Meta = tuple[str, str, dict[str, str]]
"""(service, metric, labels) of one series."""

_FORMAT = 1  # version of the exported dicts; load() refuses other versions


def label_part(labels: Mapping[str, str]) -> str:
    """The canonical (sorted) label part of a series key; equal label sets give equal parts.

    >>> label_part({"region": "eu", "az": "b"})
    'az=b,region=eu'
    >>> label_part({})
    ''
    """
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


class SeriesIndex:
    """Maps series keys to dense rows 0..n-1 and remembers each row's service/metric/labels.

    >>> idx = SeriesIndex()
    >>> idx.rows_for(["api|lat|", "api|err|", "api|lat|"]).tolist()
    [0, 1, 0]
    >>> idx.add("api", "lat", {}), idx.n, idx.key(1), idx.meta(1)
    (0, 2, 'api|err|', ('api', 'err', {}))
    >>> SeriesIndex.load(idx.export()).key(1)
    'api|err|'
    """

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._keys: list[str] = []
        self._meta: list[Meta] = []
        # (service, label part) -> metric -> row: lets the decoder resolve a point with one
        # lookup on the metric name instead of building and hashing the full key per point.
        self._groups: dict[tuple[str, str], dict[str, int]] = {}
        # (service, raw label JSON bytes, metric) -> row, for hotpath.wire_fast: one look-up
        # per point message without decoding or sorting its labels. Derived, never exported.
        self.wire_rows: dict[tuple[str, bytes, str], int] = {}
        # (service, raw label JSON, metric names) -> rows of a batch message, likewise.
        self.wire_batches: dict[tuple[str, bytes, tuple[str, ...]], npt.NDArray[np.intp]] = {}
        self._export_json: tuple[int, bytes] = (-1, b"")  # (rows it covers, export as JSON)

    @property
    def n(self) -> int:
        """Number of series (rows) known."""
        return len(self._keys)

    def row(self, key: str) -> int | None:
        """The row of a series key, None if this index has never seen it."""
        return self._rows.get(key)

    def key(self, row: int) -> str:
        """Series key of ``row``."""
        return self._keys[row]

    def meta(self, row: int) -> Meta:
        """(service, metric, labels) of ``row``; the labels dict is a copy."""
        service, metric, labels = self._meta[row]
        return service, metric, dict(labels)

    def group(self, service: str, lab: str) -> dict[str, int]:
        """metric -> row for one service and label part (see :func:`label_part`).

        The returned dict is the index's own, kept up to date by :meth:`add`: read it, never
        write it. Callers hold it for one message and resolve every metric with ``.get``.

        >>> idx = SeriesIndex()
        >>> g = idx.group("api", "az=b")
        >>> idx.add("api", "lat", {"az": "b"}), g
        (0, {'lat': 0})
        """
        g = self._groups.get((service, lab))
        if g is None:
            g = self._groups[(service, lab)] = {}
        return g

    def add(self, service: str, metric: str, labels: Mapping[str, str]) -> int:
        """Row of the series, assigning the next free row if it is new."""
        key = series_key(service, metric, dict(labels))
        row = self._rows.get(key)
        if row is None:
            row = len(self._keys)
            self._rows[key] = row
            self._keys.append(key)
            self._meta.append((service, metric, dict(labels)))
            self.group(service, label_part(labels))[metric] = row
        return row

    def rows_for(
        self, keys: Sequence[str], metas: Sequence[Meta] | None = None
    ) -> npt.NDArray[np.intp]:
        """Rows of ``keys``, assigning rows to unseen keys in order of first appearance.

        ``metas`` gives (service, metric, labels) per key. Without it a new key is split at
        ``|``, ``,`` and ``=``; a key whose names contain those characters cannot be split
        back and raises ``ValueError`` (pass ``metas`` then).

        >>> SeriesIndex().rows_for(["a|b|x=1", "a|b|x=2"]).tolist()
        [0, 1]
        >>> SeriesIndex().rows_for(["a|b|c|"])
        Traceback (most recent call last):
        ...
        ValueError: cannot derive service/metric/labels from series key 'a|b|c|'; pass metas
        """
        get = self._rows.get
        out = np.empty(len(keys), dtype=np.intp)
        for i, key in enumerate(keys):
            row = get(key)
            if row is None:
                service, metric, labels = metas[i] if metas is not None else _split_key(key)
                row = self.add(service, metric, labels)
                if self._keys[row] != key:
                    raise ValueError(f"series key {key!r} does not match its metas")
            out[i] = row
        return out

    def export(self) -> dict[str, Any]:
        """Plain JSON-able state; keys are recomputed on load so they cannot drift."""
        return {"version": _FORMAT,
                "series": [[s, m, dict(lab)] for s, m, lab in self._meta]}

    def export_json(self) -> bytes:
        """:meth:`export` as JSON bytes, remade only when rows were added since: the index
        only grows, and a checkpoint takes it every commit interval.

        >>> idx = SeriesIndex(); _ = idx.add("api", "lat", {})
        >>> idx.export_json() is idx.export_json(), SeriesIndex.load_json(idx.export_json()).n
        (True, 1)
        """
        if self._export_json[0] != self.n:
            self._export_json = (self.n, orjson.dumps(self.export()))
        return self._export_json[1]

    @classmethod
    def load_json(cls, blob: bytes) -> SeriesIndex:
        """Rebuild from :meth:`export_json`."""
        return cls.load(orjson.loads(blob))

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> SeriesIndex:
        """Rebuild an index from :meth:`export`; rows keep their numbers."""
        _check_version(data)
        idx = cls()
        for service, metric, labels in data["series"]:
            idx.add(service, metric, labels)
        return idx


def _split_key(key: str) -> Meta:
    parts = key.split("|", 2)
    if len(parts) == 3:
        service, metric, lab = parts
        pairs = [p.split("=", 1) for p in lab.split(",")] if lab else []
        if all(len(p) == 2 for p in pairs):
            labels = {k: v for k, v in pairs}
            if series_key(service, metric, labels) == key:
                return service, metric, labels
    raise ValueError(f"cannot derive service/metric/labels from series key {key!r}; pass metas")


def _check_version(data: Mapping[str, Any]) -> None:
    if data.get("version") != _FORMAT:
        raise ValueError(f"unsupported export version {data.get('version')!r}, "
                         f"expected {_FORMAT}")


RECENT_WINDOW = 30  # why: a page's sparkline; 30 points covers minutes at common scrape rates
_INITIAL_ROWS = 1024  # why: one 240 KiB buffer; a typical partition stays inside it


class RecentValues:
    """Per-row ring buffer of the last ``window`` values, for the page's "recent" context.

    >>> rv = RecentValues(window=3)
    >>> rv.push(np.array([0, 0, 0, 0, 2]), np.array([1.0, 2.0, 3.0, 4.0, 9.0]))
    >>> rv.last(0), rv.last(1), rv.last(2)
    ([2.0, 3.0, 4.0], [], [9.0])
    >>> RecentValues.from_arrays(3, *rv.to_arrays()).last(0)
    [2.0, 3.0, 4.0]
    """

    def __init__(self, window: int = RECENT_WINDOW, capacity: int = _INITIAL_ROWS) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._window = window
        self._buf = np.full((max(capacity, 1), window), np.nan)
        # Values ever pushed per row; the write position is count % window.
        self._count = np.zeros(max(capacity, 1), dtype=np.int64)

    @property
    def window(self) -> int:
        """How many values each row keeps."""
        return self._window

    @property
    def capacity(self) -> int:
        """Rows allocated; grows by doubling."""
        return len(self._count)

    def _ensure(self, rows: int) -> None:
        cap = self.capacity
        if rows <= cap:
            return
        new_cap = max(rows, 2 * cap)
        buf = np.full((new_cap, self._window), np.nan)
        buf[:cap] = self._buf
        count = np.zeros(new_cap, dtype=np.int64)
        count[:cap] = self._count
        self._buf, self._count = buf, count

    def push(self, rows: npt.ArrayLike, values: npt.ArrayLike) -> None:
        """Append ``values[i]`` to row ``rows[i]``; points of one row are taken in input order.

        Points sorted by (row, ts) — the detectors' order — take the fast path; other inputs
        are stable-sorted by row first, which keeps each row's points in their given order.
        """
        r = np.asarray(rows, dtype=np.intp)
        v = np.asarray(values, dtype=np.float64)
        if r.shape != v.shape or r.ndim != 1:
            raise ValueError(f"rows and values must be 1-D of one length, got {r.shape}, {v.shape}")
        n = r.size
        if n == 0:
            return
        if n > 1 and bool(np.any(r[1:] < r[:-1])):
            order = np.argsort(r, kind="stable")
            r, v = r[order], v[order]
        if r[0] < 0:
            raise ValueError(f"row must be >= 0, got {int(r[0])}")
        self._ensure(int(r[-1]) + 1)
        starts = np.flatnonzero(np.concatenate(([True], r[1:] != r[:-1])))
        counts = np.diff(np.append(starts, n))
        rank = np.arange(n) - np.repeat(starts, counts)
        # Only the last `window` points of a row can survive; writing just those keeps the
        # fancy-index assignment free of duplicate targets, whose write order numpy leaves open.
        keep = rank >= np.repeat(counts - self._window, counts)
        slot = (self._count[r] + rank) % self._window
        self._buf[r[keep], slot[keep]] = v[keep]
        self._count[r[starts]] += counts

    def last(self, row: int) -> list[float]:
        """The row's last values, oldest first (fewer than ``window`` early on)."""
        if row < 0:
            raise IndexError(f"row must be >= 0, got {row}")
        if row >= self.capacity:
            return []
        c = int(self._count[row])
        line = self._buf[row]
        if c <= self._window:
            out: list[float] = line[:c].tolist()
            return out
        p = c % self._window
        rolled: list[float] = np.concatenate((line[p:], line[:p])).tolist()
        return rolled

    def to_arrays(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """``(values, kept)``: each used row's values oldest first (NaN-padded to the window)
        and how many are real; one gather, no Python loop per row (checkpoints carry these).

        >>> rv = RecentValues(window=3)
        >>> rv.push(np.array([0, 0, 0, 0, 1]), np.array([1.0, 2.0, 3.0, 4.0, 9.0]))
        >>> values, kept = rv.to_arrays()
        >>> values.tolist()[0], kept.tolist()
        ([2.0, 3.0, 4.0], [3, 1])
        """
        used = np.flatnonzero(self._count)
        n = int(used[-1]) + 1 if used.size else 0
        count = self._count[:n]
        w = self._window
        start = np.where(count > w, count % w, 0)
        order = (start[:, None] + np.arange(w)) % w
        values = np.take_along_axis(self._buf[:n], order, axis=1)
        return values, np.minimum(count, w)

    @classmethod
    def from_arrays(cls, window: int, values: npt.NDArray[np.float64],
                    kept: npt.NDArray[np.int64]) -> RecentValues:
        """Rebuild from :meth:`to_arrays`; ValueError if the shapes do not fit the window."""
        if values.ndim != 2 or values.shape[1] != window or kept.shape != values.shape[:1]:
            raise ValueError(f"recent values of shape {values.shape} and {kept.shape} do not "
                             f"fit a window of {window}")
        rv = cls(window=window, capacity=max(len(kept), _INITIAL_ROWS))
        rv._buf[: len(kept)] = values
        rv._count[: len(kept)] = np.clip(kept, 0, window)
        return rv

