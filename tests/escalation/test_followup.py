"""FollowUp on real parts (the control plane's rig): outcomes, verification, rollback, pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from escalation.actions import ActionQueue
from escalation.control import Item
from escalation.executors.base import ActionRequest, ActionResult
from escalation.followup import FollowUp, rollback_request
from escalation.limits import Limits, Window
from escalation.records import execution_request
from escalation.request import Actor, ActorKind, Request
from escalation.submission import SubmitStatus
from escalation.verdict import Check, Stage
from escalation.verify import NO_PROGRESS, Watch, advance, expire, watch_for

from .test_control import (
    ALICE,
    CATALOGUE,
    GOV,
    RULE,
    T0,
    WHERE,
    Rig,
    make_rig,
    request,
    unreachable_redis,
)

pytestmark = pytest.mark.redis

# One in flight per service, so a held slot shows as a refusal of the next request.
LIMITS = Limits(per_action_service=Window(5, 3600.0), concurrency_per_service=1)


class FollowRig:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.followup = self.owner()

    def owner(self, queue: ActionQueue | None = None) -> FollowUp:
        """A follow-up on the shared stores (a second one is another replica)."""
        r = self.rig
        return FollowUp(GOV, limits=r.limits, verify_store=r.verify_store, store=r.store,
                        audit=r.audit, actions=queue or r.queue, pages=r.outbox, clock=r.clock)

    async def run(self, req: Request) -> tuple[ActionRequest, Watch | None]:
        """Submit, take the queued action as a runner would, open its watch as the
        processor does when it queues it."""
        (sub,) = await self.rig.control.submit_many([Item(req)])
        assert sub.status is SubmitStatus.QUEUED, sub.reason
        (ex,) = await self.rig.queued()
        watch = watch_for(req, CATALOGUE)
        if watch is not None:
            assert await self.rig.verify_store.add(watch)
        self.rig.records()
        return ex, watch

    async def slot_free(self, key: str) -> bool:
        """Whether a new request on checkout fits the concurrency limit of one."""
        (sub,) = await self.rig.control.submit_many([Item(request(ALICE, key, target=key))])
        if sub.status is SubmitStatus.QUEUED:
            await self.rig.queued()
            await self.rig.limits.release(sub.request)
            self.rig.records()
            return True
        assert sub.checks[-1].code == "concurrency_service"
        self.rig.records()
        return False


@pytest.fixture
async def fr(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[FollowRig]:
    rig = await make_rig(redis_client, tmp_path, LIMITS)
    yield FollowRig(rig)
    rig.audit.close()


def outcome_body(req: Request, ex: ActionRequest, result: str, detail: str, status: int | None,
                 at: float, **extra: Any) -> dict[str, Any]:
    return {"request_id": req.request_id, "action": ex.action, "target": ex.target,
            "actor": str(req.actor), "result": result, "detail": detail, "status": status,
            "at": at, "latency_s": 0.25, "rollback_of": None,
            "idempotency_key": req.idempotency_key, "config_version": "cfg-v1",
            "where": WHERE, **extra}


# --- outcomes ------------------------------------------------------------------------------


async def test_success_audits_frees_the_slot_and_verifies(fr: FollowRig) -> None:
    req = request(RULE, "f1")
    ex, watch = await fr.run(req)
    assert watch is not None
    assert not await fr.slot_free("h1")
    fr.rig.clock.now = T0 + 3.0
    await fr.followup.on_outcome(ex, ActionResult(True, 202, "HTTP 202", 0.25))
    assert fr.rig.records() == [("outcome", outcome_body(
        req, ex, "success", "HTTP 202", 202, T0 + 3.0,
        verifying={"series": "checkout|http_latency_p99_ms|", "until": T0 - 5.0 + 120.0}))]
    assert await fr.rig.status(req) == ("verifying", "HTTP 202")
    assert await fr.slot_free("h2")
    assert await fr.rig.verify_store.result(req.request_id) is None  # still watched
    assert await fr.rig.pages() == []


async def test_success_without_a_verify_spec_is_done(fr: FollowRig) -> None:
    req = request(ALICE, "h1", "failover_region", target="checkout", params={})
    ex = execution_request(req)  # approval is the control plane's business; not needed here
    await fr.followup.on_outcome(ex, ActionResult(True, 200, "HTTP 200", 0.25))
    ((kind, body),) = fr.rig.records()
    assert (kind, body["result"], "verifying" in body) == ("outcome", "success", False)
    assert await fr.rig.status(req) == ("succeeded", "HTTP 200")


async def test_failure_pages_closes_the_watch_and_frees_the_slot(fr: FollowRig) -> None:
    req = request(RULE, "f1")
    ex, watch = await fr.run(req)
    assert watch is not None
    fr.rig.clock.now = T0 + 4.0
    await fr.followup.on_outcome(ex, ActionResult(False, 500, "HTTP 500", 0.25))
    dedup = f"hotpath-{req.request_id}:failed"
    assert fr.rig.records() == [
        ("outcome", outcome_body(req, ex, "failed", "HTTP 500", 500, T0 + 4.0)),
        ("page", {"request_id": req.request_id, "dedup_key": dedup, "at": T0 + 4.0,
                  "reason": "remediation failed", "where": WHERE}),
    ]
    # Read back through the outbox: the page decodes, and carries the finding's evidence.
    (page,) = await fr.rig.pages()
    assert page.summary == ("automation:latency-restart asks restart_pods deployment/checkout "
                            "(checkout) — remediation failed: restart_pods "
                            "deployment/checkout (HTTP 500)")
    assert (page.dedup_key, page.metric, page.value, page.baseline, page.confidence,
            page.ts, page.action) == (dedup, "http_latency_p99_ms", 900.0, 200.0, 0.97,
                                      T0 - 5.0, "restart_pods")
    result = await fr.rig.verify_store.result(req.request_id)
    assert result is not None
    assert result["check"] == Check.refuse(
        Stage.VERIFY, "not_executed", "restart_pods failed: HTTP 500").to_dict()
    assert await fr.rig.verify_store.pending() == []
    assert await fr.rig.status(req) == ("failed", "HTTP 500")
    assert await fr.slot_free("h1")


async def test_failures_of_requests_without_a_finding_page_apart(fr: FollowRig) -> None:
    """Each request pages under its own dedup key (not one shared by every finding-less one)."""
    reqs = [request(ALICE, "h1", "failover_region", target="checkout", params={}),
            request(ALICE, "h2", "failover_region", target="checkout", params={})]
    for req in reqs:
        await fr.followup.on_outcome(execution_request(req),
                                     ActionResult(False, None, "timeout", 10.0))
    pages = await fr.rig.pages()
    assert [p.dedup_key for p in pages] == [f"hotpath-{r.request_id}:failed" for r in reqs]
    assert [p.finding_id for p in pages] == [r.request_id for r in reqs]


async def test_an_outcome_after_the_verdict_keeps_the_verdict(fr: FollowRig) -> None:
    """The series can recover before a slow executor reports: "recovered" stands."""
    req = request(RULE, "f1")
    ex, watch = await fr.run(req)
    assert watch is not None
    _, check = advance(watch, NO_PROGRESS, [T0, T0 + 10.0, T0 + 20.0], [210.0, 205.0, 198.0])
    assert check is not None and check.code == "recovered"
    await fr.followup.on_verified(watch, check)
    await fr.followup.on_outcome(ex, ActionResult(True, 202, "HTTP 202", 0.25))
    assert await fr.rig.status(req) == ("recovered", check.detail)


async def test_an_outcome_without_its_request_is_still_audited(fr: FollowRig) -> None:
    """An action queued before requests travelled with it: audited from the action alone."""
    ex = ActionRequest("restart_pods", "pod-1", "checkout", "f9", "legacy:f9", "restart",
                       {"evidence": {"metric": "latency", "value": 900.0, "baseline": 200.0,
                                     "confidence": 0.99, "ts": T0}})
    await fr.followup.on_outcome(ex, ActionResult(False, 503, "HTTP 503", 0.25))
    assert fr.rig.records() == [
        ("outcome", {"request_id": None, "action": "restart_pods", "target": "pod-1",
                     "actor": "restart", "result": "failed", "detail": "HTTP 503",
                     "status": 503, "at": T0, "latency_s": 0.25, "rollback_of": None,
                     "idempotency_key": "legacy:f9", "config_version": "cfg-v1",
                     "where": {"service": "checkout", "target": "pod-1"}}),
        ("page", {"request_id": None, "dedup_key": "hotpath-f9", "at": T0,
                  "reason": "remediation failed",
                  "where": {"service": "checkout", "target": "pod-1"}}),
    ]
    (page,) = await fr.rig.pages()
    assert page.summary == ("checkout latency 900 vs baseline 200 — remediation failed: "
                            "restart_pods pod-1 (HTTP 503)")


# --- verification --------------------------------------------------------------------------


def verification_body(req: Request, check: Check, at: float) -> dict[str, Any]:
    return {"request_id": req.request_id, "action": req.action, "result": check.code,
            "detail": check.detail, "at": at, "recovered_at": check.state.get("recovered_at"),
            "event_ts": req.event_ts, "config_version": "cfg-v1", "where": WHERE}


async def test_recovered_is_audited_and_nothing_else_happens(fr: FollowRig) -> None:
    req = request(RULE, "f1")
    ex, watch = await fr.run(req)
    assert watch is not None
    await fr.followup.on_outcome(ex, ActionResult(True, 202, "HTTP 202", 0.25))
    fr.rig.records()
    _, check = advance(watch, NO_PROGRESS, [T0, T0 + 10.0, T0 + 20.0], [210.0, 205.0, 198.0])
    assert check is not None and check.code == "recovered"
    fr.rig.clock.now = T0 + 30.0
    await fr.followup.on_verified(watch, check)
    assert fr.rig.records() == [("verification", verification_body(req, check, T0 + 30.0))]
    assert check.state["recovered_at"] == T0 + 20.0
    assert await fr.rig.status(req) == ("recovered", check.detail)
    assert await fr.rig.queued() == []
    assert await fr.rig.pages() == []


async def test_no_recovery_rolls_back_and_pages_once(fr: FollowRig) -> None:
    req = request(RULE, "f1")
    ex, watch = await fr.run(req)
    assert watch is not None
    await fr.followup.on_outcome(ex, ActionResult(True, 202, "HTTP 202", 0.25))
    fr.rig.records()
    now = watch.deadline + 5.0
    fr.rig.clock.now = now
    check = expire(watch, NO_PROGRESS, watch.deadline)
    assert check is not None and check.code == "no_recovery"
    # Two owners (a rebalance) judge the same watch: only the first acts.
    await fr.followup.on_verified(watch, check)
    await fr.owner().on_verified(watch, check)
    rb = rollback_request(req, CATALOGUE.actions["restart_pods"], watch, check, now)
    assert rb is not None
    reason = ("automation tried restart_pods on deployment/checkout; no recovery; "
              "rolling back with undo_restart")
    assert fr.rig.records() == [
        ("verification", verification_body(req, check, now)),
        ("intent", {"request_id": rb.request_id, "action": "undo_restart",
                    "target": "deployment/checkout", "actor": "automation:rollback",
                    "at": now, "params": {"replicas": 2},
                    "idempotency_key": "rollback:f1", "rollback_of": req.request_id,
                    "config_version": "cfg-v1", "where": WHERE}),
        ("page", {"request_id": req.request_id,
                  "dedup_key": f"hotpath-{req.request_id}:no-recovery",
                  "reason": reason, "at": now, "where": WHERE}),
    ]
    (queued,) = await fr.rig.queued()
    assert queued == execution_request(rb, rollback_of=req.request_id)
    assert (queued.action, queued.idempotency_key, queued.context["rollback_of"]) == (
        "undo_restart", "rollback:f1", req.request_id)
    (page,) = await fr.rig.pages()
    assert page.summary == ("automation:latency-restart asks restart_pods "
                            f"deployment/checkout (checkout) — {reason}")
    assert await fr.rig.status(req) == ("rolled_back", check.detail)
    # The rollback's own outcome: audited as one, the original's status untouched.
    fr.rig.clock.now = now + 2.0
    await fr.followup.on_outcome(queued, ActionResult(True, 200, "HTTP 200", 0.25))
    ((kind, body),) = fr.rig.records()
    assert (kind, body["request_id"], body["result"], body["rollback_of"],
            "verifying" in body) == ("outcome", rb.request_id, "success", req.request_id,
                                     False)
    assert await fr.rig.status(rb) == ("succeeded", "HTTP 200")
    assert await fr.rig.status(req) == ("rolled_back", check.detail)


async def test_no_recovery_without_a_rollback_only_pages(fr: FollowRig) -> None:
    req = request(RULE, "f1", "flush_cache", params={})
    ex, watch = await fr.run(req)
    assert watch is not None and watch.rollback is None
    await fr.followup.on_outcome(ex, ActionResult(True, 202, "HTTP 202", 0.25))
    fr.rig.records()
    check = expire(watch, NO_PROGRESS, watch.deadline)
    assert check is not None
    fr.rig.clock.now = watch.deadline
    await fr.followup.on_verified(watch, check)
    reason = "automation tried flush_cache on deployment/checkout; no recovery"
    assert [k for k, _ in fr.rig.records()] == ["verification", "page"]
    assert await fr.rig.queued() == []
    (page,) = await fr.rig.pages()
    assert page.summary == ("automation:latency-restart asks flush_cache deployment/checkout "
                            f"(checkout) — {reason}")
    assert await fr.rig.status(req) == ("no_recovery", check.detail)


async def test_a_rollback_that_cannot_be_queued_is_paged_as_such(fr: FollowRig) -> None:
    req = request(RULE, "f1")
    _, watch = await fr.run(req)
    assert watch is not None
    check = expire(watch, NO_PROGRESS, watch.deadline)
    assert check is not None
    broken = ActionQueue(unreachable_redis())
    await fr.owner(queue=broken).on_verified(watch, check)
    records = fr.rig.records()
    assert [(k, b.get("result")) for k, b in records] == [
        ("verification", "no_recovery"), ("intent", None), ("outcome", "not_executed"),
        ("page", None)]
    error = records[2][1]["detail"]
    assert error.startswith("action queue hotpath:actions unavailable: ConnectionError: ")
    reason = ("automation tried restart_pods on deployment/checkout; no recovery; "
              f"rollback with undo_restart could not be queued ({error})")
    assert records[3][1]["reason"] == reason
    (page,) = await fr.rig.pages()
    assert page.summary.endswith(f"— {reason}")
    assert await fr.rig.status(req) == ("no_recovery", check.detail)
    await broken.redis.aclose()


async def test_verification_of_a_request_the_store_lost(fr: FollowRig) -> None:
    """The request store expired or was flushed: the watch alone still pages and rolls back."""
    req = request(RULE, "f1")
    _, watch = await fr.run(req)
    assert watch is not None
    await fr.rig.redis.delete(f"hotpath:req:{req.request_id}")
    check = expire(watch, NO_PROGRESS, watch.deadline)
    assert check is not None
    await fr.followup.on_verified(watch, check)
    (queued,) = await fr.rig.queued()
    assert (queued.action, queued.idempotency_key) == ("undo_restart", "rollback:f1")
    (page,) = await fr.rig.pages()
    assert page.summary.startswith("automation:unknown asks restart_pods deployment/checkout")


def test_rollback_request_copies_where_and_evidence() -> None:
    req = request(RULE, "f1")
    watch = watch_for(req, CATALOGUE)
    assert watch is not None
    check = Check.refuse(Stage.VERIFY, "no_recovery", "still at 900")
    rb = rollback_request(req, CATALOGUE.actions["restart_pods"], watch, check, T0 + 200.0)
    assert rb is not None
    assert (rb.actor, rb.action, rb.service, rb.environment, rb.region, rb.target) == (
        Actor(ActorKind.AUTOMATION, "rollback"), "undo_restart", "checkout", "production",
        "eu-west-1", "deployment/checkout")
    assert (rb.requested_at, rb.event_ts, rb.finding_id, rb.evidence, rb.reason) == (
        T0 + 200.0, req.event_ts, "f-f1", req.evidence,
        f"rollback of {req.request_id} (restart_pods): still at 900")
    assert rollback_request(req, CATALOGUE.actions["flush_cache"], watch, check, 0.0) is None
