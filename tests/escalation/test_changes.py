"""Change events: the wire format's exact rejections, and the bounded per-service memory."""

from __future__ import annotations

import orjson
import pytest

from escalation.changes import (
    MAX_DESCRIPTION_CHARS,
    REASON_KINDS,
    ChangeEvent,
    RecentChanges,
    parse_change,
)
from escalation.errors import ChangeError

NOW = 1_764_132_000.0


def deploy(ts: float, version: str = "v1", service: str = "checkout") -> ChangeEvent:
    return ChangeEvent("deploy", service, ts, "ci", version)


def test_parses_every_field() -> None:
    raw = (b'{"kind": "deploy", "service": "checkout", "ts": 1764131900.5, "actor": "ci",'
           b' "version": "v1.4.2", "description": "bump payment client", "extra": [1]}')
    assert parse_change(raw, now=NOW) == ChangeEvent(
        "deploy", "checkout", 1764131900.5, "ci", "v1.4.2", "bump payment client")


def test_optional_fields_absent_or_null_are_empty() -> None:
    raw = b'{"kind": "flag", "service": "search", "ts": 1764131900, "actor": null}'
    assert parse_change(raw, now=NOW) == ChangeEvent("flag", "search", 1764131900.0)


def test_a_long_description_is_cut_to_the_limit() -> None:
    raw = orjson.dumps({"kind": "config", "service": "s", "ts": NOW, "description": "x" * 900})
    ev = parse_change(raw, now=NOW)
    assert len(ev.description) == MAX_DESCRIPTION_CHARS
    assert ev.description.endswith("x…")


def _obj(**fields: object) -> bytes:
    base: dict[str, object] = {"kind": "deploy", "service": "checkout", "ts": NOW}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v != "<absent>"})


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "empty message"),
    (b"", "empty message"),
    (b"x" * 65_537, "message too large: 65537 bytes > 65536"),
    (b"{not json", "not json"),
    (b"\xff\xfe", "not json"),
    (b"[1, 2]", "not an object"),
    (b'"deploy"', "not an object"),
    (_obj(kind="<absent>"), "missing field: kind"),
    (_obj(kind=None), "wrong type: kind (expected string)"),
    (_obj(kind=3), "wrong type: kind (expected string)"),
    (_obj(kind=""), "empty field: kind"),
    (_obj(service="<absent>"), "missing field: service"),
    (_obj(service=["checkout"]), "wrong type: service (expected string)"),
    (_obj(service=""), "empty field: service"),
    (_obj(service="s" * 257), "too long: service (257 chars > 256)"),
    (_obj(ts="<absent>"), "missing field: ts"),
    (_obj(ts="2025-11-26T04:40:00Z"), "wrong type: ts (expected number)"),
    (_obj(ts=True), "wrong type: ts (expected number)"),
    (_obj(ts=None), "wrong type: ts (expected number)"),
    # orjson refuses what float cannot hold, so ts is finite once parsed
    (b'{"kind": "deploy", "service": "s", "ts": 1e400}', "not json"),
    (b'{"kind": "deploy", "service": "s", "ts": NaN}', "not json"),
    (b'{"kind": "deploy", "service": "s", "ts": 10' + b"0" * 400 + b"}", "not json"),
    (_obj(ts=NOW + 301), "ts in the future: more than 300s ahead"),
    (_obj(ts=0), "ts before 2000"),
    (_obj(ts=946_684_799.9), "ts before 2000"),
    (_obj(actor=7), "wrong type: actor (expected string)"),
    (_obj(version={"v": 1}), "wrong type: version (expected string)"),
    (_obj(version="v" * 300), "too long: version (300 chars > 256)"),
    (_obj(description=["a"]), "wrong type: description (expected string)"),
], ids=lambda x: repr(x)[:40])
def test_bad_messages_get_exact_reasons(raw: bytes | None, reason: str) -> None:
    with pytest.raises(ChangeError) as err:
        parse_change(raw, now=NOW)
    assert str(err.value) == reason
    assert err.value.reason == reason
    assert err.value.kind in REASON_KINDS


def test_ts_at_the_skew_limit_is_accepted() -> None:
    assert parse_change(_obj(ts=NOW + 300), now=NOW).ts == NOW + 300


def test_to_dict_and_summary() -> None:
    ev = ChangeEvent("deploy", "checkout", NOW, "ci", "v1.4.2", "bump payment client")
    assert ev.to_dict() == {
        "kind": "deploy", "service": "checkout", "ts": NOW, "at": "2025-11-26T04:40:00Z",
        "actor": "ci", "version": "v1.4.2", "description": "bump payment client"}
    assert ev.summary == "deploy checkout v1.4.2 by ci"
    assert ChangeEvent("config", "search", NOW).summary == "config search"


# --- RecentChanges ---------------------------------------------------------------------


def test_keeps_the_newest_per_service_and_answers_newest_first() -> None:
    rc = RecentChanges(per_service=3, horizon_s=86_400)
    for i in range(5):
        assert rc.add(deploy(NOW + i * 60, f"v{i}"))
    assert [e.version for e in rc.for_service("checkout", NOW + 1000, 3600)] == [
        "v4", "v3", "v2"]
    assert len(rc) == 3


def test_out_of_order_arrivals_stay_sorted_and_an_older_one_is_crowded_out() -> None:
    rc = RecentChanges(per_service=2, horizon_s=86_400)
    assert rc.add(deploy(NOW + 120, "b"))
    assert rc.add(deploy(NOW + 60, "a"))
    assert rc.add(deploy(NOW + 180, "c"))
    assert not rc.add(deploy(NOW, "older"))  # the two it has are newer
    assert [e.version for e in rc.for_service("checkout", NOW + 200, 3600)] == ["c", "b"]


def test_the_same_event_twice_is_kept_once() -> None:
    rc = RecentChanges()
    assert rc.add(deploy(NOW))
    assert not rc.add(deploy(NOW))
    assert rc.add(deploy(NOW, "v2"))  # same time, another version: another change
    assert len(rc) == 2


def test_window_bounds_are_inclusive_and_limit_caps() -> None:
    rc = RecentChanges()
    for ts in (NOW - 3600, NOW - 60, NOW, NOW + 1):
        rc.add(deploy(ts, str(ts)))
    got = rc.for_service("checkout", before_ts=NOW, within_s=3600)
    assert [e.ts for e in got] == [NOW, NOW - 60, NOW - 3600]
    assert [e.ts for e in rc.for_service("checkout", NOW, 3600, limit=1)] == [NOW]
    assert rc.for_service("search", NOW, 3600) == ()


def test_horizon_drops_old_changes_and_empty_services() -> None:
    rc = RecentChanges(horizon_s=3600)
    rc.add(deploy(NOW, service="search"))
    rc.add(deploy(NOW + 100, service="checkout"))
    assert rc.services() == ["checkout", "search"]
    # A change an hour and a bit newer moves the horizon past both.
    rc.add(deploy(NOW + 3700, service="payments"))
    assert rc.services() == ["checkout", "payments"]
    rc.add(deploy(NOW + 3701, service="payments", version="v2"))
    assert rc.services() == ["payments"]
    assert not rc.add(deploy(NOW, service="search"))  # arrives late, past the horizon
    assert rc.services() == ["payments"]
    assert rc.newest_ts == NOW + 3701


def test_service_count_is_bounded_by_evicting_the_stalest() -> None:
    rc = RecentChanges(max_services=2)
    rc.add(deploy(NOW + 10, service="a"))
    rc.add(deploy(NOW + 30, service="b"))
    assert rc.add(deploy(NOW + 20, service="c"))  # a's newest change is the oldest
    assert rc.services() == ["b", "c"]
    assert not rc.add(deploy(NOW, service="d"))   # stalest of all: evicted at once
    assert rc.services() == ["b", "c"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"per_service": 0}, "per_service must be >= 1, got 0"),
    ({"horizon_s": 0.0}, "horizon_s must be > 0, got 0.0"),
    ({"max_services": 0}, "max_services must be >= 1, got 0"),
])
def test_bad_bounds_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as err:
        RecentChanges(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message
