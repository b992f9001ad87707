"""Pending approvals against a real redis-server: every refusal by its exact code and detail,
single use under concurrency, the expiry sweep across replicas, and an outage."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from escalation.approval_tokens import mint
from escalation.approvals import (
    DEFAULT_RETENTION_S,
    LINK_GRACE_S,
    ApprovalState,
    ApprovalStore,
    PendingApproval,
    approval_id,
)
from escalation.errors import ApprovalStoreUnavailable
from escalation.request import Actor, ActorKind, Request
from escalation.verdict import Check, Stage
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

KEY = b"k" * 32
OLD = b"o" * 32
T0 = 1764132000.0
EXPIRY_S = 900.0
COPILOT = Actor(ActorKind.AGENT, "copilot", ("operator",))
ALICE = Actor(ActorKind.HUMAN, "alice", ("sre",))
BOB = Actor(ActorKind.HUMAN, "bob", ("sre",))
CAROL = Actor(ActorKind.HUMAN, "carol", ("sre-lead",))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rights:
    """Decision rights as the policy helper's callable would give them: sre may approve."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def __call__(self, approver: Actor, req: Request) -> Check:
        self.asked.append((str(approver), req.request_id))
        if "sre" in approver.roles or "sre-lead" in approver.roles:
            return Check.allow(Stage.APPROVAL, "authorised", f"{approver} may approve")
        return Check.refuse(Stage.APPROVAL, "not_authorised",
                            f"{approver} has no role that may approve {req.action}",
                            roles=list(approver.roles))


def request(key: str = "f1", actor: Actor = COPILOT) -> Request:
    return Request(actor=actor, action="restart_pods", service="checkout",
                   environment="prod", target="checkout-7f9c", idempotency_key=key,
                   requested_at=T0, region="eu-west-1", params={"replicas": 2},
                   reason="p99 latency 4x baseline", finding_id="f1",
                   evidence={"score": 0.97})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_store(redis_client: aioredis.Redis,
               clock: Clock) -> Callable[..., ApprovalStore]:
    counter = itertools.count()

    def make(client: aioredis.Redis | None = None, secrets: tuple[bytes, ...] = (KEY,),
             timeout_s: float = 2.0) -> ApprovalStore:
        # A generous timeout: several helpers share this 2-core machine; the outage test
        # sets its own.
        return ApprovalStore(client or redis_client, secrets=secrets, clock=clock,
                             nonce=lambda: f"n{next(counter)}", timeout_s=timeout_s)
    return make


@pytest.fixture
def store(make_store: Callable[..., ApprovalStore]) -> ApprovalStore:
    return make_store()


@pytest.fixture
async def second_client(redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """Another connection pool: a second replica."""
    pool = redis_client.connection_pool
    client = aioredis.Redis(host="127.0.0.1", port=pool.connection_kwargs["port"])
    try:
        yield client
    finally:
        await client.aclose()


async def test_request_stores_a_pending_approval_with_links(
        store: ApprovalStore, redis_client: aioredis.Redis, clock: Clock) -> None:
    req = request()
    approval, links, created = await store.request(req, reason="prod needs approval",
                                                   expiry_s=EXPIRY_S)
    assert created
    assert approval == PendingApproval(approval_id(req.request_id), req, T0, T0 + EXPIRY_S,
                                       ApprovalState.PENDING, "prod needs approval")
    assert await store.get(approval.approval_id) == approval
    assert await store.pending() == [approval]
    assert PendingApproval.from_dict(approval.to_dict()) == approval
    # Links outlive the approval by the grace period (a late click hears "approval expired").
    until = T0 + EXPIRY_S + LINK_GRACE_S
    assert links.approve_token == mint(KEY, approval.approval_id, "approve", until, "n0")
    assert links.deny_token == mint(KEY, approval.approval_id, "deny", until, "n1")
    ttl = await redis_client.ttl(f"hotpath:approval:{approval.approval_id}")
    assert EXPIRY_S + DEFAULT_RETENTION_S - 5 <= ttl <= EXPIRY_S + DEFAULT_RETENTION_S


async def test_request_refuses_a_nonsense_expiry(store: ApprovalStore) -> None:
    with pytest.raises(ValueError, match=r"^approval expiry_s must be a positive finite "
                                         r"number of seconds, got 0$"):
        await store.request(request(), reason="r", expiry_s=0)


async def test_replayed_request_finds_the_same_approval(store: ApprovalStore,
                                                        clock: Clock) -> None:
    first, links1, created1 = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    clock.now += 30
    again, links2, created2 = await store.request(request(), reason="other", expiry_s=60)
    assert (created1, created2) == (True, False)
    assert again == first  # created_at, expiry and reason of the first one
    assert links2 != links1
    ok = await store.decide(first.approval_id, links2.approve_token, BOB, "approve", Rights())
    assert ok.check.code == "approved"
    other, _, created3 = await store.request(request("f2"), reason="r", expiry_s=EXPIRY_S)
    assert created3 and other.approval_id != first.approval_id


async def test_approve_records_who_when_and_why(store: ApprovalStore, clock: Clock,
                                                redis_client: aioredis.Redis) -> None:
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    clock.now += 42
    rights = Rights()
    result = await store.decide(approval.approval_id, links.approve_token, BOB, "approve",
                                rights, note="looks right")
    aid = approval.approval_id
    assert result.check == Check.allow(Stage.APPROVAL, "approved", f"{aid} approved by human:bob",
                                       approval_id=aid, approver="human:bob",
                                       decided_at=T0 + 42, latency_s=42.0)
    decided = PendingApproval(aid, approval.request, T0, T0 + EXPIRY_S, ApprovalState.APPROVED,
                              "r", "human:bob", T0 + 42, "looks right")
    assert result.approval == decided
    assert await store.get(aid) == decided
    assert await store.pending() == []
    assert rights.asked == [("human:bob", approval.request.request_id)]
    ttl = await redis_client.ttl(f"hotpath:approval:{aid}")
    assert DEFAULT_RETENTION_S - 5 <= ttl <= DEFAULT_RETENTION_S


async def test_deny(store: ApprovalStore) -> None:
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    result = await store.decide(approval.approval_id, links.deny_token, CAROL, "deny", Rights())
    assert (result.check.ok, result.check.code, result.check.detail) == (
        True, "denied", f"{approval.approval_id} denied by human:carol")
    assert result.approval is not None
    assert (result.approval.state, result.approval.approver) == (ApprovalState.DENIED,
                                                                 "human:carol")


async def refused(store: ApprovalStore, aid: str, token: str, approver: Actor = BOB,
                  decision: str = "approve") -> tuple[str, str]:
    result = await store.decide(aid, token, approver, decision, Rights())  # type: ignore[arg-type]
    assert not result.check.ok and result.check.stage is Stage.APPROVAL
    return result.check.code, result.check.detail


async def test_forged_and_malformed_tokens(store: ApprovalStore) -> None:
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    aid = approval.approval_id
    _, other_links, _ = await store.request(request("f2"), reason="r", expiry_s=EXPIRY_S)
    grafted = links.approve_token.split(".")[0] + "." + other_links.approve_token.split(".")[1]
    by_other_key = mint(b"x" * 32, aid, "approve", T0 + EXPIRY_S, "n0")
    for token in (grafted, by_other_key):
        assert await refused(store, aid, token) == ("bad_signature",
                                                    "signature does not match the key")
    assert await refused(store, aid, "nonsense") == ("malformed",
                                                     "expected 2 dot-separated parts, got 1")
    assert (await store.get(aid)) == approval  # still pending, untouched


async def test_expired_approval_then_expired_token(store: ApprovalStore, clock: Clock) -> None:
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    aid = approval.approval_id
    clock.now = T0 + EXPIRY_S
    assert await refused(store, aid, links.approve_token) == (
        "approval_expired", f"approval {aid} expired at 2025-11-26T04:55:00Z; nothing executes")
    clock.now = T0 + EXPIRY_S + LINK_GRACE_S
    assert await refused(store, aid, links.approve_token) == (
        "expired", "token expired at 2025-11-27T04:55:00Z")


async def test_reused_token_is_refused_even_for_another_authorised_approver(
        store: ApprovalStore) -> None:
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    aid = approval.approval_id
    first = await store.decide(aid, links.approve_token, BOB, "approve", Rights())
    assert first.check.code == "approved"
    assert await refused(store, aid, links.approve_token, CAROL) == (
        "token_reused", "this approval link was already used; each link works once")
    # The unused deny link meets a decided approval.
    assert await refused(store, aid, links.deny_token, CAROL, "deny") == (
        "already_decided",
        f"approval {aid} was already approved by human:bob at 2025-11-26T04:40:00Z")


async def test_token_of_another_approval_or_decision(store: ApprovalStore) -> None:
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    other, other_links, _ = await store.request(request("f2"), reason="r", expiry_s=EXPIRY_S)
    aid = approval.approval_id
    assert await refused(store, aid, other_links.approve_token) == (
        "wrong_approval", f"token is for approval {other.approval_id}, not {aid}")
    assert await refused(store, aid, links.deny_token) == (
        "wrong_decision", "token is a deny link, not approve")
    # Neither refusal spent a nonce: the right links still work.
    result = await store.decide(aid, links.approve_token, BOB, "approve", Rights())
    assert result.check.code == "approved"


async def test_unknown_approval(store: ApprovalStore) -> None:
    token = mint(KEY, "apr_nope", "approve", T0 + 60, "n9")
    assert await refused(store, "apr_nope", token) == (
        "unknown_approval", "no approval apr_nope (never requested, or past its retention)")


async def test_approval_past_expiry_is_refused_swept_or_not(store: ApprovalStore,
                                                            clock: Clock) -> None:
    approval, _, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    aid = approval.approval_id
    # Only a key holder could mint a token outliving its approval; the store still refuses.
    late = mint(KEY, aid, "approve", T0 + 2 * EXPIRY_S, "late")
    clock.now = T0 + EXPIRY_S
    expected = ("approval_expired", f"approval {aid} expired at 2025-11-26T04:55:00Z; "
                                    "nothing executes")
    assert await refused(store, aid, late) == expected
    assert [a.approval_id for a in await store.take_expired()] == [aid]
    assert await refused(store, aid, late) == expected


@pytest.mark.parametrize(("requester", "approver"), [
    (COPILOT, Actor(ActorKind.AGENT, "copilot", ("sre",))),  # roles do not matter
    (ALICE, ALICE),
])
async def test_self_approval_is_refused_whatever_the_rights(
        store: ApprovalStore, requester: Actor, approver: Actor) -> None:
    approval, links, _ = await store.request(request(actor=requester), reason="r",
                                             expiry_s=EXPIRY_S)
    aid = approval.approval_id
    detail = f"{approver} requested {aid}; a requester cannot approve or deny its own request"
    for token, decision in ((links.approve_token, "approve"), (links.deny_token, "deny")):
        assert await refused(store, aid, token, approver, decision) == ("self_approval", detail)
    assert (await store.get(aid)) == approval


async def test_same_name_of_another_kind_is_not_the_requester(store: ApprovalStore) -> None:
    approval, links, _ = await store.request(request(actor=Actor(ActorKind.AGENT, "alice")),
                                             reason="r", expiry_s=EXPIRY_S)
    result = await store.decide(approval.approval_id, links.approve_token, ALICE, "approve",
                                Rights())
    assert result.check.code == "approved"


async def test_decision_rights_refusal_passes_through_and_spends_nothing(
        store: ApprovalStore) -> None:
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    intern = Actor(ActorKind.HUMAN, "dave", ("intern",))
    refusal = Check.refuse(Stage.APPROVAL, "not_authorised", "no", roles=["intern"])
    result = await store.decide(approval.approval_id, links.approve_token, intern, "approve",
                                lambda actor, req: refusal)
    assert result.check is refusal
    assert result.approval == approval
    rights = Rights()
    via_policy = await store.decide(approval.approval_id, links.approve_token, intern,
                                    "approve", rights)
    assert via_policy.check == Check.refuse(
        Stage.APPROVAL, "not_authorised",
        "human:dave has no role that may approve restart_pods", roles=["intern"])
    # The refused attempts did not use the link up.
    ok = await store.decide(approval.approval_id, links.approve_token, BOB, "approve", rights)
    assert ok.check.code == "approved"


async def test_concurrent_decides_on_separate_connections_yield_one_success(
        make_store: Callable[..., ApprovalStore], second_client: aioredis.Redis) -> None:
    one, two = make_store(), make_store(second_client)
    for i in range(10):
        approval, links, _ = await one.request(request(f"c{i}"), reason="r", expiry_s=EXPIRY_S)
        aid = approval.approval_id
        if i % 2:   # the same link clicked twice
            results = await asyncio.gather(
                one.decide(aid, links.approve_token, BOB, "approve", Rights()),
                two.decide(aid, links.approve_token, CAROL, "approve", Rights()))
            losing = {"token_reused"}
        else:       # approve and deny racing
            results = await asyncio.gather(
                one.decide(aid, links.approve_token, BOB, "approve", Rights()),
                two.decide(aid, links.deny_token, CAROL, "deny", Rights()))
            losing = {"already_decided"}
        codes = sorted(r.check.code for r in results)
        wins = [r for r in results if r.check.ok]
        assert len(wins) == 1, codes
        assert {r.check.code for r in results if not r.check.ok} <= losing
        final = await one.get(aid)
        assert final is not None and final == wins[0].approval


async def test_expiry_sweep_hands_each_out_once_across_replicas(
        make_store: Callable[..., ApprovalStore], second_client: aioredis.Redis,
        clock: Clock, redis_client: aioredis.Redis) -> None:
    one, two = make_store(), make_store(second_client)
    made = [(await one.request(request(f"s{i}"), reason="r", expiry_s=60.0 + i))[:2]
            for i in range(30)]
    decided, decided_links = made[0]
    await one.decide(decided.approval_id, decided_links.deny_token, BOB, "deny", Rights())
    clock.now = T0 + 60.0 + 19  # s0..s19 are past expiry; s20..s29 are not
    a, b = await asyncio.gather(one.take_expired(), two.take_expired())
    taken = [x.approval_id for x in a + b]
    expected = {made[i][0].approval_id for i in range(1, 20)}
    assert len(taken) == len(set(taken)) == 19 and set(taken) == expected
    assert all(x.state is ApprovalState.EXPIRED and x.approver is None for x in a + b)
    assert await one.take_expired() == []
    assert {p.approval_id for p in await two.pending()} == {
        made[i][0].approval_id for i in range(20, 30)}
    still_denied = await one.get(decided.approval_id)
    assert still_denied is not None and still_denied.state is ApprovalState.DENIED
    some = made[5][0].approval_id
    ttl = await redis_client.ttl(f"hotpath:approval:{some}")
    assert DEFAULT_RETENTION_S - 5 <= ttl <= DEFAULT_RETENTION_S


async def test_sweep_drops_entries_whose_approval_is_gone(
        store: ApprovalStore, clock: Clock, redis_client: aioredis.Redis) -> None:
    approval, _, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    await redis_client.delete(f"hotpath:approval:{approval.approval_id}")  # past retention
    assert await store.pending() == []
    clock.now = T0 + EXPIRY_S
    assert await store.take_expired() == []
    assert await redis_client.zcard("hotpath:approvals:pending") == 0


async def test_key_rotation(make_store: Callable[..., ApprovalStore]) -> None:
    before = make_store(secrets=(OLD,))
    approval, links, _ = await before.request(request(), reason="r", expiry_s=EXPIRY_S)
    retired = make_store(secrets=(KEY,))
    assert await refused(retired, approval.approval_id, links.approve_token) == (
        "bad_signature", "signature does not match the key")
    rotating = make_store(secrets=(KEY, OLD))
    result = await rotating.decide(approval.approval_id, links.approve_token, BOB, "approve",
                                   Rights())
    assert result.check.code == "approved"
    _, new_links, _ = await rotating.request(request("f2"), reason="r", expiry_s=EXPIRY_S)
    assert await refused(before, approval_id(request("f2").request_id),
                         new_links.approve_token) == (
        "bad_signature", "signature does not match the key")


def test_construction_refuses_weak_or_missing_secrets(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match=r"^approval token secret must be at least 32 bytes, "
                                         r"got 16$"):
        ApprovalStore(redis_client, secrets=[KEY, b"s" * 16], clock=Clock(), nonce=str)
    with pytest.raises(ValueError, match=r"^at least one approval token secret is required$"):
        ApprovalStore(redis_client, secrets=[], clock=Clock(), nonce=str)


async def test_redis_stopped_fails_closed_then_recovers(
        make_store: Callable[..., ApprovalStore], redis_server: RedisServer) -> None:
    store = make_store(timeout_s=0.5)
    approval, links, _ = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    aid = approval.approval_id
    redis_server.stop()
    try:
        result = await store.decide(aid, links.approve_token, BOB, "approve", Rights())
        assert (result.check.ok, result.check.code, result.check.detail) == (
            False, "unavailable", "approval store (Redis) did not answer; nothing is decided")
        assert result.check.state == {"approval_id": aid, "error": store.last_error}
        assert result.approval is None
        assert str(store.last_error).startswith(("ConnectionError: ", "TimeoutError: "))
        calls = [("store the approval",
                  store.request(request("f2"), reason="r", expiry_s=EXPIRY_S)),
                 ("read the approval", store.get(aid)),
                 ("list pending approvals", store.pending()),
                 ("sweep expired approvals", store.take_expired())]
        for what, call in calls:
            with pytest.raises(ApprovalStoreUnavailable) as info:
                await call
            assert str(info.value) == f"approval store could not {what}: {store.last_error}"
    finally:
        redis_server.start()
    # A restart comes back empty (no persistence) and without the script cached.
    again, links, created = await store.request(request(), reason="r", expiry_s=EXPIRY_S)
    assert created
    result = await store.decide(again.approval_id, links.approve_token, BOB, "approve",
                                Rights())
    assert result.check.code == "approved"
