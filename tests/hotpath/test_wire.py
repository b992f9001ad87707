"""Wire format v1 decoding: exact DLQ reasons, columns, and never losing good data."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpath.errors import DecodeError
from hotpath.series import SeriesIndex
from hotpath.wire import (
    MAX_MESSAGE_BYTES,
    REASON_KINDS,
    Decoded,
    RawMessage,
    Reject,
    decode_batch,
    reason_kind,
)

NOW = 1_764_132_000.0


def msg(body: Any, offset: int = 0, partition: int = 0) -> RawMessage:
    raw = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    return RawMessage(raw, partition, offset)


def decode(*bodies: Any, index: SeriesIndex | None = None, **kw: Any) -> Decoded:
    return decode_batch([msg(b, offset=i) for i, b in enumerate(bodies)], NOW,
                        index if index is not None else SeriesIndex(), **kw)


def point(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"service": "checkout", "metric": "lat", "ts": NOW, "value": 1.5,
                            "labels": {"region": "eu"}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not _DROP}


def batch(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"service": "checkout", "ts": NOW, "labels": {"region": "eu"},
                            "metrics": {"lat": 1.5, "err": 0.01}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()
LONG = "m" * 70

BAD: list[tuple[str, Any, str]] = [
    ("none", None, "empty message"),
    ("empty bytes", b"", "empty message"),
    ("too large", b" " * MAX_MESSAGE_BYTES + orjson.dumps(point()),
     f"message too large: {MAX_MESSAGE_BYTES + len(orjson.dumps(point()))} bytes > 1048576"),
    ("syntax", b'{"service": ', "not json"),
    ("nan literal", b'{"service":"a","metric":"m","ts":1764132000,"value":NaN}', "not json"),
    ("out of range", b'{"service":"a","metric":"m","ts":1764132000,"value":1e999}', "not json"),
    ("invalid utf-8", b'{"service":"\xff"}', "not json"),
    ("array", [point()], "not an object"),
    ("string", "checkout", "not an object"),
    ("null", b"null", "not an object"),
    ("no service", point(service=_DROP), "missing field: service"),
    ("no ts", point(ts=_DROP), "missing field: ts"),
    ("no value", point(value=_DROP), "missing field: value or metrics"),
    ("no metric", point(metric=_DROP), "missing field: metric"),
    ("service number", point(service=3), "wrong type: service (expected string)"),
    ("service null", point(service=None), "wrong type: service (expected string)"),
    ("ts string", point(ts="1764132000"), "wrong type: ts (expected number)"),
    ("ts bool", point(ts=True), "wrong type: ts (expected number)"),
    ("metric number", point(metric=1), "wrong type: metric (expected string)"),
    ("value string", point(value="1.5"), "wrong type: value (expected number)"),
    ("value bool", point(value=True), "wrong type: value (expected number)"),
    ("value null", point(value=None), "wrong type: value (expected number)"),
    ("metrics list", batch(metrics=[1.0]), "wrong type: metrics (expected object)"),
    ("metric bool", batch(metrics={"lat": 1.0, "up": False}),
     "wrong type: metrics.up (expected number)"),
    ("metric string", batch(metrics={"lat": "1"}), "wrong type: metrics.lat (expected number)"),
    ("long name cut", batch(metrics={LONG: None}),
     f"wrong type: metrics.{'m' * 63}… (expected number)"),
    ("labels list", point(labels=["region"]), "wrong type: labels (expected object)"),
    ("labels string", batch(labels="region=eu"), "wrong type: labels (expected object)"),
    ("label number", point(labels={"region": "eu", "az": 2}), "label not a string: labels.az"),
    ("label null", point(labels={"az": None}), "label not a string: labels.az"),
    ("label list", batch(labels={"az": ["b"]}), "label not a string: labels.az"),
    ("too many labels", point(labels={f"l{i}": "v" for i in range(33)}),
     "too many labels: 33 > 32"),
    ("future", point(ts=NOW + 300.5), "ts in the future: more than 300s ahead"),
    ("future batch", batch(ts=NOW + 3600), "ts in the future: more than 300s ahead"),
    ("milliseconds", point(ts=NOW * 1000), "ts in the future: more than 300s ahead"),
    ("before 2000", point(ts=946_684_799.5), "ts before 2000"),
    ("zero ts", batch(ts=0), "ts before 2000"),
    ("empty service", point(service=""), "empty field: service"),
    ("empty metric", point(metric=""), "empty field: metric"),
    ("empty metric name", batch(metrics={"lat": 1.0, "": 2.0}), "empty field: metric"),
    ("empty metrics", batch(metrics={}), "empty field: metrics"),
    ("both shapes", point(metrics={"err": 1.0}), "conflicting fields: value and metrics"),
]


@pytest.mark.parametrize(("body", "reason"), [(b, r) for _, b, r in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_message_is_rejected_with_exact_reason(body: Any, reason: str) -> None:
    d = decode(body)
    assert [r.reason for r in d.rejects] == [reason]
    assert d.points == 0


# orjson refuses NaN, Infinity and 1e999 as "not json"; a lenient parser (the stdlib's) lets
# them through, and the finiteness checks must still hold.
NON_FINITE: list[tuple[str, bytes, str]] = [
    ("value nan", b'{"service":"a","metric":"m","ts":1764132000,"value":NaN}',
     "non-finite value: value"),
    ("value inf", b'{"service":"a","metric":"m","ts":1764132000,"value":1e999}',
     "non-finite value: value"),
    ("value huge int", b'{"service":"a","metric":"m","ts":1764132000,"value":1' + b"0" * 400
     + b"}", "non-finite value: value"),
    ("ts inf", b'{"service":"a","metric":"m","ts":Infinity,"value":1}', "non-finite value: ts"),
    ("ts nan", b'{"service":"a","metrics":{"x":1},"ts":NaN}', "non-finite value: ts"),
    ("metric -inf", b'{"service":"a","ts":1764132000,"metrics":{"x":1,"y":-Infinity}}',
     "non-finite value: metrics.y"),
    ("metric huge int", b'{"service":"a","ts":1764132000,"metrics":{"x":1' + b"0" * 400 + b"}}",
     "non-finite value: metrics.x"),
]


@pytest.mark.parametrize(("raw", "reason"), [(b, r) for _, b, r in NON_FINITE],
                         ids=[name for name, _, _ in NON_FINITE])
def test_non_finite_numbers_are_rejected(raw: bytes, reason: str) -> None:
    d = decode(raw, loads=json.loads)
    assert [r.reason for r in d.rejects] == [reason]
    assert reason_kind(reason) in REASON_KINDS


def test_finite_sum_overflow_is_not_a_reject() -> None:
    # The sum of two large finite values overflows; only the per-value check may decide.
    d = decode(batch(metrics={"a": 1e308, "b": 1e308}))
    assert d.rejects == []
    assert d.values.tolist() == [1e308, 1e308]


def test_ts_exactly_at_the_limits_is_accepted() -> None:
    d = decode(point(ts=NOW + 300), point(ts=946_684_800))
    assert d.rejects == []
    assert d.ts.tolist() == [NOW + 300, 946_684_800.0]


def test_good_point_message_decodes_into_columns() -> None:
    idx = SeriesIndex()
    d = decode(point(value=231.5, ts=NOW - 0.25), point(metric="err", value=3), index=idx)
    assert d.rows.tolist() == [0, 1]
    assert d.ts.tolist() == [NOW - 0.25, NOW]
    assert d.values.tolist() == [231.5, 3.0]
    assert d.msg_index.tolist() == [0, 1]
    assert d.points == 2
    assert [d.rows.dtype, d.ts.dtype, d.values.dtype, d.msg_index.dtype] == [
        np.dtype(np.intp), np.dtype(np.float64), np.dtype(np.float64), np.dtype(np.intp)]
    assert idx.meta(0) == ("checkout", "lat", {"region": "eu"})
    assert idx.key(1) == "checkout|err|region=eu"


def test_good_batch_message_decodes_into_columns() -> None:
    idx = SeriesIndex()
    d = decode(batch(metrics={"lat": 231.5, "err": 0, "rps": 1200}, labels=None), index=idx)
    assert d.rows.tolist() == [0, 1, 2]
    assert d.ts.tolist() == [NOW] * 3
    assert d.values.tolist() == [231.5, 0.0, 1200.0]
    assert d.msg_index.tolist() == [0, 0, 0]
    assert [idx.key(r) for r in range(3)] == ["checkout|lat|", "checkout|err|", "checkout|rps|"]


def test_point_and_batch_messages_share_series_rows() -> None:
    idx = SeriesIndex()
    d = decode(point(metric="err", value=1.0), batch(metrics={"lat": 2.0, "err": 3.0}),
               point(metric="lat", value=4.0), index=idx)
    assert d.rows.tolist() == [0, 1, 0, 1]
    assert idx.n == 2


def test_labels_order_does_not_change_the_row() -> None:
    idx = SeriesIndex()
    d = decode(point(labels={"region": "eu", "az": "b"}),
               point(labels={"az": "b", "region": "eu"}),
               batch(labels={"az": "b", "region": "eu"}, metrics={"lat": 1.0}), index=idx)
    assert d.rows.tolist() == [0, 0, 0]
    assert idx.key(0) == "checkout|lat|az=b,region=eu"


def test_mixed_batch_keeps_every_good_point_and_rejects_exactly_the_bad() -> None:
    messages = [
        msg(point(value=1.0), offset=10),
        msg(b"{oops", offset=11),
        msg(batch(metrics={"lat": 2.0, "err": 3.0}), offset=12),
        msg(batch(metrics={"lat": 9.0, "err": "high"}), offset=13),  # rejected whole
        msg(None, offset=14),
        msg(point(metric="err", value=4.0, ts=NOW - 1), offset=15),
        msg(point(ts=True), offset=16, partition=2),
    ]
    d = decode_batch(messages, NOW, SeriesIndex())
    assert d.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert d.rows.tolist() == [0, 0, 1, 1]
    assert d.ts.tolist() == [NOW, NOW, NOW, NOW - 1]
    assert d.msg_index.tolist() == [0, 2, 2, 5]
    assert [(r.message.offset, r.reason) for r in d.rejects] == [
        (11, "not json"),
        (13, "wrong type: metrics.err (expected number)"),
        (14, "empty message"),
        (16, "wrong type: ts (expected number)"),
    ]
    assert d.rejects[3].message is messages[6]
    assert d.rejects[3].where == "partition 2 offset 16"


def test_rejected_batch_message_assigns_no_series() -> None:
    idx = SeriesIndex()
    decode(batch(metrics={"new_a": 1.0, "new_b": None}), index=idx)
    assert idx.n == 0


def test_label_memo_never_accepts_a_bad_label_set() -> None:
    d = decode(point(labels={"az": "1"}), point(labels={"az": 1}), point(labels={"az": "1"}),
               point(labels={"az": 1}))
    assert [r.message.offset for r in d.rejects] == [1, 3]
    assert d.rows.tolist() == [0, 0]


def test_empty_input() -> None:
    d = decode_batch([], NOW, SeriesIndex())
    assert (d.points, d.rejects) == (0, [])
    assert [d.ts.dtype, d.msg_index.dtype] == [np.dtype(np.float64), np.dtype(np.intp)]


def test_reject_as_error_names_reason_and_where() -> None:
    err = Reject(RawMessage(b"x", 3, 1742), "not json").error()
    assert isinstance(err, DecodeError)
    assert (str(err), err.reason, err.where) == (
        "partition 3 offset 1742: not json", "not json", "partition 3 offset 1742")


@pytest.mark.parametrize(("reason", "kind"), [(r, r.split(":")[0]) for _, _, r in BAD])
def test_reason_kind_is_the_part_before_the_colon(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
    assert kind in REASON_KINDS
    assert kind == kind.lower() and len(kind) <= 24


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries({}, optional={
    "service": st.sampled_from(["svc", ""]) | json_values,
    "metric": st.sampled_from(["m", ""]) | json_values,
    "ts": st.floats(NOW - 1e6, NOW + 1e3) | json_values,
    "value": st.floats() | json_values,
    "labels": st.dictionaries(st.text(max_size=4), st.text(max_size=4) | json_values,
                              max_size=3) | json_values,
    "metrics": st.dictionaries(st.text(max_size=4), st.floats() | json_values, max_size=4)
    | json_values,
})


def _accounted(d: Decoded, n: int) -> None:
    accepted = set(d.msg_index.tolist())
    rejected = {r.message.offset for r in d.rejects}
    assert accepted.isdisjoint(rejected)
    assert accepted | rejected == set(range(n))
    assert {reason_kind(r.reason) for r in d.rejects} <= REASON_KINDS


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_never_raise(raws: list[bytes]) -> None:
    d = decode(*raws)
    _accounted(d, len(raws))


@given(st.lists(near_valid, max_size=6))
@settings(max_examples=300)
def test_arbitrary_objects_never_raise_and_every_message_is_accounted_for(
        bodies: list[dict[str, Any]]) -> None:
    # The stdlib encoder writes what orjson would refuse to (NaN, ints beyond 64 bits).
    raws = [json.dumps(b).encode() for b in bodies]
    d = decode(*raws)
    _accounted(d, len(raws))
    assert bool(np.all(np.isfinite(d.values))) and bool(np.all(np.isfinite(d.ts)))


names = st.text(min_size=1, max_size=12)


@given(service=names, metric=names,
       ts=st.floats(946_684_800, NOW + 300), value=st.floats(allow_nan=False,
                                                             allow_infinity=False),
       labels=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=5))
def test_valid_point_round_trips(service: str, metric: str, ts: float, value: float,
                                 labels: dict[str, str]) -> None:
    idx = SeriesIndex()
    d = decode({"service": service, "metric": metric, "ts": ts, "value": value,
                "labels": labels}, index=idx)
    assert d.rejects == []
    assert (d.ts.tolist(), d.values.tolist()) == ([ts], [value])
    assert idx.meta(int(d.rows[0])) == (service, metric, labels)
