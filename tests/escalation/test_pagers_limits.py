"""Truncation helpers: exact cuts, deterministic keys, JSON shrunk under any budget."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.page import _example
from escalation.pagers.limits import (
    json_size,
    page_details,
    shorten_key,
    shrink_json,
    truncate_text,
)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "ab…"),
        ("", 5, ""),
        ("ééééé", 4, "ééé…"),  # characters, not bytes
        ("x" * 5000, 1024, "x" * 1023 + "…"),
    ],
)
def test_truncate_text(text: str, limit: int, expected: str) -> None:
    assert truncate_text(text, limit) == expected


def test_truncate_text_with_a_custom_marker() -> None:
    assert truncate_text("abcdefgh", 6, marker="[..]") == "ab[..]"
    with pytest.raises(ValueError, match=r"^limit 4 leaves no room for the marker '\[\.\.\]'$"):
        truncate_text("abcdefgh", 4, marker="[..]")


def test_shorten_key_keeps_short_keys_and_hashes_long_ones_apart() -> None:
    assert shorten_key("k" * 255, 255) == "k" * 255
    a, b = shorten_key("k" * 300 + "a", 255), shorten_key("k" * 300 + "b", 255)
    assert len(a) == len(b) == 255
    assert a != b and a[:238] == b[:238] == "k" * 238
    assert a == shorten_key("k" * 300 + "a", 255)  # same on every replica
    assert a[238] == "~"
    with pytest.raises(ValueError, match=r"^limit 17 leaves no room for the key hash$"):
        shorten_key("k" * 300, 17)


def test_shrink_json_leaves_a_fitting_object_alone() -> None:
    obj = {"a": [1, 2], "b": {"c": "d"}}
    assert shrink_json(obj, json_size(obj)) == obj


def test_shrink_json_cuts_the_largest_fields_to_a_common_cap() -> None:
    obj = {"small": "s" * 10, "mid": "m" * 200, "big": "b" * 5000, "n": 7}
    out = shrink_json(obj, 300)
    assert list(out) == ["small", "mid", "big", "n"]
    assert out["small"] == obj["small"] and out["n"] == 7
    # 29 bytes of keys and punctuation, 13 for small and n: the two big ones share 258
    assert out["mid"] == "m" * 124 + "…" and out["big"] == "b" * 124 + "…"
    assert json_size(out) == 300


def test_shrink_json_recurses_into_objects_and_lists() -> None:
    obj = {"ctx": {"keep": "k", "log": "l" * 1000}, "changes": list(range(1000))}
    out = shrink_json(obj, 200)
    assert out["ctx"]["keep"] == "k" and out["ctx"]["log"].endswith("…")
    assert out["changes"][:3] == [0, 1, 2] and out["changes"][-1].endswith(" more")
    assert json_size(out) <= 200


def test_shrink_json_marks_or_drops_what_cannot_be_cut() -> None:
    obj = {"a": 1.2345678901234567, "b": 2.2345678901234567, "c": "c" * 300}
    # numbers cannot be cut; dropping the string frees its key too, and then they fit whole
    assert shrink_json(obj, 60) == {"a": 1.2345678901234567, "b": 2.2345678901234567}
    # the list is cut to its 25-byte share first; the object then gets 27 bytes, leaving
    # its string 18 — below the 24 worth keeping, so it is marked instead
    mixed = {"t": True, "x": {"deep": "d" * 40}, "y": [1.5] * 40}
    out = shrink_json(mixed, 70)
    assert out == {"t": True, "x": {"deep": "[cut 42 bytes]"}, "y": [1.5, 1.5, "… 38 more"]}


def test_shrink_json_refuses_an_impossible_budget() -> None:
    with pytest.raises(ValueError, match=r"^max_bytes 1 cannot hold even an empty object$"):
        shrink_json({}, 1)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats(allow_nan=False)
    | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=6),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=8), _json, max_size=8),
       max_bytes=st.integers(2, 400))
def test_shrink_json_always_fits_and_is_deterministic(obj: dict[str, Any], max_bytes: int) -> None:
    out = shrink_json(obj, max_bytes)
    assert json_size(out) <= max_bytes
    assert out == shrink_json(obj, max_bytes)
    assert set(out) <= set(obj)
    if json_size(obj) <= max_bytes:
        assert out == obj


def test_page_details_lists_the_evidence_and_lets_the_context_win() -> None:
    page = replace(_example(), baseline=math.nan, action="restart_pods",
                   context={"baseline": {"value": 0.5, "window": "1h"}, "owner": "payments"})
    assert page_details(page) == {
        "value": 1.0, "baseline": {"value": 0.5, "window": "1h"}, "deviation": 2.0,
        "confidence": 0.5, "detectors": ["ewma"], "reasons": ["no remediation rule"],
        "action": "restart_pods", "owner": "payments",
    }
    assert page_details(replace(page, context={}))["baseline"] is None
