"""Wire format v1 (DESIGN.md): Kafka message bytes in, columnar numpy arrays out.

Two message shapes, both JSON objects::

    point: {"service": str, "metric": str, "ts": number, "value": number, "labels": {str: str}?}
    batch: {"service": str, "ts": number, "labels": {str: str}?, "metrics": {name: number}}

A message that breaks the format becomes a :class:`Reject` with an exact, stable reason (the
DLQ ``reason`` header); the other messages of the batch are unaffected. A batch message with
one bad metric is rejected whole, so the DLQ holds the original bytes under one reason and a
producer never sees half its metrics accepted. ``labels: null`` counts as no labels; unknown
fields are ignored so producers can add fields before consumers know them.

Reasons read ``<kind>: <where>``; the kind alone (:func:`reason_kind`) has a small fixed set
of values and is the one to use as a metric label, since the part after the colon can carry
producer-chosen names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
import orjson

from hotpath.errors import DecodeError
from hotpath.series import SeriesIndex, label_part

MAX_MESSAGE_BYTES = 1_048_576  # why: Kafka's default max.message.bytes; bounds parse time
MAX_FUTURE_S = 300.0  # why: tolerated producer clock skew; beyond it ts is a unit or clock bug
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z: catches unset (0) and day/epoch mix-ups
MAX_LABELS = 32  # why: keeps series keys short and label cardinality reviewable
_NAME_MAX = 64  # why: producer-chosen names inside a reason stay header- and log-sized
_LABEL_CACHE_MAX = 65_536  # why: distinct label sets seen recently; cleared when full
_LABEL_KEEP_CHARS = 1024  # why: with the count bound, caps the cache near 64 MB of labels

_NUMBER = frozenset((float, int))  # exact types: JSON true/false (bool) are not numbers


class RawMessage(NamedTuple):
    """What decoding needs of a Kafka record; the runtime builds it from a ConsumerRecord."""

    value: bytes | None
    partition: int
    offset: int
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int | None = None


class Reject(NamedTuple):
    """A message that failed validation and the exact reason, for the DLQ.

    >>> Reject(RawMessage(b"x", 3, 1742), "not json").where
    'partition 3 offset 1742'
    """

    message: RawMessage
    reason: str

    @property
    def where(self) -> str:
        """Partition and offset of the message, for logs and errors."""
        return f"partition {self.message.partition} offset {self.message.offset}"

    def error(self) -> DecodeError:
        """The reject as an error naming the reason and where."""
        return DecodeError(self.reason, self.where)


@dataclass(frozen=True, slots=True)
class Decoded:
    """Columns of every accepted point of a batch, in message order, plus the rejects.

    ``msg_index[i]`` is the index (into the decoded ``messages``) of the message point ``i``
    came from. Points are not sorted; detectors sort by (row, ts) themselves.
    """

    rows: npt.NDArray[np.intp]
    ts: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    msg_index: npt.NDArray[np.intp]
    rejects: list[Reject]

    @property
    def points(self) -> int:
        """Number of accepted points."""
        return int(self.rows.size)


REASON_KINDS = frozenset((
    "empty message", "message too large", "not json", "not an object", "missing field",
    "wrong type", "empty field", "conflicting fields", "non-finite value", "ts in the future",
    "ts before 2000", "label not a string", "too many labels",
))
"""Every value :func:`reason_kind` can return, so a counter can start each label at zero."""


def reason_kind(reason: str) -> str:
    """The fixed part of a reason, before the colon: a bounded set, fit for a metric label.

    >>> reason_kind("wrong type: metrics.cpu (expected number)"), reason_kind("not json")
    ('wrong type', 'not json')
    """
    return reason.split(":", 1)[0]


def decode_batch(
    messages: Sequence[RawMessage],
    now: float,
    index: SeriesIndex,
    *,
    loads: Callable[[bytes], Any] = orjson.loads,
) -> Decoded:
    """Decode a batch of messages into point columns; bad messages become rejects.

    ``now`` (seconds since the epoch) is injected so replay and tests decide "in the
    future" the same way. ``loads`` is the JSON parser; orjson refuses NaN, Infinity and
    out-of-range numbers, a lenient parser lets them reach the finiteness checks.

    >>> idx = SeriesIndex()
    >>> msgs = [RawMessage(b'{"service":"api","metric":"lat","ts":1764132000,"value":2}', 0, 7),
    ...         RawMessage(b'{"service":"api","ts":1764132000,"metrics":{"lat":3,"err":0.5}}',
    ...                    0, 8),
    ...         RawMessage(b'{"service":"api","ts":true}', 0, 9)]
    >>> d = decode_batch(msgs, now=1764132000.0, index=idx)
    >>> d.rows.tolist(), d.values.tolist(), d.msg_index.tolist()
    ([0, 0, 1], [2.0, 3.0, 0.5], [0, 1, 1])
    >>> [(r.where, r.reason) for r in d.rejects]
    [('partition 0 offset 9', 'wrong type: ts (expected number)')]
    """
    rows: list[int] = []
    values: list[float] = []
    # Per accepted message: its index, ts and point count; ts and msg_index columns are
    # expanded from these with np.repeat instead of an append per point.
    msg_ids: list[int] = []
    msg_ts: list[float] = []
    counts: list[int] = []
    rejects: list[Reject] = []
    latest = now + MAX_FUTURE_S

    for i, msg in enumerate(messages):
        raw = msg.value
        if not raw:
            rejects.append(Reject(msg, "empty message"))
            continue
        if len(raw) > MAX_MESSAGE_BYTES:
            rejects.append(Reject(msg, f"message too large: {len(raw)} bytes > "
                                       f"{MAX_MESSAGE_BYTES}"))
            continue
        try:
            obj = loads(raw)
        except Exception:  # any parser failure (syntax, encoding, nesting depth) is "not json"
            rejects.append(Reject(msg, "not json"))
            continue
        if type(obj) is not dict:
            rejects.append(Reject(msg, "not an object"))
            continue
        try:
            service, ts, labels, lab = _head(obj, latest)
            if "metrics" in obj:
                if "value" in obj:
                    raise DecodeError("conflicting fields: value and metrics")
                n = _batch(obj, service, labels, lab, index, rows, values)
            elif "value" in obj:
                _point(obj, service, labels, lab, index, rows, values)
                n = 1
            else:
                raise DecodeError("missing field: value or metrics")
        except DecodeError as err:
            rejects.append(Reject(msg, err.reason))
            continue
        msg_ids.append(i)
        msg_ts.append(ts)
        counts.append(n)

    reps = np.array(counts, dtype=np.intp)
    return Decoded(
        rows=np.array(rows, dtype=np.intp),
        ts=np.repeat(np.array(msg_ts, dtype=np.float64), reps),
        values=np.array(values, dtype=np.float64),
        msg_index=np.repeat(np.array(msg_ids, dtype=np.intp), reps),
        rejects=rejects,
    )


def _head(obj: dict[str, Any], latest: float) -> tuple[str, float, dict[str, str], str]:
    """service, ts, labels and their key part, common to both shapes."""
    service = obj.get("service")
    if type(service) is not str:
        raise DecodeError("missing field: service" if "service" not in obj
                          else "wrong type: service (expected string)")
    if not service:
        raise DecodeError("empty field: service")
    ts = obj.get("ts")
    if type(ts) not in _NUMBER:
        raise DecodeError("missing field: ts" if "ts" not in obj
                          else "wrong type: ts (expected number)")
    ts = _finite(ts, "ts")
    if ts > latest:
        raise DecodeError(f"ts in the future: more than {MAX_FUTURE_S:g}s ahead")
    if ts < MIN_TS:
        raise DecodeError("ts before 2000")
    labels = obj.get("labels")
    if labels is None:
        return service, ts, {}, ""
    if type(labels) is not dict:
        raise DecodeError("wrong type: labels (expected object)")
    return service, ts, labels, _label_part(labels)


_LABEL_PARTS: dict[tuple[tuple[str, Any], ...], str] = {}
"""Memo of label items -> key part. Producers repeat a few label sets millions of times;
a hit skips sorting, joining and the per-label checks (an entry exists only once valid)."""


def _label_part(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    items = tuple(labels.items())
    try:
        lab = _LABEL_PARTS.get(items)
    except TypeError:  # an unhashable value (list, object): invalid, reported below
        lab = None
    if lab is not None:
        return lab
    if len(labels) > MAX_LABELS:
        raise DecodeError(f"too many labels: {len(labels)} > {MAX_LABELS}")
    for k, v in items:
        if type(v) is not str:
            raise DecodeError(f"label not a string: labels.{_name(k)}")
    lab = label_part(labels)
    if len(lab) <= _LABEL_KEEP_CHARS:  # long producer-chosen values are not pinned in memory
        if len(_LABEL_PARTS) >= _LABEL_CACHE_MAX:
            _LABEL_PARTS.clear()
        _LABEL_PARTS[items] = lab
    return lab


def _point(obj: dict[str, Any], service: str, labels: dict[str, str], lab: str,
           index: SeriesIndex, rows: list[int], values: list[float]) -> None:
    metric = obj.get("metric")
    if type(metric) is not str:
        raise DecodeError("missing field: metric" if "metric" not in obj
                          else "wrong type: metric (expected string)")
    if not metric:
        raise DecodeError("empty field: metric")
    value = obj["value"]
    if type(value) not in _NUMBER:
        raise DecodeError("wrong type: value (expected number)")
    value = _finite(value, "value")
    row = index.group(service, lab).get(metric)
    if row is None:
        row = index.add(service, metric, labels)
    rows.append(row)
    values.append(value)


def _batch(obj: dict[str, Any], service: str, labels: dict[str, str], lab: str,
           index: SeriesIndex, rows: list[int], values: list[float]) -> int:
    metrics = obj["metrics"]
    if type(metrics) is not dict:
        raise DecodeError("wrong type: metrics (expected object)")
    if not metrics:
        raise DecodeError("empty field: metrics")
    vals = list(metrics.values())
    # Whole-message checks at C speed; the per-metric loop runs only to name the culprit.
    if not _NUMBER.issuperset(map(type, vals)):
        for name, v in metrics.items():
            if type(v) not in _NUMBER:
                raise DecodeError(f"wrong type: metrics.{_name(name)} (expected number)")
    try:
        # A finite sum proves every value finite; an overflowing one falls to the loop.
        total_ok = math.isfinite(sum(vals))
    except OverflowError:  # an int beyond float range, only from lenient parsers
        total_ok = False
    if not total_ok:
        for name, v in metrics.items():
            _finite(v, f"metrics.{_name(name)}")
    if "" in metrics:
        raise DecodeError("empty field: metric")
    group = index.group(service, lab)
    found = list(map(group.get, metrics))
    if None in found:
        found = [index.add(service, name, labels) if r is None else r
                 for name, r in zip(metrics, found, strict=True)]
    rows.extend(cast("list[int]", found))  # no None is left after the fill-in above
    values.extend(vals)
    return len(vals)


def _finite(v: Any, field: str) -> float:
    try:
        f = float(v)
    except OverflowError:  # an int beyond float range
        raise DecodeError(f"non-finite value: {field}") from None
    if not math.isfinite(f):
        raise DecodeError(f"non-finite value: {field}")
    return f


def _name(name: str) -> str:
    return name if len(name) <= _NAME_MAX else name[: _NAME_MAX - 1] + "…"
