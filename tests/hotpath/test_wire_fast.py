"""The fast wire decoder against the careful one: same points and series, or it declines.

The contract of :func:`hotpath.wire_fast.decode_fast`: on any batch it returns either None,
leaving the series index exactly as it was, or a ``Decoded`` equal to what
:func:`hotpath.wire.decode_batch` gives on an index in the same prior state (same columns,
no rejects, the same series assigned in the same order). The property tests feed sequences
of batches into a pair of indexes, the fast one falling back to the careful decoder the way
``PartitionState.ingest`` does, so the raw-label memo is exercised across batches.

Inputs that once made the two disagree (rows of new series in set order, ``null`` beside
the other shape, bad JSON inside unknown fields) are pinned by the tests at the end, and
the property test draws them too.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from escalation.finding import series_key
from hotpath import wire_fast
from hotpath.series import SeriesIndex
from hotpath.wire import (
    MAX_FUTURE_S,
    MAX_MESSAGE_BYTES,
    MIN_TS,
    REASON_KINDS,
    Decoded,
    RawMessage,
    decode_batch,
    reason_kind,
)
from hotpath.wire_fast import decode_fast

NOW = 1_764_132_000.0
# orjson refuses 1e400, NaN and out-of-range integers as "not json", so with the default
# parser the careful decoder never reaches its own finiteness check.
UNREACHABLE_KINDS = frozenset({"non-finite value"})

Fields = list[tuple[str, bytes]]
Body = bytes | None
Defect = tuple[str, Callable[[Fields], Body]]  # (expected reason kind, what it does)


def js(v: Any, ascii_only: bool = True) -> bytes:
    return json.dumps(v, ensure_ascii=ascii_only).encode()


def obj(fields: Fields, sep: bytes = b",") -> bytes:
    return b"{" + sep.join(js(k) + b":" + v for k, v in fields) + b"}"


def point(service: str = "api", metric: str = "lat", ts: float = NOW, value: float = 1.5,
          labels: dict[str, str] | None = None) -> bytes:
    body: dict[str, Any] = {"service": service, "metric": metric, "ts": ts, "value": value}
    if labels is not None:
        body["labels"] = labels
    return orjson.dumps(body)


def batch(metrics: dict[str, float], service: str = "api", ts: float = NOW,
          labels: dict[str, str] | None = None) -> bytes:
    body: dict[str, Any] = {"service": service, "ts": ts, "metrics": metrics}
    if labels is not None:
        body["labels"] = labels
    return orjson.dumps(body)


def raws(*bodies: Body) -> list[RawMessage]:
    return [RawMessage(b, 0, i) for i, b in enumerate(bodies)]


Snapshot = tuple[int, list[str], list[Any], dict[tuple[str, bytes, str], int],
                 dict[tuple[str, bytes, tuple[str, ...]], list[int]]]


def snapshot(idx: SeriesIndex) -> Snapshot:
    """Rows, keys, metas and both wire memos: all a declined batch must leave as they were."""
    return (idx.n, [idx.key(r) for r in range(idx.n)], [idx.meta(r) for r in range(idx.n)],
            dict(idx.wire_rows), {k: v.tolist() for k, v in idx.wire_batches.items()})


def columns(d: Decoded) -> tuple[list[int], list[float], list[float], list[int]]:
    return d.rows.tolist(), d.ts.tolist(), d.values.tolist(), d.msg_index.tolist()


def memo_consistent(idx: SeriesIndex) -> None:
    """Every memo entry points at the rows of the series its raw labels and names name."""
    for (service, raw, metric), row in idx.wire_rows.items():
        assert idx.key(row) == series_key(service, metric, orjson.loads(raw) or {})
    for (service, raw, names), rows in idx.wire_batches.items():
        labels = orjson.loads(raw) or {}
        assert [idx.key(r) for r in rows] == [series_key(service, n, labels) for n in names]


# --- generating batches ---------------------------------------------------------------

SERVICES = ("api", "checkout", "café")
METRICS = ("lat", "err", "cpu", "p99 µs")
LABEL_SETS: tuple[list[tuple[str, str]], ...] = (
    [("region", "eu")],
    [("region", "eu"), ("az", "b")],
    [("région", "ouest"), ("host", "h-1"), ("emoji", "🙂")],
    [(f"k{i:02d}", "v") for i in range(32)],  # the most a message may carry
)
# Unknown fields are ignored by both decoders; these are all valid JSON.
EXTRAS = (b'{"a":[1,2.5,null,true,{"b":"\\u00e9"}]}', b'"\\ud83d\\ude42"', js("café", False),
          b"123456789012345678901234567890", b"-0", b"[]", b"{}", b"null", b'"\\n\\t\\"\\\\"',
          b"[" * 50 + b"]" * 50, b"1e-400")
EXTRA_KEYS = ("note", "trace", "Value", "v2")
TOO_MANY = {f"l{i:02d}": "v" for i in range(33)}
TOO_LARGE = b" " * MAX_MESSAGE_BYTES


def _set(key: str, raw: bytes) -> Callable[[Fields], Body]:
    """Every occurrence of ``key`` replaced, or the field added where it was absent."""
    def apply(f: Fields) -> Body:
        if all(k != key for k, _ in f):
            return obj([*f, (key, raw)])
        return obj([(k, raw if k == key else v) for k, v in f])
    return apply


def _drop(key: str) -> Callable[[Fields], Body]:
    return lambda f: obj([(k, v) for k, v in f if k != key])


def _add(key: str, raw: bytes) -> Callable[[Fields], Body]:
    return lambda f: obj([*f, (key, raw)])


def _whole(raw: Body) -> Callable[[Fields], Body]:
    return lambda f: raw


ANY_DEFECTS: list[Defect] = [
    ("empty message", _whole(b"")), ("empty message", _whole(None)),
    ("message too large", lambda f: TOO_LARGE + obj(f)),
    ("not json", lambda f: obj(f)[:-1]), ("not json", lambda f: obj(f) + b"x"),
    ("not json", lambda f: b"\xef\xbb\xbf" + obj(f)),
    ("not json", _set("service", b'"\\ud800"')), ("not json", _set("service", b'"a\xff"')),
    ("not json", _set("labels", b'{"region":"\\udc00"}')),
    ("not json", _add("note", b'"\\ud800x"')),
    ("not json", _set("ts", b"1e400")), ("not json", _set("ts", b"NaN")),
    ("not an object", _whole(b"[1]")), ("not an object", _whole(b"null")),
    ("not an object", _whole(b'"x"')), ("not an object", _whole(b"3")),
    ("missing field", _drop("service")), ("missing field", _drop("ts")),
    ("wrong type", _set("service", b"1")), ("wrong type", _set("service", b"null")),
    ("wrong type", _set("ts", js(str(NOW)))), ("wrong type", _set("ts", b"true")),
    ("wrong type", _set("ts", b"null")),
    ("empty field", _set("service", b'""')),
    ("ts in the future", _set("ts", js(NOW + MAX_FUTURE_S + 1))),
    ("ts before 2000", _set("ts", b"0")), ("ts before 2000", _set("ts", js(MIN_TS - 0.5))),
    ("wrong type", _set("labels", b"[]")), ("wrong type", _set("labels", b'"eu"')),
    ("label not a string", _set("labels", b'{"a":1}')),
    ("label not a string", _set("labels", b'{"region":"eu","a":null}')),
    ("label not a string", _set("labels", b'{"a":true}')),
    ("label not a string", _set("labels", b'{"a":["x"]}')),
    ("too many labels", _set("labels", js(TOO_MANY))),
]
POINT_DEFECTS: list[Defect] = [
    ("missing field", _drop("metric")), ("missing field", _drop("value")),
    ("wrong type", _set("metric", b"1")), ("wrong type", _set("metric", b"null")),
    ("empty field", _set("metric", b'""')), ("not json", _set("metric", b'"\\ud800"')),
    ("wrong type", _set("value", b"true")), ("wrong type", _set("value", b"false")),
    ("wrong type", _set("value", b'"1"')), ("wrong type", _set("value", b"null")),
    ("wrong type", _set("value", b"[1]")),
    ("not json", _set("value", b"1e400")), ("not json", _set("value", b"-1e400")),
    ("not json", _set("value", b"1" + b"0" * 400)),
    ("conflicting fields", _add("metrics", b'{"x":1}')),
]
BATCH_DEFECTS: list[Defect] = [
    ("missing field", _drop("metrics")),
    ("wrong type", _set("metrics", b"[]")), ("wrong type", _set("metrics", b"null")),
    ("wrong type", _set("metrics", b'{"x":true}')), ("wrong type", _set("metrics", b'{"x":"1"}')),
    ("wrong type", _set("metrics", b'{"x":1,"y":null}')),
    ("empty field", _set("metrics", b"{}")), ("empty field", _set("metrics", b'{"":1}')),
    ("not json", _set("metrics", b'{"x":1e400}')),
    ("conflicting fields", _add("value", b"1")),
]
DEEP = b"[" * 1100 + b"]" * 1100  # past orjson's nesting limit and msgspec's recursion
ANY_DEFECTS.append(("not json", _add("note", DEEP)))
# Inputs that once made the decoders disagree (pinned by the tests at the end).
GAP_POINT: list[Defect] = [("conflicting fields", _add("metrics", b"null"))]
GAP_BATCH: list[Defect] = [("conflicting fields", _add("value", b"null"))]
GAP_ANY: list[Defect] = [("not json", _add("note", b'"\xff"')),
                         ("not json", _add("note", b"1e400")),
                         ("not json", _add("note", b"1" + b"0" * 400))]


def _literal_pools(seed: int = 6) -> tuple[list[bytes], list[bytes]]:
    """Seeded pools of ts and value literals: one cheap draw each instead of a float strategy
    per field, with the edges a float strategy would find (subnormals, extremes, -0, bounds,
    integers past 64 bits, which both parsers read as floats, long decimal expansions)."""
    rng = random.Random(seed)
    ts = [js(MIN_TS), js(NOW + MAX_FUTURE_S), js(int(MIN_TS)), b"1764132000.0", b"1.7641e9"]
    ts += [js(rng.randint(int(MIN_TS), int(NOW))) for _ in range(40)]
    ts += [js(rng.uniform(NOW - 86_400, NOW + MAX_FUTURE_S)) for _ in range(40)]
    values = [b"0", b"-0", b"-0.0", b"1E3", b"1e-400", b"2.5e+10", b"5e-324",
              js(sys.float_info.max), js(-sys.float_info.max), js(sys.float_info.min),
              b"0.1000000000000000055511151231257827021181583404541015625",
              js(2**53 + 1), js(2**63), js(2**64), js(-(2**63) - 1), js(10**30), js(10**300)]
    finite = (f for f in (struct.unpack("<d", rng.randbytes(8))[0] for _ in range(400))
              if math.isfinite(f))
    values += [js(f) for f in itertools.islice(finite, 80)]
    values += [js(rng.uniform(-1e3, 1e3)) for _ in range(40)]
    values += [js(rng.randint(-(2**70), 2**70)) for _ in range(40)]
    return ts, values


_TS_POOL, _VALUE_POOL = _literal_pools()
TS = st.sampled_from(_TS_POOL)
VALUES = st.sampled_from(_VALUE_POOL)


def _label_encodings() -> list[bytes]:
    """Every label set in several key orders, escaped or raw UTF-8, spaced or not, and with a
    repeated key (the last value wins in both parsers): many encodings per series."""
    out = [b"null", b"{}"]
    for items in LABEL_SETS:
        orders = ([list(p) for p in itertools.permutations(items)] if len(items) <= 3
                  else [items, items[::-1], items[7:] + items[:7]])
        for order in orders:
            for ascii_only in (True, False):
                pairs = [js(k, ascii_only) + b":" + js(v, ascii_only) for k, v in order]
                out.append(b"{" + b",".join(pairs) + b"}")
                out.append(b"{ " + b" , ".join(
                    [js(order[-1][0], ascii_only) + b':"overwritten"', *pairs]) + b" }")
    return out


LABELS: st.SearchStrategy[Fields] = st.one_of(
    st.just([]), st.sampled_from(_label_encodings()).map(lambda raw: [("labels", raw)]))
SERVICE = st.sampled_from(SERVICES)
METRIC = st.sampled_from(METRICS)
METRIC_NAMES = st.lists(METRIC, min_size=1, max_size=4, unique=True)
EXTRA = st.tuples(st.sampled_from(EXTRA_KEYS), st.sampled_from(EXTRAS))
SHAPES = st.sampled_from(["point", "batch"])
MODES = st.sampled_from(["point", "batch", "mixed"])
BROKEN = st.sampled_from(["none", "one", "some"])
SEPARATORS = st.sampled_from([b",", b" , "])
ONE_IN_5 = st.integers(0, 4)
POOLS = {(shape, gaps): st.sampled_from(
    ANY_DEFECTS + (POINT_DEFECTS if shape == "point" else BATCH_DEFECTS)
    + ((GAP_ANY + (GAP_POINT if shape == "point" else GAP_BATCH)) if gaps else []))
    for shape in ("point", "batch") for gaps in (False, True)}


@st.composite
def metrics_raw(draw: st.DrawFn) -> bytes:
    names = draw(METRIC_NAMES)
    pairs = [js(n) + b":" + draw(VALUES) for n in names]
    if draw(st.booleans()):  # a repeated metric name: the last value wins in both parsers
        pairs.insert(0, js(names[-1]) + b":" + draw(VALUES))
    return b"{" + b",".join(pairs) + b"}"


@st.composite
def message(draw: st.DrawFn, mode: str, broken: str, gaps: bool) -> tuple[Body, str | None]:
    """One message body and the reason kind the careful decoder must give (None: accepted)."""
    shape = draw(SHAPES) if mode == "mixed" else mode
    ascii_only = draw(st.booleans())
    fields: Fields = [("service", js(draw(SERVICE), ascii_only)), ("ts", draw(TS)),
                      *draw(LABELS)]
    if shape == "point":
        fields += [("metric", js(draw(METRIC), ascii_only)), ("value", draw(VALUES))]
    else:
        fields.append(("metrics", draw(metrics_raw())))
    if draw(ONE_IN_5) == 0:
        fields.append(draw(EXTRA))
    fields = list(draw(st.permutations(fields)))
    if draw(ONE_IN_5) == 0:  # a repeated ts field: the later one counts
        fields.insert(0, ("ts", draw(TS)))
    if broken == "no" or (broken == "maybe" and draw(ONE_IN_5) != 0):
        return obj(fields, draw(SEPARATORS)), None
    kind, apply = draw(POOLS[shape, gaps])
    return apply(fields), kind


@st.composite
def batch_of(draw: st.DrawFn, gaps: bool) -> list[tuple[Body, str | None]]:
    """Clean, with exactly one broken message (the fast path must decline it all), or with
    broken messages sprinkled in."""
    mode, broken = draw(MODES), draw(BROKEN)
    msgs = draw(st.lists(message(mode, "maybe" if broken == "some" else "no", gaps),
                         min_size=1, max_size=30))
    if broken == "one":
        msgs[draw(st.integers(0, len(msgs) - 1))] = draw(message(mode, "yes", gaps))
    return msgs


def decode_both(msgs: Sequence[Any], fast_idx: SeriesIndex, care_idx: SeriesIndex,
                exact_rows: bool = True) -> tuple[Decoded | None, Decoded]:
    """Both decoders on indexes in the same prior state, held to the contract; the fast
    index falls back to the careful decoder as ``PartitionState.ingest`` does."""
    before = snapshot(fast_idx)
    fast = decode_fast(msgs, NOW, fast_idx)
    want = decode_batch(msgs, NOW, care_idx)
    if fast is None:
        assert snapshot(fast_idx) == before
        got = decode_batch(msgs, NOW, fast_idx)
        assert got.rejects == want.rejects
    else:
        got = fast
        assert got.rejects == want.rejects == []
    if exact_rows:
        assert columns(got) == columns(want)
        assert snapshot(fast_idx)[:3] == snapshot(care_idx)[:3]
    else:  # the same series per point, whatever row numbers they were given
        assert [fast_idx.key(r) for r in got.rows] == [care_idx.key(r) for r in want.rows]
        assert columns(got)[1:] == columns(want)[1:]
        assert sorted(snapshot(fast_idx)[1]) == sorted(snapshot(care_idx)[1])
    assert [a.dtype for a in (got.rows, got.ts, got.values, got.msg_index)] == [
        np.intp, np.float64, np.float64, np.intp]
    memo_consistent(fast_idx)
    return fast, want


def check_sequence(batches: Sequence[list[tuple[Body, str | None]]], exact_rows: bool) -> None:
    """Feed the batches in turn to a fast index and a careful one."""
    fast_idx, care_idx = SeriesIndex(), SeriesIndex()
    for batch_ in batches:
        fast, want = decode_both(raws(*(body for body, _ in batch_)), fast_idx, care_idx,
                                 exact_rows)
        event("fast path declined" if fast is None else "fast path taken")
        assert [(r.message.offset, reason_kind(r.reason)) for r in want.rejects] == [
            (i, kind) for i, (_, kind) in enumerate(batch_) if kind is not None]
    fast_keys, care_keys = snapshot(fast_idx)[1], snapshot(care_idx)[1]
    assert fast_keys == care_keys if exact_rows else sorted(fast_keys) == sorted(care_keys)


SEQUENCES_SETTINGS = settings(max_examples=300, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])


@SEQUENCES_SETTINGS
@given(st.lists(batch_of(gaps=True), min_size=1, max_size=4))
def test_fast_equals_careful_or_declines(batches: list[list[tuple[Body, str | None]]]) -> None:
    check_sequence(batches, exact_rows=True)


@SEQUENCES_SETTINGS
@given(st.lists(batch_of(gaps=False), min_size=1, max_size=4))
def test_fast_gives_the_same_series_and_points_or_declines(
        batches: list[list[tuple[Body, str | None]]]) -> None:
    check_sequence(batches, exact_rows=False)


def test_the_generated_defects_cover_every_reachable_reason_kind() -> None:
    kinds = {k for k, _ in ANY_DEFECTS + POINT_DEFECTS + BATCH_DEFECTS}
    assert kinds == REASON_KINDS - UNREACHABLE_KINDS
    assert decode_batch(raws(point(value=1.5).replace(b"1.5", b"1e400")), NOW,
                        SeriesIndex()).rejects[0].reason == "not json"


# --- examples -------------------------------------------------------------------------

EU = {"region": "eu"}


def test_a_clean_point_batch_takes_the_fast_path() -> None:
    idx = SeriesIndex()
    assert idx.add("api", "err", EU) == 0
    d = decode_fast(raws(point("api", "lat", NOW - 2, 2.0, EU),
                         point("api", "err", NOW - 1, 0.5, EU),
                         point("api", "lat", NOW, 3, EU)), NOW, idx)
    assert d is not None and d.rejects == []
    assert columns(d) == ([1, 0, 1], [NOW - 2, NOW - 1, NOW], [2.0, 0.5, 3.0], [0, 1, 2])
    assert snapshot(idx)[1] == ["api|err|region=eu", "api|lat|region=eu"]
    assert idx.wire_rows == {("api", b'{"region":"eu"}', "lat"): 1,
                             ("api", b'{"region":"eu"}', "err"): 0}


def test_a_clean_batch_message_batch_takes_the_fast_path() -> None:
    idx = SeriesIndex()
    d = decode_fast(raws(batch({"lat": 2.0, "err": 0.5}, ts=NOW - 1, labels=EU),
                         batch({"err": 1, "cpu": 0.25}, service="db")), NOW, idx)
    assert d is not None and d.rejects == []
    assert columns(d) == ([0, 1, 2, 3], [NOW - 1, NOW - 1, NOW, NOW], [2.0, 0.5, 1.0, 0.25],
                          [0, 0, 1, 1])
    assert snapshot(idx)[1] == ["api|lat|region=eu", "api|err|region=eu", "db|err|",
                                "db|cpu|"]
    assert idx.meta(0) == ("api", "lat", EU) and idx.meta(3) == ("db", "cpu", {})


def _bad(shape: str, **over: Any) -> bytes:
    body: dict[str, Any] = ({"service": "api", "metric": "lat", "ts": NOW, "value": 1.5}
                            if shape == "point" else
                            {"service": "api", "ts": NOW, "metrics": {"lat": 1.5}})
    body.update(over)
    return orjson.dumps({k: v for k, v in body.items() if v is not _DROP})


_DROP = object()
_LARGE = TOO_LARGE + point()
ONE_BAD: list[tuple[str, Body, str]] = [
    ("point", None, "empty message"),
    ("point", _LARGE, f"message too large: {len(_LARGE)} bytes > {MAX_MESSAGE_BYTES}"),
    ("point", b'{"service":"api"', "not json"),
    ("point", point().replace(b"1.5", b"1e400"), "not json"),
    ("point", point().replace(b'"api"', b'"\\ud800"'), "not json"),
    ("batch", b'[{"service":"api"}]', "not an object"),
    ("point", _bad("point", service=_DROP), "missing field: service"),
    ("point", _bad("point", value=_DROP), "missing field: value or metrics"),
    ("point", _bad("point", service=1), "wrong type: service (expected string)"),
    ("point", _bad("point", value=True), "wrong type: value (expected number)"),
    ("batch", _bad("batch", metrics={"lat": False}), "wrong type: metrics.lat (expected number)"),
    ("point", _bad("point", labels=None, ts="now"), "wrong type: ts (expected number)"),
    ("point", _bad("point", metric=""), "empty field: metric"),
    ("batch", _bad("batch", metrics={}), "empty field: metrics"),
    ("batch", _bad("batch", value=1), "conflicting fields: value and metrics"),
    ("point", _bad("point", ts=NOW + MAX_FUTURE_S + 1), "ts in the future: more than 300s ahead"),
    ("batch", _bad("batch", ts=MIN_TS - 1), "ts before 2000"),
    ("point", _bad("point", labels={"region": "eu", "az": None}), "label not a string: labels.az"),
    ("batch", _bad("batch", labels=TOO_MANY), "too many labels: 33 > 32"),
]


@pytest.mark.parametrize(("shape", "body", "reason"), ONE_BAD,
                         ids=[f"{s}: {r}"[:40] for s, _, r in ONE_BAD])
def test_one_bad_message_sends_the_batch_to_the_careful_path(shape: str, body: Body,
                                                             reason: str) -> None:
    good = point(labels=EU) if shape == "point" else batch({"lat": 1.5}, labels=EU)
    idx = SeriesIndex()
    decode_batch(raws(good), NOW, idx)  # one known series, so rows are fixed
    before = snapshot(idx)
    msgs = raws(good, body, good)
    assert decode_fast(msgs, NOW, idx) is None
    assert snapshot(idx) == before
    d = decode_batch(msgs, NOW, idx)
    assert [(r.message.offset, r.reason) for r in d.rejects] == [(1, reason)]
    assert columns(d) == ([0, 0], [NOW, NOW], [1.5, 1.5], [0, 2])


def test_both_shapes_in_one_batch_go_to_the_careful_path() -> None:
    idx = SeriesIndex()
    msgs = raws(point(labels=EU), batch({"err": 0.5}, labels=EU))
    assert decode_fast(msgs, NOW, idx) is None
    assert idx.n == 0 and idx.wire_rows == {}
    d = decode_batch(msgs, NOW, idx)
    assert d.rejects == [] and columns(d) == ([0, 1], [NOW, NOW], [1.5, 0.5], [0, 1])


def test_one_label_set_in_any_key_order_or_escaping_is_one_series() -> None:
    fast_idx, care_idx = SeriesIndex(), SeriesIndex()
    encodings = [b'{"region":"eu","az":"b","host":"caf\\u00e9"}',
                 b'{"az":"b","region":"eu","host":"caf\\u00e9"}',
                 '{"host":"café","az":"b","region":"eu"}'.encode()]
    for raw in encodings:
        body = b'{"service":"api","metric":"lat","ts":%d,"value":1,"labels":%s}' % (NOW, raw)
        fast, _ = decode_both(raws(body), fast_idx, care_idx)
        assert fast is not None and fast.rows.tolist() == [0]
    assert fast_idx.n == 1 and fast_idx.key(0) == "api|lat|az=b,host=café,region=eu"
    assert fast_idx.wire_rows == {("api", raw, "lat"): 0 for raw in encodings}


@pytest.mark.parametrize("shape", ["point", "batch"])
def test_a_33_label_set_is_declined_and_leaves_the_index_untouched(shape: str) -> None:
    fast_idx, care_idx = SeriesIndex(), SeriesIndex()
    decode_both(raws(point(labels=EU)), fast_idx, care_idx)
    bad = point(labels=TOO_MANY) if shape == "point" else batch({"lat": 1}, labels=TOO_MANY)
    fast, want = decode_both(raws(point(labels=EU, metric="err"), bad), fast_idx, care_idx)
    assert fast is None
    assert [r.reason for r in want.rejects] == ["too many labels: 33 > 32"]
    assert snapshot(fast_idx)[1] == ["api|lat|region=eu", "api|err|region=eu"]


def test_any_record_with_value_bytes_decodes_like_a_raw_message() -> None:
    bodies = [point(labels=EU), point(labels=EU, value=2.5, ts=NOW - 1)]
    records = [ConsumerRecord[bytes, bytes](
        topic="telemetry", partition=3, offset=100 + i, timestamp=int(NOW * 1000),
        timestamp_type=0, key=b"api", value=body, checksum=None, serialized_key_size=3,
        serialized_value_size=len(body), headers=[("trace", b"1")])
        for i, body in enumerate(bodies)]
    got = decode_fast(records, NOW, SeriesIndex())
    want = decode_batch(raws(*bodies), NOW, SeriesIndex())
    assert got is not None and columns(got) == columns(want) == (
        [0, 0], [NOW, NOW - 1], [1.5, 2.5], [0, 1])
    bad = dataclasses.replace(records[0], value=b"{")
    assert decode_fast([*records, bad], NOW, SeriesIndex()) is None


def test_the_memo_is_cleared_not_grown_by_endless_reorderings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire_fast, "_MEMO_SLACK", 2)
    idx = SeriesIndex()
    sizes = []
    for order in itertools.permutations([("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]):
        d = decode_fast(raws(point(labels=dict(order))), NOW, idx)
        assert d is not None and d.rows.tolist() == [0]
        sizes.append(len(idx.wire_rows))
        memo_consistent(idx)
    # Checked before each batch adds its keys: full past n + slack, it starts over.
    assert sizes == [1, 2, 3, 4] * 6
    assert idx.n == 1


def test_the_batch_memo_is_cleared_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire_fast, "_BATCH_MEMO_MAX", 3)
    idx = SeriesIndex()
    sizes = []
    for names in itertools.permutations(["lat", "err", "cpu"]):
        d = decode_fast(raws(batch(dict.fromkeys(names, 1.0), labels=EU)), NOW, idx)
        assert d is not None
        assert [idx.key(r) for r in d.rows] == [f"api|{n}|region=eu" for n in names]
        sizes.append(len(idx.wire_batches))
        memo_consistent(idx)
    assert sizes == [1, 2, 3, 1, 2, 3] and idx.n == 3


def test_deep_nesting_is_declined_not_raised() -> None:
    body = point()[:-1] + b',"note":' + DEEP + b"}"
    fast, want = decode_both(raws(body), SeriesIndex(), SeriesIndex())
    assert fast is None and [r.reason for r in want.rejects] == ["not json"]


# --- inputs that once made the decoders disagree ---------------------------------------


def test_new_point_series_get_rows_in_message_order() -> None:
    bodies = [point(metric=f"m{i:02d}") for i in range(20)]
    fast, _ = decode_both(raws(*bodies), SeriesIndex(), SeriesIndex())
    assert fast is not None and fast.rows.tolist() == list(range(20))


NULL_BESIDE = [
    b'{"service":"api","metric":"lat","ts":%d,"value":1,"metrics":null}' % NOW,
    b'{"service":"api","ts":%d,"value":null,"metrics":{"lat":1}}' % NOW,
]


@pytest.mark.parametrize("body", NULL_BESIDE, ids=["metrics null", "value null"])
def test_null_beside_the_other_shape_conflicts(body: bytes) -> None:
    _, want = decode_both(raws(body), SeriesIndex(), SeriesIndex())
    assert [r.reason for r in want.rejects] == ["conflicting fields: value and metrics"]


UNCHECKED_UNKNOWN = [b'"\xff"', b"1e400",
                     b"1" + b"0" * 400]


@pytest.mark.parametrize("extra", UNCHECKED_UNKNOWN, ids=["invalid utf-8", "1e400", "10**400"])
def test_unknown_fields_are_json_checked(extra: bytes) -> None:
    body = point()[:-1] + b',"note":' + extra + b"}"
    _, want = decode_both(raws(body), SeriesIndex(), SeriesIndex())
    assert [r.reason for r in want.rejects] == ["not json"]


def test_messages_with_many_names_and_long_labels_are_decoded_but_not_remembered() -> None:
    idx = SeriesIndex()
    names = {f"m{j:04d}": 1.0 for j in range(wire_fast._BATCH_MEMO_NAMES + 1)}
    body = orjson.dumps({"service": "wide", "ts": NOW, "metrics": names})
    got = decode_fast(raws(body, body), NOW, idx)
    assert got is not None and got.points == 2 * len(names)
    assert idx.wire_batches == {}
    long_labels = {"note": "x" * wire_fast._RAW_LABELS_KEEP_BYTES}
    raw = orjson.dumps(long_labels)
    assert decode_fast(raws(point(labels=long_labels)), NOW, idx) is not None
    assert raw not in wire_fast._RAW_LABELS
