"""Watches under verification in a real Redis: round trip, first verdict wins, an outage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import redis.asyncio as aioredis

from escalation.catalogue import Recovery, VerifySpec
from escalation.errors import EscalationError, VerifyStoreError
from escalation.verdict import Check, Stage
from escalation.verify import NO_PROGRESS, Progress, Verifier, Watch
from escalation.verify_store import RESULT_TTL_S, Pending, VerifyStore
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0 = 1764132000.0
KEY = "checkout|http_latency_p99_ms|"


def watch(rid: str = "req_1", key: str = KEY, started_at: float = T0) -> Watch:
    return Watch(rid, f"rule:{rid}", key, "restart_pods", "checkout", "checkout/pod-1",
                 "undo_restart", VerifySpec(300.0, Recovery.NEAR_BASELINE, 0.25, 2), 200.0,
                 started_at, finding_id="f1")


@pytest.fixture
def store(redis_client: aioredis.Redis) -> VerifyStore:
    return VerifyStore(redis_client, prefix="t")


async def test_round_trip_and_pending_for(store: VerifyStore,
                                          redis_client: aioredis.Redis) -> None:
    a, b = watch("req_a", started_at=T0 + 5), watch("req_b", key="api|lat|", started_at=T0)
    assert await store.add(a) and await store.add(b)
    assert await store.pending() == [Pending(b, NO_PROGRESS), Pending(a, NO_PROGRESS)]
    assert await store.pending_for([KEY, "other|x|"]) == [Pending(a, NO_PROGRESS)]
    assert await store.pending_for(frozenset()) == []
    assert await redis_client.hlen("t:verify:pending") == 2


async def test_add_again_keeps_the_stored_progress(store: VerifyStore) -> None:
    w = watch()
    assert await store.add(w)
    p = Progress(1, T0 + 10, 3, 190.0)
    assert await store.save_progress([(w, p)]) == 1
    assert await store.add(w)                      # replayed: still pending, progress kept
    assert await store.pending() == [Pending(w, p)]


async def test_finish_records_the_first_verdict_and_stops_watching(
        store: VerifyStore, redis_client: aioredis.Redis) -> None:
    w = watch()
    await store.add(w)
    ok = Check.allow(Stage.VERIFY, "recovered", "2 points ...", last_value=math.nan)
    late = Check.refuse(Stage.VERIFY, "no_recovery", "too late")
    assert await store.finish(w, ok) is True
    assert await store.finish(w, late) is False    # a second owner: no second rollback
    assert await store.pending() == []
    assert await store.result("req_1") == {
        "request_id": "req_1", "series_key": KEY, "action": "restart_pods",
        "target": "checkout/pod-1", "rollback": "undo_restart",
        "check": {"ok": True, "stage": "verify", "code": "recovered",
                  "detail": "2 points ...", "state": {"last_value": None}},
    }
    ttl_ms = await redis_client.pttl("t:verify:result:req_1")
    assert RESULT_TTL_S * 1000 - 60_000 < ttl_ms <= RESULT_TTL_S * 1000
    # A replay of the request after its verdict: not watched again.
    assert await store.add(w) is False
    assert await store.pending() == []
    assert await store.result("req_unknown") is None


async def test_progress_of_a_finished_watch_is_not_resurrected(store: VerifyStore) -> None:
    a, b = watch("req_a"), watch("req_b")
    await store.add(a)
    await store.add(b)
    await store.finish(a, Check.refuse(Stage.VERIFY, "no_recovery", "x"))
    pa, pb = Progress(1, T0 + 1, 1, 200.0), Progress(1, T0 + 2, 1, 201.0)
    assert await store.save_progress([(a, pa), (b, pb)]) == 1
    assert await store.save_progress([]) == 0
    assert await store.pending() == [Pending(b, pb)]


async def test_a_restarted_verifier_carries_on_from_saved_progress(store: VerifyStore) -> None:
    w = watch()
    first = Verifier()
    first.watch(w)
    await store.add(w)
    assert first.feed(KEY, np.array([T0 + 10.0]), np.array([205.0])) == []
    await store.save_progress(first.drain_changed())

    # The processor restarts (or the partition moves): the new owner loads the watch.
    second = Verifier()
    for pending in await store.pending_for({KEY}):
        second.watch(*pending)
    # The batch that was not committed is replayed, then one new good point arrives.
    [(done, check)] = second.feed(KEY, np.array([T0 + 10.0, T0 + 20.0]),
                                  np.array([205.0, 199.0]))
    assert (done, check.code, check.detail) == (
        w, "recovered",
        "2 points within 25% of baseline 200 by 2025-11-26T04:40:20Z, 20 s after acting")
    assert await store.finish(done, check)
    assert await store.pending() == []


@pytest.mark.parametrize(("raw", "why"), [
    (b'{"watch": {}}', "KeyError: 'spec'"),
    (b"not json", "JSONDecodeError: invalid literal, expected 'null': line 1 column 1 (char 0)"),
])
async def test_unreadable_record_names_the_request(store: VerifyStore,
                                                   redis_client: aioredis.Redis,
                                                   raw: bytes, why: str) -> None:
    await redis_client.hset("t:verify:pending", "req_bad", raw)
    with pytest.raises(VerifyStoreError) as err:
        await store.pending()
    assert str(err.value) == f"verify store: pending record 'req_bad' is unreadable: {why}"


async def test_redis_stopped_raises_verify_store_error(
        redis_server: RedisServer, redis_client: aioredis.Redis) -> None:
    store = VerifyStore(redis_client, timeout_s=0.2)
    w = watch()
    assert await store.add(w)
    redis_server.stop()
    try:
        calls = [
            ("add req_1", store.add(w)),
            ("finish req_1", store.finish(w, Check.refuse(Stage.VERIFY, "no_recovery"))),
            ("result req_1", store.result("req_1")),
            ("save_progress of 1", store.save_progress([(w, NO_PROGRESS)])),
            ("pending", store.pending()),
            ("pending", store.pending_for([KEY])),
        ]
        for op, call in calls:
            with pytest.raises(VerifyStoreError) as err:
                await call
            assert str(err.value) == (f"verify store: {op} failed: Redis unreachable or "
                                      "slower than 0.2 s")
            assert isinstance(err.value, EscalationError) and err.value.__cause__ is not None
    finally:
        redis_server.start()
