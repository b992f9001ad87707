"""RequestStore against a real redis-server: latest status, history, and an outage."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from escalation.errors import RequestStoreError
from escalation.request import Actor, ActorKind, Request
from escalation.request_store import RequestStore
from hotpath.services.ports import free_port
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0 = 1764132000.0
REQ = Request(Actor(ActorKind.AGENT, "copilot", ("operator",)), "restart_pods", "checkout",
              "production", "deployment/checkout", "copilot-1", T0, region="eu-west-1",
              params={"replicas": 2}, evidence={"series": "checkout|lat|", "baseline": 200.0})


async def test_latest_status_and_history_in_order(redis_client: aioredis.Redis) -> None:
    store = RequestStore(redis_client)
    await store.record(REQ, "queued", "limits: claimed: action/service 1/3 per 1h", T0)
    await store.record_many([(REQ, "verifying", "HTTP 202", T0 + 2.5),
                             (REQ, "recovered", "3 points back near baseline", T0 + 60.125)])
    assert await store.get(REQ.request_id) == {
        "request": REQ.to_dict(), "status": "recovered",
        "detail": "3 points back near baseline", "at": T0 + 60.125,
        "history": [
            {"status": "queued", "detail": "limits: claimed: action/service 1/3 per 1h",
             "at": T0},
            {"status": "verifying", "detail": "HTTP 202", "at": T0 + 2.5},
            {"status": "recovered", "detail": "3 points back near baseline", "at": T0 + 60.125},
        ]}
    assert await store.request(REQ.request_id) == REQ


async def test_request_is_written_once(redis_client: aioredis.Redis) -> None:
    """A later record with a different copy of the request (a rebuilt one) keeps the first."""
    store = RequestStore(redis_client)
    await store.record(REQ, "queued", "", T0)
    rebuilt = Request(Actor(ActorKind.AUTOMATION, "unknown"), REQ.action, REQ.service,
                      REQ.environment, REQ.target, REQ.idempotency_key, T0 + 9.0)
    await store.record(rebuilt, "failed", "HTTP 500", T0 + 9.0)
    got = await store.get(REQ.request_id)
    assert got is not None
    assert (got["request"], got["status"], got["detail"]) == (REQ.to_dict(), "failed",
                                                              "HTTP 500")


async def test_history_keeps_the_latest_twenty(redis_client: aioredis.Redis) -> None:
    store = RequestStore(redis_client)
    await store.record_many([(REQ, f"s{i}", f"d{i}", T0 + i) for i in range(25)])
    got = await store.get(REQ.request_id)
    assert got is not None
    assert got["history"] == [{"status": f"s{i}", "detail": f"d{i}", "at": T0 + i}
                              for i in range(5, 25)]
    assert (got["status"], got["at"]) == ("s24", T0 + 24)


async def test_unknown_id_and_empty_batch(redis_client: aioredis.Redis) -> None:
    store = RequestStore(redis_client)
    await store.record_many([])
    assert await store.get("req_0000000000000000") is None
    assert await store.request("req_0000000000000000") is None
    assert await redis_client.keys("*") == []


async def test_entries_expire_with_the_ttl(redis_client: aioredis.Redis) -> None:
    store = RequestStore(redis_client, ttl_s=3600, prefix="hp")
    await store.record(REQ, "queued", "", T0)
    key = f"hp:req:{REQ.request_id}"
    assert 3590 <= await redis_client.ttl(key) <= 3600
    assert 3590 <= await redis_client.ttl(key + ":history") <= 3600


def unreachable() -> tuple[aioredis.Redis, str]:
    """A client of a port nobody listens on, without reconnect retries: a deterministic
    refusal (the client's default backoff would make it a timeout or a refusal)."""
    port = free_port()
    client = aioredis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    return client, (f"ConnectionError: Error 111 connecting to 127.0.0.1:{port}. "
                    f"Connect call failed ('127.0.0.1', {port}).")


async def test_write_to_a_dead_redis_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    client, error = unreachable()
    store = RequestStore(client)
    try:
        with caplog.at_level(logging.WARNING, logger="escalation.request_store"):
            await store.record(REQ, "queued", "", T0)
        assert [r.getMessage() for r in caplog.records] == [
            f"request store: could not record 1 status(es): {error}"]
    finally:
        await client.aclose()


async def test_read_from_a_dead_redis_raises_with_the_cause() -> None:
    client, error = unreachable()
    store = RequestStore(client)
    try:
        for read in (store.get(REQ.request_id), store.request(REQ.request_id)):
            with pytest.raises(RequestStoreError) as info:
                await read
            assert str(info.value) == f"request store unavailable: {error}"
    finally:
        await client.aclose()


async def test_read_while_redis_is_stopped_raises(redis_client: aioredis.Redis,
                                                  redis_server: RedisServer) -> None:
    store = RequestStore(redis_client)
    await store.record(REQ, "queued", "", T0)
    redis_server.stop()
    try:
        with pytest.raises(RequestStoreError) as info:
            await store.get(REQ.request_id)
        # Refused, reset or timed out, depending on the client's reconnect timing.
        assert str(info.value).startswith((
            "request store unavailable: ConnectionError: ",
            "request store unavailable: TimeoutError: "))
        with pytest.raises(RequestStoreError):
            await store.request(REQ.request_id)
        await store.record(REQ, "failed", "", T0 + 1)  # swallowed
    finally:
        redis_server.start()
    # A restarted server is empty (no persistence): unknown again, and writable.
    assert await store.get(REQ.request_id) is None
    await store.record(REQ, "failed", "HTTP 500", T0 + 1)
    got = await store.get(REQ.request_id)
    assert got is not None and got["status"] == "failed"
