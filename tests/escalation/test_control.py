"""The control plane end to end on real parts: redis-server (limits, approvals, request store,
action queue, page outbox), an audit file, a spool; only the clock is injected.

Every test reads back what the plane left behind — audit records (exact bodies), queued
action requests, pages — rather than trusting the returned Submission alone.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from escalation.actions import ActionQueue
from escalation.approval_tokens import mint
from escalation.approvals import LINK_GRACE_S, ApprovalState, ApprovalStore, approval_id
from escalation.audit import AuditLog
from escalation.catalogue import ActionSpec, Catalogue, Recovery, Risk, ServiceSpec, VerifySpec
from escalation.control import ControlPlane, Governance, Item
from escalation.errors import StoreUnavailable
from escalation.executors.base import ActionRequest
from escalation.limits import LimitRequest, Limits, LimitStatus, RedisLimits, Window
from escalation.outbox import PageOutbox
from escalation.page import Page
from escalation.policy import (
    ApprovalPolicy,
    ApprovalRight,
    FreezeWindow,
    Policy,
    PolicyRule,
    evaluate,
)
from escalation.records import execution_request
from escalation.request import Actor, ActorKind, Request, Severity
from escalation.request_store import RequestStore
from escalation.spool import Spool
from escalation.submission import Submission, SubmitStatus
from escalation.verdict import Check, Stage
from escalation.verify_store import VerifyStore
from hotpath.services.ports import free_port
from hotpath.services.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0 = 1764132000.0  # 2025-11-26T04:40:00Z
SECRET = b"x" * 32
FREEZE_AT = T0 + 600.0  # 'release-freeze' on checkout, [T0+600, T0+1200)
EXPIRY_S = 900.0
BASE_URL = "https://hotpath.example/v1"

REPLICAS = {"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}},
            "additionalProperties": False}
CATALOGUE = Catalogue(
    actions={
        "restart_pods": ActionSpec("restart_pods", risk=Risk.LOW, params_schema=REPLICAS,
                                   rollback="undo_restart", verify=VerifySpec(120.0)),
        "undo_restart": ActionSpec("undo_restart", risk=Risk.LOW),
        "flush_cache": ActionSpec("flush_cache", risk=Risk.LOW,
                                  verify=VerifySpec(60.0, Recovery.BELOW, 100.0)),
        "failover_region": ActionSpec("failover_region", risk=Risk.HIGH,
                                      verify=VerifySpec(300.0, Recovery.NEAR_BASELINE, 0.5)),
    },
    services={"checkout": ServiceSpec("checkout", targets=4, regions=("eu-west-1",)),
              "search": ServiceSpec("search", targets=2, regions=("eu-west-1",))},
)
POLICY = Policy(
    rules=(
        PolicyRule("auto-remediate", actors=("automation:*",),
                   actions=("restart_pods", "flush_cache", "failover_region")),
        PolicyRule("copilot", actors=("agent:copilot",),
                   actions=("restart_pods", "failover_region"), services=("checkout",)),
        PolicyRule("oncall", actors=("human:*",)),
    ),
    freezes=(FreezeWindow("release-freeze", start=FREEZE_AT, end=FREEZE_AT + 600.0,
                          services=("checkout",)),),
    approval=ApprovalPolicy(risk_at_least=Risk.HIGH, expiry_s=EXPIRY_S,
                            rights=(ApprovalRight(("sre",), environments=("production",)),)),
)
GOV = Governance(CATALOGUE, POLICY, "cfg-v1", approval_url=BASE_URL)
DEFAULT_LIMITS = Limits(per_action_service=Window(5, 3600.0))

RULE = Actor(ActorKind.AUTOMATION, "latency-restart")
COPILOT = Actor(ActorKind.AGENT, "copilot", ("operator",))
ALICE = Actor(ActorKind.HUMAN, "alice", ("oncall", "sre"))
BOB = Actor(ActorKind.HUMAN, "bob", ("sre",))
CAROL = Actor(ActorKind.HUMAN, "carol", ("oncall",))
WHERE = {"service": "checkout", "environment": "production", "region": "eu-west-1",
         "target": "deployment/checkout"}


def request(actor: Actor = COPILOT, key: str = "k1", action: str = "restart_pods", *,
            service: str = "checkout", target: str = "deployment/checkout",
            params: dict[str, Any] | None = None, at: float = T0) -> Request:
    """A request as each actor sends it; automation's carries its finding's evidence."""
    finding = actor.kind is ActorKind.AUTOMATION
    return Request(
        actor=actor, action=action, service=service, environment="production",
        target=target, idempotency_key=key, requested_at=at, severity=Severity.ERROR,
        region="eu-west-1", params={"replicas": 2} if params is None else params,
        reason="p99 latency 4x baseline",
        event_ts=at - 5.0 if finding else None, finding_id=f"f-{key}" if finding else None,
        evidence=({"series": f"{service}|http_latency_p99_ms|", "metric": "http_latency_p99_ms",
                   "value": 900.0, "baseline": 200.0, "confidence": 0.97, "ts": at - 5.0}
                  if finding else {"metric": "http_latency_p99_ms", "value": 900.0}))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def unreachable_redis() -> aioredis.Redis:
    """A client of a port nobody listens on, failing at once (no reconnect backoff)."""
    return aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))


@dataclass
class Rig:
    """The control plane wired to real parts, and readers of what it left behind."""

    redis: aioredis.Redis
    tmp: Path
    clock: Clock
    limits: RedisLimits
    approvals: ApprovalStore
    store: RequestStore
    verify_store: VerifyStore
    queue: ActionQueue
    outbox: PageOutbox
    audit: AuditLog
    gov: Governance = GOV
    control: ControlPlane = field(init=False)
    _seen: int = 0

    def __post_init__(self) -> None:
        self.control = self.plane(gov=self.gov)

    def plane(self, *, queue: ActionQueue | None = None,
              paused: Callable[[], Awaitable[tuple[bool, str]]] | None = None,
              gov: Governance = GOV) -> ControlPlane:
        """Another control plane on the same stores (another replica, or a broken queue)."""
        return ControlPlane(gov, limits=self.limits, approvals=self.approvals,
                            store=self.store, audit=self.audit,
                            actions=queue or self.queue, pages=self.outbox, clock=self.clock,
                            paused=paused, verify_store=self.verify_store)

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, body) of every audit record written since the last call."""
        lines = self.audit.path.read_bytes().splitlines()
        out = [orjson.loads(line) for line in lines[self._seen:]]
        self._seen = len(lines)
        return [(r["kind"], r["body"]) for r in out]

    async def queued(self) -> list[ActionRequest]:
        """Action requests queued since the last call (claimed as a runner would)."""
        return [req for _, req in await self.queue.claim("test-runner", 100, 1)]

    async def pages(self) -> list[Page]:
        """Pages put in the outbox since the last call: the stream, then the spool."""
        got = [p for _, p in await self.outbox.claim("test-sender", 100, 1)]
        spooled = self.outbox.spool.pending()
        for p in spooled:
            self.outbox.spool.mark_delivered(p.dedup_key)
        return got + spooled

    async def status(self, req: Request) -> tuple[str | None, str]:
        got = await self.store.get(req.request_id)
        assert got is not None
        return got["status"], got["detail"]


async def make_rig(redis: aioredis.Redis, tmp: Path, limits: Limits = DEFAULT_LIMITS,
                   gov: Governance = GOV) -> Rig:
    clock = Clock()
    nonces = itertools.count()
    audit = AuditLog(tmp / "audit.jsonl", clock=clock)
    rig = Rig(
        redis=redis, tmp=tmp, clock=clock,
        # Generous timeouts for a busy 2-core machine; outages are refusals, not waits.
        limits=RedisLimits(redis, limits, clock, timeout_s=2.0),
        approvals=ApprovalStore(redis, secrets=[SECRET], clock=clock,
                                nonce=lambda: f"n{next(nonces)}", timeout_s=2.0),
        store=RequestStore(redis, timeout_s=2.0), verify_store=VerifyStore(redis, timeout_s=2.0),
        queue=ActionQueue(redis, timeout_s=2.0),
        outbox=PageOutbox(redis, Spool(tmp / "spool"), timeout_s=2.0),
        audit=audit, gov=gov,
    )
    return rig


@pytest.fixture
async def rig(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(redis_client, tmp_path)
    yield r
    r.audit.close()


# --- expected audit bodies -----------------------------------------------------------------


def claimed(used: int, limit: int = 5) -> Check:
    state = {"budget_action_service": {"used": used, "limit": limit, "window_s": 3600.0}}
    return Check.allow(Stage.LIMITS, "claimed", f"action/service {used}/{limit} per 1h", **state)


def policy_checks(req: Request, now: float = T0) -> tuple[Check, ...]:
    return evaluate(req, CATALOGUE, POLICY, now).checks


def request_body(req: Request, result: str, checks: tuple[Check, ...], *, now: float = T0,
                 rule: str | None, approval_id: str | None = None,
                 approver: str | None = None) -> dict[str, Any]:
    limits = next((c.state for c in reversed(checks) if c.stage is Stage.LIMITS), {})
    return {"request": req.to_dict(), "decided_at": now, "config_version": "cfg-v1",
            "where": WHERE | {"service": req.service, "target": req.target},
            "checks": [c.to_dict() for c in checks], "result": result,
            "authorization": {"rule": rule, "limits": limits, "approval_id": approval_id,
                              "approver": approver}}


def intent_body(req: Request, now: float = T0) -> dict[str, Any]:
    return {"request_id": req.request_id, "action": req.action, "target": req.target,
            "actor": str(req.actor), "at": now, "params": dict(req.params),
            "idempotency_key": req.idempotency_key, "config_version": "cfg-v1",
            "where": WHERE | {"service": req.service, "target": req.target}}


def codes(sub: Submission) -> list[str]:
    return [c.code for c in sub.checks]


# --- queued, refused, duplicate ------------------------------------------------------------


@pytest.mark.parametrize(("actor", "rule"), [(RULE, "auto-remediate"), (COPILOT, "copilot"),
                                             (ALICE, "oncall")])
async def test_an_allowed_request_is_audited_then_queued(rig: Rig, actor: Actor,
                                                         rule: str) -> None:
    req = request(actor)
    (sub,) = await rig.control.submit_many([Item(req)])
    checks = (*policy_checks(req), claimed(1))
    assert sub == Submission(req, SubmitStatus.QUEUED, checks)
    assert rig.records() == [
        ("request", request_body(req, "queued", checks, rule=rule)),
        ("intent", intent_body(req)),
    ]
    (ex,) = await rig.queued()
    assert ex == execution_request(req)
    assert (ex.action, ex.target, ex.service, ex.idempotency_key, ex.rule, ex.params) == (
        "restart_pods", "deployment/checkout", "checkout", "k1", actor.name, {"replicas": 2})
    assert Request.from_dict(ex.context["request"]) == req
    assert ex.context["rollback_of"] is None
    assert await rig.status(req) == ("queued", "limits: claimed: action/service 1/5 per 1h")
    assert await rig.pages() == []


@pytest.mark.parametrize(("code", "req", "now", "detail"), [
    ("no_rule", request(COPILOT, "r1", service="search", target="deployment/search"), T0,
     "no rule lets agent:copilot run restart_pods on search in production (eu-west-1)"),
    ("change_freeze", request(COPILOT, "r1"), FREEZE_AT + 1.0,
     "change freeze 'release-freeze' in force until 2025-11-26T05:00:00Z"),
    ("invalid_params", request(ALICE, "r1", params={"replicas": 0}), T0,
     "params.replicas: 0 is less than the minimum of 1"),
])
async def test_a_policy_refusal_queues_nothing_and_spends_no_budget(
        rig: Rig, code: str, req: Request, now: float, detail: str) -> None:
    rig.clock.now = now
    req = replace(req, requested_at=now)
    (sub,) = await rig.control.submit_many([Item(req)])
    assert (sub.status, sub.checks[-1].stage, sub.checks[-1].code, sub.checks[-1].detail) == (
        SubmitStatus.REFUSED, Stage.POLICY, code, detail)
    assert sub.checks == policy_checks(req, now)
    assert rig.records() == [("request", request_body(req, "refused", sub.checks, now=now,
                                                      rule=None))]
    assert await rig.queued() == []
    assert await rig.pages() == []
    assert await rig.status(req) == ("refused", f"policy: {code}: {detail}")
    # Nothing claimed: the budget (5 per hour) is whole for the next allowed requests.
    rig.clock.now = FREEZE_AT + 600.0  # after the freeze, within the hour
    ok = [request(ALICE, f"ok{i}", at=rig.clock.now) for i in (1, 2)]
    subs = await rig.control.submit_many([Item(r) for r in ok])
    assert [(s.status, s.checks[-1]) for s in subs] == [
        (SubmitStatus.QUEUED, claimed(1)), (SubmitStatus.QUEUED, claimed(2))]
    assert [ex.idempotency_key for ex in await rig.queued()] == ["ok1", "ok2"]


_HUMAN_CHECKOUT = request(ALICE, "b", target="pod-2")
_LIMIT_CASES = [
    ("budget_action_service", Limits(per_action_service=Window(1, 3600.0)), _HUMAN_CHECKOUT,
     "restart_pods on checkout: 1/1 per 1h used"),
    ("budget_service", Limits(per_action_service=None, per_service=Window(1, 3600.0)),
     request(ALICE, "b", "flush_cache", params={}), "actions on checkout: 1/1 per 1h used"),
    ("budget_global", Limits(per_action_service=None, global_=Window(1, 3600.0)),
     request(ALICE, "b", service="search", target="deployment/search"),
     "all actions: 1/1 per 1h used"),
    ("concurrency_service", Limits(per_action_service=None, concurrency_per_service=1),
     _HUMAN_CHECKOUT, "1/1 actions in flight on checkout"),
    ("concurrency_global", Limits(per_action_service=None, concurrency_global=1),
     request(ALICE, "b", service="search", target="deployment/search"),
     "1/1 actions in flight in all"),
    ("cooldown", Limits(per_action_service=None, cooldown_s=300.0), request(ALICE, "b"),
     "checkout/deployment/checkout acted on at 2025-11-26T04:40:00Z; cooldown 5m; "
     "free again at 2025-11-26T04:45:00Z (in 300s)"),
    ("blast_radius", Limits(per_action_service=None, blast_fraction=0.25), _HUMAN_CHECKOUT,
     "acting on pod-2 would touch 2/4 targets of checkout within 1h, more than 0.25 of them"),
    ("blast_services", Limits(per_action_service=None, max_services=1),
     request(ALICE, "b", service="search", target="deployment/search"),
     "acting on search would touch 2 services within 1h, more than 1"),
]


@pytest.mark.parametrize(("code", "limits", "second", "detail"), _LIMIT_CASES,
                         ids=[c[0] for c in _LIMIT_CASES])
async def test_each_limit_refusal_maps_through(redis_client: aioredis.Redis, tmp_path: Path,
                                               code: str, limits: Limits, second: Request,
                                               detail: str) -> None:
    rig = await make_rig(redis_client, tmp_path, limits)
    first = request(ALICE, "a")
    one, two = await rig.control.submit_many([Item(first), Item(second)])
    assert one.status is SubmitStatus.QUEUED
    last = two.checks[-1]
    assert (two.status, last.ok, last.stage, last.code, last.detail) == (
        SubmitStatus.REFUSED, False, Stage.LIMITS, code, detail)
    assert two.checks[:-1] == policy_checks(second)
    assert rig.records() == [
        ("request", request_body(first, "queued", one.checks, rule="oncall")),
        ("request", request_body(second, "refused", two.checks, rule="oncall")),
        ("intent", intent_body(first)),
    ]
    assert [ex.idempotency_key for ex in await rig.queued()] == ["a"]
    assert await rig.status(second) == ("refused", f"limits: {code}: {detail}")
    rig.audit.close()


async def test_automation_spends_its_rules_own_budget(redis_client: aioredis.Redis,
                                                      tmp_path: Path) -> None:
    gov = replace(GOV, rule_budgets={"latency-restart": Window(1, 1800.0)})
    rig = await make_rig(redis_client, tmp_path, gov=gov)
    subs = await rig.control.submit_many([Item(request(RULE, "f1")), Item(request(RULE, "f2")),
                                          Item(request(ALICE, "h1"))])
    assert [(s.status, s.checks[-1].code, s.checks[-1].detail) for s in subs] == [
        (SubmitStatus.QUEUED, "claimed", "action/service 1/1 per 30m"),
        (SubmitStatus.REFUSED, "budget_action_service",
         "restart_pods on checkout: 1/1 per 30m used"),
        # A person is held to the shared per (action, service) budget, not the rule's.
        (SubmitStatus.QUEUED, "claimed", "action/service 2/5 per 1h"),
    ]
    rig.audit.close()


async def test_replaying_the_same_requests_executes_nothing_new(rig: Rig) -> None:
    batch = [request(RULE, "f1"), request(COPILOT, "c1"), request(ALICE, "h1", target="pod-3")]
    first = await rig.control.submit_many([Item(r) for r in batch])
    assert [s.status for s in first] == [SubmitStatus.QUEUED] * 3
    assert len(await rig.queued()) == 3
    rig.records()
    rig.clock.now = T0 + 30.0
    again = await rig.control.submit_many([Item(r) for r in batch])
    for req, sub in zip(batch, again, strict=True):
        last = sub.checks[-1]
        assert (sub.status, last.code, last.detail) == (
            SubmitStatus.DUPLICATE, "duplicate",
            f"idempotency key {req.idempotency_key!r} was claimed before; nothing new runs")
    # Audited as replays, no intent, nothing queued, no budget: the counts read stay at 2.
    assert [(k, b["result"], b["checks"][-1]["code"]) for k, b in rig.records()] == [
        ("request", "duplicate", "duplicate")] * 3
    assert again[1].checks[-1].state == {
        "budget_action_service": {"used": 3, "limit": 5, "window_s": 3600.0}}
    assert await rig.queued() == []
    # The request's own status is not overwritten by its replay.
    assert await rig.status(batch[1]) == ("queued",
                                          "limits: claimed: action/service 2/5 per 1h")
    # The same key twice in one batch: the first runs, the second is its duplicate.
    twice = await rig.control.submit_many([Item(request(ALICE, "h2", target="pod-4")),
                                           Item(request(ALICE, "h2", target="pod-4"))])
    assert [s.status for s in twice] == [SubmitStatus.QUEUED, SubmitStatus.DUPLICATE]
    assert [ex.idempotency_key for ex in await rig.queued()] == ["h2"]


# --- kill switch ---------------------------------------------------------------------------


async def test_the_kill_switch_stops_machines_not_people(rig: Rig) -> None:
    detail = "automation paused by human:alice: incident 42"
    reqs = [request(RULE, "f1"), request(COPILOT, "c1"), request(CAROL, "h1")]
    subs = await rig.control.submit_many([Item(r, paused=True, pause_detail=detail)
                                          for r in reqs])
    paused = Check.refuse(Stage.POLICY, "paused", detail)
    assert [s.checks for s in subs[:2]] == [(paused,), (paused,)]
    assert [s.status for s in subs] == [SubmitStatus.REFUSED, SubmitStatus.REFUSED,
                                        SubmitStatus.QUEUED]
    assert [(k, b["request"]["idempotency_key"] if k == "request" else b["request_id"],
             b.get("result")) for k, b in rig.records()] == [
        ("request", "f1", "refused"), ("request", "c1", "refused"), ("request", "h1", "queued"),
        ("intent", reqs[2].request_id, None)]
    assert [ex.idempotency_key for ex in await rig.queued()] == ["h1"]
    (no_detail,) = await rig.control.submit_many([Item(request(RULE, "f2"), paused=True)])
    assert no_detail.checks == (Check.refuse(Stage.POLICY, "paused", "automation is paused"),)


async def test_submit_reads_the_kill_switch_each_time(rig: Rig) -> None:
    state = {"paused": True}
    reads = []

    async def paused() -> tuple[bool, str]:
        reads.append(state["paused"])
        return state["paused"], ("automation paused by human:bob: deploy"
                                 if state["paused"] else "")

    plane = rig.plane(paused=paused)
    agent = await plane.submit(request(COPILOT, "c1"))
    human = await plane.submit(request(CAROL, "h1"))
    assert (agent.status, agent.reason) == (
        SubmitStatus.REFUSED, "policy: paused: automation paused by human:bob: deploy")
    assert human.status is SubmitStatus.QUEUED
    state["paused"] = False
    assert (await plane.submit(request(COPILOT, "c1"))).status is SubmitStatus.QUEUED
    assert reads == [True, True, False]
    # Without a callable nothing is paused.
    assert (await rig.control.submit(request(RULE, "f1"))).status is SubmitStatus.QUEUED


# --- approvals -----------------------------------------------------------------------------


def failover(actor: Actor = COPILOT, key: str = "fo1") -> Request:
    return request(actor, key, "failover_region", target="checkout", params={})


def links(aid: str, sub: Submission) -> dict[str, str]:
    base = f"{BASE_URL}/approvals/{aid}"
    return {"approve": f"{base}/approve?token={sub.approve_token}",
            "deny": f"{base}/deny?token={sub.deny_token}"}


def requested_body(req: Request, aid: str) -> dict[str, Any]:
    return {"approval_id": aid, "request_id": req.request_id, "event": "requested",
            "actor": str(req.actor), "at": T0, "requested_at": T0,
            "expires_at": T0 + EXPIRY_S, "reason": "risk high >= high",
            "config_version": "cfg-v1", "where": WHERE | {"target": "checkout"}}


def pending_check(aid: str) -> Check:
    return Check.allow(Stage.APPROVAL, "pending",
                       f"approval {aid} requested; expires at {T0 + EXPIRY_S:.0f}",
                       approval_id=aid)


@pytest.mark.parametrize("actor", [COPILOT, CAROL])
async def test_approval_is_requested_paged_with_links_and_found_again_on_replay(
        rig: Rig, actor: Actor) -> None:
    req = failover(actor)
    aid = approval_id(req.request_id)
    (sub,) = await rig.control.submit_many([Item(req)])
    assert sub.approve_token is not None and sub.deny_token is not None
    assert sub == Submission(req, SubmitStatus.PENDING_APPROVAL,
                             (*policy_checks(req), pending_check(aid)), aid, T0 + EXPIRY_S,
                             sub.approve_token, sub.deny_token)
    rule = "copilot" if actor is COPILOT else "oncall"
    assert rig.records() == [
        ("approval", requested_body(req, aid)),
        ("request", request_body(req, "pending_approval", sub.checks, rule=rule,
                                 approval_id=aid)),
    ]
    (page,) = await rig.pages()
    assert page.summary == (f"{actor} asks failover_region checkout (checkout) — "
                            "approval required: risk high >= high")
    assert page.links == links(aid, sub) == rig.control.approval_links(sub)
    assert (page.dedup_key, page.action) == (f"hotpath-{req.request_id}:approval",
                                             "failover_region")
    assert await rig.queued() == []
    # Limits are claimed when a person says yes, not now: the key is still free.
    assert await rig.redis.exists("{hotpath:lim}:idem:fo1") == 0
    assert await rig.status(req) == ("pending_approval", str(pending_check(aid)))
    # A replay finds the same approval (new links to it); no second record or page.
    rig.clock.now = T0 + 10.0
    (again,) = await rig.control.submit_many([Item(req)])
    assert (again.status, again.approval_id, again.approval_expires_at) == (
        SubmitStatus.PENDING_APPROVAL, aid, T0 + EXPIRY_S)
    assert again.approve_token not in (None, sub.approve_token)
    assert [k for k, _ in rig.records()] == ["request"]
    assert await rig.pages() == []


async def test_automation_waiting_for_approval_is_not_paged_here(rig: Rig) -> None:
    """The processor pages the finding itself (it holds the context)."""
    req = failover(RULE, "f1")
    (sub,) = await rig.control.submit_many([Item(req)])
    assert sub.status is SubmitStatus.PENDING_APPROVAL
    assert [k for k, _ in rig.records()] == ["approval", "request"]
    assert await rig.pages() == []


async def pending(rig: Rig, req: Request) -> Submission:
    (sub,) = await rig.control.submit_many([Item(req)])
    assert sub.status is SubmitStatus.PENDING_APPROVAL and sub.approve_token is not None
    await rig.pages()
    rig.records()
    return sub


async def test_an_approval_claims_the_limits_and_queues(rig: Rig) -> None:
    req = failover()
    sub = await pending(rig, req)
    aid = approval_id(req.request_id)
    rig.clock.now = T0 + 120.0
    assert sub.approve_token is not None
    result = await rig.control.decide(aid, sub.approve_token, BOB, "approve", "go")
    assert (result.check.ok, result.check.code, result.check.detail) == (
        True, "approved", f"{aid} approved by human:bob")
    assert result.approval is not None and result.approval.state is ApprovalState.APPROVED
    approved = Check.allow(Stage.APPROVAL, "approved", "approved by human:bob",
                           approval_id=aid, approver="human:bob")
    checks = (*policy_checks(req, T0 + 120.0), approved, claimed(1))
    assert rig.records() == [
        ("approval", {"approval_id": aid, "actor": "human:bob", "at": T0 + 120.0,
                      "config_version": "cfg-v1", "note": "go", "request_id": req.request_id,
                      "requested_at": T0, "where": WHERE | {"target": "checkout"},
                      "event": "approved"}),
        ("request", request_body(req, "queued", checks, now=T0 + 120.0, rule="copilot",
                                 approval_id=aid, approver="human:bob")),
        ("intent", intent_body(req, T0 + 120.0)),
    ]
    (ex,) = await rig.queued()
    assert ex == execution_request(req)
    assert await rig.redis.exists("{hotpath:lim}:idem:fo1") == 1
    assert await rig.status(req) == ("queued", "limits: claimed: action/service 1/5 per 1h")
    assert await rig.pages() == []
    # A replay of the approved request is a duplicate; nothing new runs.
    (replay,) = await rig.control.submit_many([Item(req)])
    assert (replay.status, replay.reason) == (
        SubmitStatus.DUPLICATE, f"approval: duplicate: approval {aid} is approved")
    assert await rig.queued() == []


async def test_an_approved_action_is_verified_from_when_it_was_approved(rig: Rig) -> None:
    # Automation's failover waited 120 s for a person: its verification window starts then
    # (in the series' time: the finding's point + 120 s), and the watch is left in the shared
    # store for the processor that owns the series.
    req = request(RULE, "auto-fo", "failover_region", target="checkout", params={})
    sub = await pending(rig, req)
    assert sub.approve_token is not None
    rig.clock.now = T0 + 120.0
    result = await rig.control.decide(approval_id(req.request_id), sub.approve_token, BOB,
                                      "approve")
    assert result.check.ok
    (pend,) = await rig.verify_store.pending()
    w = pend.watch
    assert (w.request_id, w.series_key, w.action, w.baseline, w.started_at, w.deadline) == (
        req.request_id, "checkout|http_latency_p99_ms|", "failover_region", 200.0,
        T0 - 5.0 + 120.0, T0 - 5.0 + 120.0 + 300.0)
    # A request without a series to watch (an agent's) leaves nothing to verify.
    other = failover(key="fo-agent")
    sub2 = await pending(rig, other)
    assert sub2.approve_token is not None
    await rig.control.decide(approval_id(other.request_id), sub2.approve_token, BOB, "approve")
    assert [p.watch.request_id for p in await rig.verify_store.pending()] == [req.request_id]


async def test_a_denial_runs_nothing(rig: Rig) -> None:
    req = failover()
    sub = await pending(rig, req)
    aid = approval_id(req.request_id)
    assert sub.deny_token is not None
    result = await rig.control.decide(aid, sub.deny_token, BOB, "deny", "not now")
    assert (result.check.code, result.check.detail) == ("denied", f"{aid} denied by human:bob")
    assert rig.records() == [
        ("approval", {"approval_id": aid, "actor": "human:bob", "at": T0,
                      "config_version": "cfg-v1", "note": "not now",
                      "request_id": req.request_id, "requested_at": T0,
                      "where": WHERE | {"target": "checkout"}, "event": "denied"})]
    assert await rig.queued() == []
    assert await rig.status(req) == ("denied", "denied by human:bob")
    assert await rig.redis.exists("{hotpath:lim}:idem:fo1") == 0


def forged(aid: str) -> str:
    """A well-formed approve link for the right approval, signed with a key we do not hold."""
    return mint(b"f" * 32, aid, "approve", T0 + EXPIRY_S, "forged")


@pytest.mark.parametrize(("case", "approver", "code", "detail"), [
    ("self", ALICE, "self_approval",
     "human:alice requested {aid}; a requester cannot approve or deny its own request"),
    ("unauthorised", CAROL, "not_authorized",
     "human:carol (roles: oncall) may not approve failover_region in production"),
    ("forged", BOB, "bad_signature", None),
    ("reused", BOB, "token_reused", "this approval link was already used; each link works once"),
    # Past the approval's expiry the link still verifies (a grace period), and the
    # approval's own state answers; past the grace the token itself has expired.
    ("expired", BOB, "approval_expired", "approval {aid} expired at 2025-11-26T04:55:00Z; "
     "nothing executes"),
    ("link-expired", BOB, "expired", None),
])
async def test_a_refused_decision_is_audited_and_runs_nothing(
        rig: Rig, case: str, approver: Actor, code: str, detail: str | None) -> None:
    req = failover(ALICE)
    sub = await pending(rig, req)
    aid = approval_id(req.request_id)
    assert sub.approve_token is not None
    token = sub.approve_token
    if case == "forged":
        token = forged(aid)
    elif case == "reused":
        assert (await rig.control.decide(aid, token, BOB, "approve")).check.ok
        assert len(await rig.queued()) == 1
        rig.records()
    elif case == "expired":
        rig.clock.now = T0 + EXPIRY_S
    elif case == "link-expired":
        rig.clock.now = T0 + EXPIRY_S + LINK_GRACE_S
    result = await rig.control.decide(aid, token, approver, "approve", "please")
    assert (result.check.ok, result.check.code) == (False, code)
    if detail is not None:
        assert result.check.detail == detail.format(aid=aid)
    ((kind, body),) = rig.records()
    expected: dict[str, Any] = {
        "approval_id": aid, "actor": str(approver), "at": rig.clock.now,
        "config_version": "cfg-v1", "note": "please", "event": "refused", "code": code,
        "detail": result.check.detail, "decision": "approve"}
    if result.approval is not None:  # read from the store: the refusal names the request
        expected |= {"request_id": req.request_id, "requested_at": T0,
                     "where": WHERE | {"target": "checkout"}}
    assert (kind, body) == ("approval", expected)
    assert (result.approval is not None) == (case in ("self", "unauthorised", "reused",
                                                      "expired"))
    assert await rig.queued() == []
    assert await rig.pages() == []


async def test_approved_during_a_freeze_is_refused_and_paged(rig: Rig) -> None:
    req = failover()
    sub = await pending(rig, req)
    aid = approval_id(req.request_id)
    rig.clock.now = FREEZE_AT + 100.0
    assert sub.approve_token is not None
    result = await rig.control.decide(aid, sub.approve_token, BOB, "approve")
    assert result.check.code == "approved"
    freeze = "policy: change_freeze: change freeze 'release-freeze' in force until " \
             "2025-11-26T05:00:00Z"
    ((_, approval), (kind, body)) = rig.records()
    assert (approval["event"], kind, body["result"]) == ("approved", "request", "refused")
    assert body["checks"][0]["code"] == "approved"
    assert body["checks"][-1]["code"] == "change_freeze"
    assert body["authorization"] == {"rule": None, "limits": {}, "approval_id": aid,
                                     "approver": "human:bob"}
    (page,) = await rig.pages()
    assert page.summary == ("agent:copilot asks failover_region checkout (checkout) — "
                            f"approved by human:bob but not run: {freeze}")
    assert page.dedup_key == f"hotpath-{req.request_id}:not-run"
    assert await rig.queued() == []
    assert await rig.status(req) == ("refused", freeze)
    assert await rig.redis.exists("{hotpath:lim}:idem:fo1") == 0


async def test_approved_with_the_budget_spent_is_refused_and_paged(
        redis_client: aioredis.Redis, tmp_path: Path) -> None:
    rig = await make_rig(redis_client, tmp_path, Limits(per_action_service=Window(2, 3600.0)))
    reqs = [failover(key=f"fo{i}") for i in (1, 2, 3)]
    subs = [await pending(rig, r) for r in reqs]
    for r, s in zip(reqs, subs, strict=True):
        assert s.approve_token is not None
        await rig.control.decide(approval_id(r.request_id), s.approve_token, BOB, "approve")
    assert [ex.idempotency_key for ex in await rig.queued()] == ["fo1", "fo2"]
    (page,) = await rig.pages()
    assert page.summary == (
        "agent:copilot asks failover_region checkout (checkout) — approved by human:bob but "
        "not run: limits: budget_action_service: failover_region on checkout: 2/2 per 1h used")
    assert await rig.status(reqs[2]) == (
        "refused", "limits: budget_action_service: failover_region on checkout: 2/2 per 1h used")
    rig.audit.close()


async def test_an_unanswered_approval_expires_pages_and_runs_nothing(rig: Rig) -> None:
    req = failover()
    sub = await pending(rig, req)
    aid = approval_id(req.request_id)
    rig.clock.now = T0 + EXPIRY_S - 1.0
    assert await rig.control.sweep_expired() == []
    rig.clock.now = T0 + EXPIRY_S
    (expired,) = await rig.control.sweep_expired()
    assert (expired.approval_id, expired.state, expired.request) == (
        aid, ApprovalState.EXPIRED, req)
    assert rig.records() == [
        ("approval", {"approval_id": aid, "request_id": req.request_id, "event": "expired",
                      "actor": None, "at": T0 + EXPIRY_S, "requested_at": T0,
                      "config_version": "cfg-v1", "where": WHERE | {"target": "checkout"}}),
        ("page", {"request_id": req.request_id, "reason": "approval expired",
                  "dedup_key": f"hotpath-{req.request_id}:expired", "at": T0 + EXPIRY_S,
                  "where": WHERE | {"target": "checkout"}}),
    ]
    (page,) = await rig.pages()
    assert page.summary == ("agent:copilot asks failover_region checkout (checkout) — "
                            "approval expired unanswered; failover_region not run")
    # Its own key: under the approval page's key the sender would drop it as delivered.
    assert page.dedup_key == f"hotpath-{req.request_id}:expired"
    assert await rig.status(req) == ("expired", "approval expired unanswered")
    assert await rig.control.sweep_expired() == []
    assert rig.records() == []
    assert await rig.queued() == []
    # A link of the expired approval no longer works.
    rig.clock.now = T0 + EXPIRY_S - 1.0  # even one whose own token expiry has not passed
    assert sub.approve_token is not None
    late = await rig.control.decide(aid, sub.approve_token, BOB, "approve")
    assert late.check.code == "approval_expired"
    assert await rig.queued() == []


# --- outages -------------------------------------------------------------------------------


async def test_redis_stopped_means_zero_executions_and_pages(
        rig: Rig, redis_server: RedisServer) -> None:
    redis_server.stop()
    try:
        subs = await rig.control.submit_many([
            Item(request(RULE, "f1")), Item(request(COPILOT, "c1")),
            Item(failover(COPILOT, "fo1"))])
    finally:
        redis_server.start()
    auto, agent, approval = subs
    for sub, stage in ((auto, Stage.LIMITS), (agent, Stage.LIMITS), (approval, Stage.APPROVAL)):
        last = sub.checks[-1]
        assert (sub.status, last.ok, last.stage, last.code) == (
            SubmitStatus.REFUSED, False, stage, "unavailable")
    assert agent.checks[-1].detail.startswith("limits store unavailable (")
    assert agent.checks[-1].detail.endswith("); failing closed")
    assert approval.checks[-1].detail.startswith(
        "approval store could not store the approval: ")
    # Audited as refusals; no intent, so nothing can have executed.
    assert [(k, b["result"]) for k, b in rig.records()] == [("request", "refused")] * 3
    # Pages for the agent (automation's finding is paged by the processor), in the spool.
    pages = rig.outbox.spool.pending()
    assert [p.summary for p in pages] == [
        f"agent:copilot asks failover_region checkout (checkout) — {approval.reason}",
        f"agent:copilot asks restart_pods deployment/checkout (checkout) — {agent.reason}"]
    assert agent.reason.startswith("limits: unavailable: limits store unavailable (")
    assert [p.dedup_key for p in pages] == [f"hotpath-{failover(COPILOT, 'fo1').request_id}",
                                            f"hotpath-{request(COPILOT, 'c1').request_id}"]
    # Redis is back (empty): claims and approvals work again.
    rig.clock.now = T0 + 5.0
    again = await rig.control.submit_many([Item(request(COPILOT, "c1", at=T0 + 5.0)),
                                           Item(failover(COPILOT, "fo1"))])
    assert [s.status for s in again] == [SubmitStatus.QUEUED, SubmitStatus.PENDING_APPROVAL]
    assert [ex.idempotency_key for ex in await rig.queued()] == ["c1"]


async def test_queue_unavailable_after_claiming_releases_and_refuses(
        redis_client: aioredis.Redis, tmp_path: Path) -> None:
    limits = Limits(per_action_service=Window(5, 3600.0), concurrency_per_service=1)
    rig = await make_rig(redis_client, tmp_path, limits)
    broken = ActionQueue(unreachable_redis())
    plane = rig.plane(queue=broken)
    auto, agent = await plane.submit_many([Item(request(RULE, "f1")),
                                           Item(request(COPILOT, "c1", target="pod-2"))])
    assert (auto.status, auto.checks[-1].code) == (SubmitStatus.REFUSED, "queue_unavailable")
    # The agent's request met the concurrency limit behind automation's claim.
    assert (agent.status, agent.checks[-1].code) == (SubmitStatus.REFUSED,
                                                     "concurrency_service")
    err = auto.checks[-1].detail
    assert err.startswith("action queue hotpath:actions unavailable: ConnectionError: ")
    assert auto.checks[-2].code == "claimed"
    records = rig.records()
    assert [(k, b.get("result")) for k, b in records] == [
        ("request", "queued"), ("request", "refused"), ("intent", None),
        ("outcome", "not_executed")]
    req = request(RULE, "f1")
    assert records[3][1] == {
        "request_id": req.request_id, "action": "restart_pods", "actor": str(RULE),
        "result": "not_executed", "detail": f"execute: queue_unavailable: {err}", "at": T0,
        "latency_s": 0.0, "rollback_of": None, "config_version": "cfg-v1", "where": WHERE}
    assert await rig.status(req) == ("refused", f"execute: queue_unavailable: {err}")
    assert await rig.pages() == []  # automation: the processor pages the finding
    # The slot was released: another request fits the concurrency limit of 1 again.
    (ok,) = await rig.control.submit_many([Item(request(COPILOT, "c2", target="pod-2"))])
    assert ok.status is SubmitStatus.QUEUED
    assert [ex.idempotency_key for ex in await rig.queued()] == ["c2"]
    # A person's request refused this way is paged.
    await rig.limits.release(request(COPILOT, "c2"))
    (human,) = await plane.submit_many([Item(request(ALICE, "h2", target="pod-3"))])
    assert (human.status, human.checks[-1].code) == (SubmitStatus.REFUSED, "queue_unavailable")
    (page,) = await rig.pages()
    assert page.summary == ("human:alice asks restart_pods pod-3 (checkout) — "
                            f"execute: queue_unavailable: {human.checks[-1].detail}")
    await broken.redis.aclose()
    rig.audit.close()


async def test_approved_but_queue_unavailable_is_refused_and_paged(rig: Rig) -> None:
    req = failover()
    sub = await pending(rig, req)
    aid = approval_id(req.request_id)
    broken = ActionQueue(unreachable_redis())
    assert sub.approve_token is not None
    result = await rig.plane(queue=broken).decide(aid, sub.approve_token, BOB, "approve")
    assert result.check.code == "approved"
    records = rig.records()
    assert [(k, b.get("event") or b.get("result")) for k, b in records] == [
        ("approval", "approved"), ("request", "queued"), ("intent", None),
        ("outcome", "not_executed")]
    detail = records[3][1]["detail"]
    assert detail.startswith("execute: queue_unavailable: action queue hotpath:actions "
                             "unavailable: ConnectionError: ")
    (page,) = await rig.pages()
    assert page.summary == ("agent:copilot asks failover_region checkout (checkout) — "
                            f"approved by human:bob but not run: {detail}")
    assert await rig.status(req) == ("refused", detail)
    await broken.redis.aclose()


# --- replays that are not replays, and states a resend must not hide -------------------


async def test_a_key_reused_for_another_change_is_refused_and_runs_nothing(rig: Rig) -> None:
    (first,) = await rig.control.submit_many([Item(request(COPILOT, "k9"))])
    assert first.status is SubmitStatus.QUEUED
    await rig.queued()
    other = request(COPILOT, "k9", target="pod-7")
    (clash,) = await rig.control.submit_many([Item(other)])
    assert (clash.status, clash.checks[-1].code, clash.checks[-1].detail) == (
        SubmitStatus.REFUSED, "idempotency_conflict",
        "k9 was used for restart_pods on deployment/checkout (checkout, production); "
        "a different change needs its own key")
    assert await rig.queued() == []
    # The genuine replay is still a duplicate, and the original's status is intact.
    (again,) = await rig.control.submit_many([Item(request(COPILOT, "k9"))])
    assert again.status is SubmitStatus.DUPLICATE
    assert (await rig.status(first.request))[0] == "queued"


async def test_a_key_reused_while_its_approval_waits_is_refused(rig: Rig) -> None:
    await pending(rig, failover(key="fo9"))
    clash = replace(failover(key="fo9"), params={"to": "elsewhere"})
    (sub,) = await rig.control.submit_many([Item(clash)])
    assert (sub.status, sub.checks[-1].stage, sub.checks[-1].code) == (
        SubmitStatus.REFUSED, Stage.APPROVAL, "idempotency_conflict")


async def test_a_claim_never_queued_is_refused_and_paged_not_silently_dropped(
        rig: Rig) -> None:
    # Limits claimed, then the process died before queueing or recording the request.
    req = request(COPILOT, "lost")
    assert (await rig.limits.claim(LimitRequest(req, 4))).status is LimitStatus.CLAIMED
    (sub,) = await rig.control.submit_many([Item(req)])
    assert (sub.status, sub.checks[-1].code, sub.checks[-1].detail) == (
        SubmitStatus.REFUSED, "claimed_not_queued",
        "lost was claimed before but never queued (a crash or a lost reply); nothing will "
        "run it unless a person does")
    (page,) = await rig.pages()
    assert page.summary.endswith(f"— {sub.reason}")
    assert await rig.queued() == []


async def test_a_refused_resend_keeps_the_originals_status(rig: Rig) -> None:
    req = request(COPILOT, "k10")
    (first,) = await rig.control.submit_many([Item(req)])
    (held,) = await rig.control.submit_many([Item(req, paused=True, pause_detail="stop")])
    assert (first.status, held.status) == (SubmitStatus.QUEUED, SubmitStatus.REFUSED)
    got = await rig.store.get(req.request_id)
    assert got is not None and got["status"] == "queued"
    assert [h["status"] for h in got["history"]] == ["queued", "refused"]


async def test_a_queue_outage_unclaims_so_the_same_request_can_run_later(
        redis_client: aioredis.Redis, tmp_path: Path) -> None:
    rig = await make_rig(redis_client, tmp_path)
    broken = ActionQueue(unreachable_redis())
    req = request(COPILOT, "retry-me")
    (down,) = await rig.plane(queue=broken).submit_many([Item(req)])
    assert down.checks[-1].code == "queue_unavailable"
    await rig.pages()
    (up,) = await rig.control.submit_many([Item(req)])
    assert up.status is SubmitStatus.QUEUED  # not DUPLICATE: the claim was undone
    assert [ex.idempotency_key for ex in await rig.queued()] == ["retry-me"]
    await broken.redis.aclose()
    rig.audit.close()


async def test_a_persons_action_naming_a_series_is_verified(rig: Rig) -> None:
    req = replace(request(ALICE, "watch-me", action="flush_cache", params={}),
                  evidence={"series": "checkout|http_latency_p99_ms|", "baseline": 200.0})
    (sub,) = await rig.control.submit_many([Item(req)])
    assert sub.status is SubmitStatus.QUEUED
    (pend,) = await rig.verify_store.pending()
    assert (pend.watch.request_id, pend.watch.series_key, pend.watch.started_at) == (
        req.request_id, "checkout|http_latency_p99_ms|", T0)


async def test_an_unreadable_kill_switch_holds_machines_back_and_pages(rig: Rig) -> None:
    async def unreadable() -> tuple[bool, str]:
        raise StoreUnavailable("the kill switch cannot be read")

    plane = rig.plane(paused=unreadable)
    agent = await plane.submit(request(COPILOT, "u1"))
    assert (agent.status, agent.checks[-1].code, agent.checks[-1].detail) == (
        SubmitStatus.REFUSED, "unavailable", "the kill switch cannot be read")
    (page,) = await rig.pages()
    assert page.summary.endswith("— policy: unavailable: the kill switch cannot be read")
    human = await plane.submit(request(ALICE, "u2", target="pod-5"))
    assert human.status is SubmitStatus.QUEUED
