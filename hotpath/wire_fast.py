"""The fast path of wire decoding: a batch in which every message is well formed.

:func:`hotpath.wire.decode_batch` is the careful decoder: it walks each message in Python
and names the exact reason a bad one is rejected. Profiling the point-message case showed
that walk (dict look-ups and type checks per field, per message) costing three times the
JSON parse itself. Nearly every batch in production is clean, so this module tries the
batch first with checks that run per field across the whole batch:

- msgspec parses each message straight into a typed struct: types are checked in C
  (a ``bool`` is not a number, label values must be strings, metric values numbers);
- emptiness, shape (point or batch message) and ``ts`` bounds are checked once per batch,
  on lists and numpy arrays;
- a series' row is found with one dict look-up keyed on (service, the labels' raw JSON
  bytes, metric), so labels are neither built into a dict nor sorted per message; a batch
  message's rows with one look-up keyed on its whole tuple of metric names.

Any doubt — a message that does not parse, breaks a rule, or is unusual (mixed shapes in
one batch) — returns ``None`` and the caller runs the careful decoder on the whole batch,
which produces the same accepted points and the exact reasons. Nothing is added to the
series index before every check has passed, so a batch handed over leaves no trace. The
property test in tests/hotpath/test_wire_fast.py holds the two decoders to the same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import UNSET

from hotpath.series import SeriesIndex, label_part
from hotpath.wire import MAX_FUTURE_S, MAX_LABELS, MAX_MESSAGE_BYTES, MIN_TS, Decoded

_NO_LABELS = b"null"
_RAW_LABELS_MAX = 65_536  # why: distinct label encodings seen recently; cleared when full
_MEMO_SLACK = 65_536  # why: memo entries beyond the index's rows (reordered label keys)
# why: distinct (service, labels, metric names) of batch messages. An entry holds the names
# and their rows; messages with more names than _BATCH_MEMO_NAMES are resolved name by name
# instead, so the memo stays under ~1024 x 512 names (tens of MB) whatever producers send.
_BATCH_MEMO_MAX = 1024
_BATCH_MEMO_NAMES = 512
# why: a label set's raw JSON longer than this is resolved but not remembered, so 65,536
# entries cannot pin gigabytes of producer-chosen label values.
_RAW_LABELS_KEEP_BYTES = 1024


class _Message(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """Either wire shape; which fields are present decides the shape (checked per batch).

    ``value`` and ``metrics`` are UNSET when absent, so an explicit ``null`` beside the other
    field still reads as present (the careful decoder calls that conflicting). Unknown fields
    are refused here, not skipped: msgspec skips them without validating them, while the
    careful decoder's parse rejects bad JSON anywhere in the message.
    """

    service: str
    ts: float
    metric: str | None = None
    value: float | msgspec.UnsetType | None = msgspec.UNSET
    labels: msgspec.Raw = msgspec.Raw(_NO_LABELS)
    metrics: dict[str, float] | msgspec.UnsetType | None = msgspec.UNSET


_decode_message = msgspec.json.Decoder(_Message).decode
_decode_labels = msgspec.json.Decoder(dict[str, str] | None).decode
# UnicodeDecodeError is a ValueError; msgspec raises RecursionError on very deep nesting.
_PARSE_ERRORS = (msgspec.MsgspecError, TypeError, ValueError, RecursionError)

_RAW_LABELS: dict[bytes, tuple[str, dict[str, str]]] = {}
"""Raw label JSON -> (key part, labels): valid encodings only, so a hit needs no checks."""


def _labels(raw: bytes) -> tuple[str, dict[str, str]] | None:
    """Key part and labels of one raw ``labels`` value, None if the careful path must judge.

    >>> _labels(b'{"region":"eu","az":"b"}'), _labels(b'null'), _labels(b'{"a":1}')
    (('az=b,region=eu', {'region': 'eu', 'az': 'b'}), ('', {}), None)
    """
    hit = _RAW_LABELS.get(raw)
    if hit is not None:
        return hit
    try:
        labels = _decode_labels(raw)
    except _PARSE_ERRORS:
        return None
    if labels is None:
        labels = {}
    if len(labels) > MAX_LABELS:
        return None
    found = (label_part(labels), labels)
    if len(raw) <= _RAW_LABELS_KEEP_BYTES:
        if len(_RAW_LABELS) >= _RAW_LABELS_MAX:
            _RAW_LABELS.clear()
        _RAW_LABELS[raw] = found
    return found


def _times_ok(ts: npt.NDArray[np.float64], now: float) -> bool:
    return bool(ts.size == 0 or (ts.max() <= now + MAX_FUTURE_S and ts.min() >= MIN_TS))


def decode_fast(messages: Sequence[Any], now: float, index: SeriesIndex) -> Decoded | None:
    """The batch's point columns when every message is well formed, else None.

    ``messages`` are :class:`hotpath.wire.RawMessage` or anything with ``.value`` bytes
    (aiokafka's ConsumerRecord). Same output as :func:`hotpath.wire.decode_batch` on a
    clean batch of one shape.

    >>> idx = SeriesIndex()
    >>> from hotpath.wire import RawMessage
    >>> ok = [RawMessage(b'{"service":"api","metric":"lat","ts":1764132000,"value":2}', 0, 7)]
    >>> decode_fast(ok, 1764132000.0, idx).values.tolist(), idx.key(0)
    ([2.0], 'api|lat|')
    >>> decode_fast(ok + [RawMessage(b'{"service":"api","ts":true}', 0, 8)], 1764132000.0, idx)
    """
    raws = [m.value for m in messages]
    try:
        if not raws or max(map(len, raws)) > MAX_MESSAGE_BYTES:
            return None
        objs = list(map(_decode_message, raws))
    except _PARSE_ERRORS:  # None or empty values, bad JSON, wrong types
        return None
    values = [o.value for o in objs]
    unset = values.count(UNSET)
    if unset == 0 and None not in values:
        return _points(objs, values, now, index)
    if unset == len(values):
        return _batches(objs, now, index)
    return None  # both shapes in one batch, or a null value: the careful path decides


def _points(objs: list[_Message], values: list[Any], now: float,
            index: SeriesIndex) -> Decoded | None:
    n = len(objs)
    metrics = [o.metric for o in objs]
    services = [o.service for o in objs]
    if ([o.metrics for o in objs].count(UNSET) != n or None in metrics or "" in metrics
            or "" in services):
        return None
    ts = np.array([o.ts for o in objs], dtype=np.float64)
    if not _times_ok(ts, now):
        return None
    raw_labels = [bytes(o.labels) for o in objs]
    memo = index.wire_rows
    # No None is left in metrics (checked above); the cast costs nothing at run time.
    keys = cast("list[tuple[str, bytes, str]]",
                list(zip(services, raw_labels, metrics, strict=True)))
    rows = list(map(memo.get, keys))
    if None in rows:
        # In message order (a dict, not a set): new series get rows as the careful path
        # gives them, so replay and restart assign the same rows.
        missing = dict.fromkeys(k for k, r in zip(keys, rows, strict=True) if r is None)
        parts = {raw: _labels(raw) for _, raw, _ in missing}
        if None in parts.values():
            return None  # a bad label set: checked before anything is added to the index
        if len(memo) > index.n + _MEMO_SLACK:
            memo.clear()  # only reordered label keys grow it past the rows; start over
        for key in missing:
            service, raw, metric = key
            lab, labels = parts[raw]  # type: ignore[misc]  # None was excluded above
            row = index.group(service, lab).get(metric)
            memo[key] = index.add(service, metric, labels) if row is None else row
        rows = list(map(memo.__getitem__, keys))
    return Decoded(rows=np.array(rows, dtype=np.intp), ts=ts,
                   values=np.array(values, dtype=np.float64),
                   msg_index=np.arange(n, dtype=np.intp), rejects=[])


def _batches(objs: list[_Message], now: float, index: SeriesIndex) -> Decoded | None:
    ts = np.array([o.ts for o in objs], dtype=np.float64)
    if not _times_ok(ts, now):
        return None
    heads: list[tuple[str, bytes, str, dict[str, str], dict[str, float]]] = []
    for o in objs:
        m = o.metrics
        if not isinstance(m, dict) or not m or "" in m or not o.service:
            return None
        raw = bytes(o.labels)
        found = _labels(raw)
        if found is None:
            return None
        heads.append((o.service, raw, found[0], found[1], m))
    memo = index.wire_batches
    parts: list[npt.NDArray[np.intp]] = []
    values: list[float] = []
    counts: list[int] = []
    for service, raw, lab, labels, m in heads:
        # A producer sends the same metric names in every message of a service: one look-up
        # on the whole name tuple replaces a look-up per metric.
        key = (service, raw, tuple(m)) if len(m) <= _BATCH_MEMO_NAMES else None
        got = memo.get(key) if key is not None else None
        if got is None:
            group = index.group(service, lab)
            found_rows = [group.get(name) for name in m]
            got = np.array([index.add(service, name, labels) if r is None else r
                            for name, r in zip(m, found_rows, strict=True)], dtype=np.intp)
            if key is not None:
                if len(memo) >= _BATCH_MEMO_MAX:
                    memo.clear()
                memo[key] = got
        parts.append(got)
        values.extend(m.values())
        counts.append(len(m))
    reps = np.array(counts, dtype=np.intp)
    return Decoded(rows=np.concatenate(parts), ts=np.repeat(ts, reps),
                   values=np.array(values, dtype=np.float64),
                   msg_index=np.repeat(np.arange(len(objs), dtype=np.intp), reps), rejects=[])
