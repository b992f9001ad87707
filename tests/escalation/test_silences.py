"""Silences: validation, matching, state at the boundaries, and the store on a real Redis."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from escalation.errors import StoreUnavailable
from escalation.silences import (
    Silence,
    SilenceStore,
    maintenance_window,
    silence_id,
    silenced_by,
)

T0 = 1764132000.0
LABELS = {"service": "checkout", "metric": "http_latency_p99_ms",
          "metric_family": "http_latency", "region": "eu-west-1", "severity": "critical"}


def sil(matchers: dict[str, str] | None = None, start: float = T0, end: float = T0 + 3600,
        id: str | None = None) -> Silence:
    return Silence.create(matchers or {"service": "checkout"}, start, end, "human:alice",
                          "deploy v2", id=id)


@pytest.mark.parametrize(("args", "message"), [
    (({}, 0.0, 1.0, "a", "c"), "silence: matchers must not be empty"),
    (({"": "x"}, 0.0, 1.0, "a", "c"), "silence: a matcher has an empty label name"),
    (({"service": ""}, 0.0, 1.0, "a", "c"), "silence: matcher 'service' has an empty pattern"),
    (({"service": "*", "region": "*"}, 0.0, 1.0, "a", "c"),
     "silence: at least one matcher must not match the empty string (a silence of "
     "everything)"),
    (({"service": "db"}, math.nan, 1.0, "a", "c"), "silence: starts_at must be finite, got nan"),
    (({"service": "db"}, 0.0, math.inf, "a", "c"), "silence: ends_at must be finite, got inf"),
    (({"service": "db"}, 5.0, 5.0, "a", "c"), "silence: ends_at 5 is not after starts_at 5"),
    (({"service": "db"}, 5.0, 4.0, "a", "c"), "silence: ends_at 4 is not after starts_at 5"),
    (({"service": "db"}, 0.0, 1.0, "", "c"), "silence: created_by must not be empty"),
    (({"service": "db"}, 0.0, 1.0, "a", ""), "silence: comment must not be empty (say why)"),
])
def test_bad_silences_are_refused_with_the_reason(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Silence.create(*args)
    assert str(err.value) == message


def test_an_empty_id_is_refused() -> None:
    with pytest.raises(ValueError) as err:
        sil(id="")
    assert str(err.value) == "silence: id must not be empty"


@pytest.mark.parametrize(("raw", "message"), [
    ({"matchers": {"service": "db"}, "starts_at": 0, "ends_at": 1, "created_by": "a"},
     "silence: missing field 'comment'"),
    ({"matchers": ["service=db"], "starts_at": 0, "ends_at": 1, "created_by": "a",
      "comment": "c"}, "silence: matchers must be an object of label → glob"),
    ({"matchers": {"service": "db"}, "starts_at": "soon", "ends_at": 1, "created_by": "a",
      "comment": "c"}, "silence: starts_at must be a number (seconds since the epoch)"),
    ({"matchers": {"service": "db"}, "starts_at": 0, "ends_at": True, "created_by": "a",
      "comment": "c"}, "silence: ends_at must be a number (seconds since the epoch)"),
])
def test_bad_api_bodies_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Silence.from_dict(raw)
    assert str(err.value) == message


def test_round_trip_and_deterministic_id() -> None:
    s = sil({"service": "checkout", "region": "eu-*"})
    assert Silence.from_dict(orjson.loads(orjson.dumps(s.to_dict()))) == s
    assert s.id == silence_id({"region": "eu-*", "service": "checkout"}, T0, T0 + 3600,
                              "human:alice")
    assert s.id != sil({"service": "checkout", "region": "eu-*"}, end=T0 + 60).id
    assert sil(id="sil_mine").id == "sil_mine"


def test_matching_is_glob_and_a_missing_label_is_empty() -> None:
    assert sil({"service": "check*", "region": "eu-*"}).matches(LABELS)
    assert not sil({"service": "checkout", "region": "us-*"}).matches(LABELS)
    assert sil({"service": "checkout", "az": "*"}).matches(LABELS)  # az missing → ""
    assert not sil({"service": "checkout", "az": "?*"}).matches(LABELS)
    assert not sil({"service": "Checkout"}).matches(LABELS)  # case-sensitive
    assert sil({"metric_family": "http_latency", "severity": "crit*"}).matches(LABELS)


def test_state_at_the_boundaries() -> None:
    s = sil(start=100.0, end=200.0)
    assert [s.state(t) for t in (99.999, 100.0, 199.999, 200.0)] == [
        "pending", "active", "active", "expired"]
    assert silenced_by(LABELS, [s], 99.0) is None
    assert silenced_by(LABELS, [s], 100.0) == s
    assert silenced_by(LABELS, [s], 200.0) is None


def test_the_smallest_id_wins_whatever_the_order() -> None:
    a, b = sil(id="sil_b"), sil({"region": "eu-*"}, id="sil_a")
    other = sil({"service": "payments"}, id="sil_0")
    assert silenced_by(LABELS, [a, other, b], T0) == b
    assert silenced_by(LABELS, [b, a], T0) == b
    assert silenced_by({"service": "api"}, [a, b, other], T0) is None


def test_maintenance_window_from_config() -> None:
    w = maintenance_window({"service": "db", "region": "eu-*"}, T0, T0 + 7200, "vacuum")
    assert (w.created_by, w.comment) == ("config", "vacuum")
    assert w == maintenance_window({"region": "eu-*", "service": "db"}, T0, T0 + 7200, "vacuum")
    assert silenced_by({"service": "db", "region": "eu-west-1"}, [w], T0 + 10) == w


# --- the store, on a real redis-server -------------------------------------------------


@pytest.fixture
def store(redis_client: aioredis.Redis) -> SilenceStore:
    return SilenceStore(redis_client, prefix="t")


@pytest.mark.redis
async def test_store_round_trip_and_expiry(store: SilenceStore,
                                           redis_client: aioredis.Redis) -> None:
    active = sil(id="sil_now", end=T0 + 600)
    later = sil({"service": "db"}, start=T0 + 3600, end=T0 + 7200, id="sil_later")
    await store.add(active, T0 + 10)
    await store.add(later, T0 + 10)
    assert await store.current(T0 + 10) == [later, active]  # by id
    assert await store.active(T0 + 10) == [active]
    assert await store.get("sil_now") == active
    ttl_ms = await redis_client.pttl("t:silence:sil_now")
    assert 589_000 < ttl_ms <= 590_000  # ends_at - now, on the injected clock
    # Past its end: gone from the lists (and the index trimmed), the other one active.
    assert await store.active(T0 + 3600) == [later]
    assert await redis_client.zrange("t:silences", 0, -1) == [b"sil_later"]


@pytest.mark.redis
async def test_store_refuses_an_ended_silence(store: SilenceStore) -> None:
    with pytest.raises(ValueError) as err:
        await store.add(sil(id="sil_old", end=T0 + 5), T0 + 5)
    assert str(err.value) == f"silence sil_old: ends_at {T0 + 5:g} is not after now {T0 + 5:g}"
    assert await store.current(T0) == []


@pytest.mark.redis
async def test_expire_and_delete(store: SilenceStore) -> None:
    s = sil(id="sil_x")
    await store.add(s, T0)
    ended = await store.expire("sil_x", T0 + 30)
    assert ended is not None and ended.ends_at == T0 + 30 and ended.id == "sil_x"
    assert await store.active(T0 + 30) == [] and await store.get("sil_x") is None
    assert await store.expire("sil_x", T0 + 31) is None
    assert await store.expire("sil_unknown", T0) is None
    await store.add(s, T0)
    assert await store.delete("sil_x") is True
    assert await store.delete("sil_x") is False
    # Expiring a silence that has not started yet ends it at its start.
    pending = sil(id="sil_p", start=T0 + 100, end=T0 + 200)
    await store.add(pending, T0)
    out = await store.expire("sil_p", T0)
    assert out is not None and (out.starts_at, out.ends_at) == (T0 + 100, T0 + 100)


@pytest.mark.redis
async def test_sync_of_config_windows_is_idempotent_across_replicas(
        store: SilenceStore, redis_client: aioredis.Redis) -> None:
    windows = [maintenance_window({"service": "db"}, T0, T0 + 60, "vacuum"),
               maintenance_window({"service": "api"}, T0 - 600, T0 - 60, "over already")]
    other = SilenceStore(redis_client, prefix="t")
    assert await store.sync(windows, T0) == 1
    assert await other.sync(windows, T0) == 1
    assert await store.active(T0) == [windows[0]]
    assert await redis_client.zcard("t:silences") == 1


@pytest.mark.redis
async def test_an_unreadable_record_is_an_error(store: SilenceStore,
                                                redis_client: aioredis.Redis) -> None:
    await redis_client.set("t:silence:sil_bad", b"{not json")
    await redis_client.zadd("t:silences", {"sil_bad": T0 + 60})
    with pytest.raises(StoreUnavailable) as err:
        await store.active(T0)
    assert str(err.value).startswith("silence store: unreadable record: ")


async def test_redis_down_is_store_unavailable() -> None:
    store = SilenceStore(aioredis.Redis(host="127.0.0.1", port=1), timeout_s=0.2)
    with pytest.raises(StoreUnavailable) as err:
        await store.active(T0)
    assert str(err.value) == ("silence store: current failed: Redis unreachable or slower "
                              "than 0.2 s")
