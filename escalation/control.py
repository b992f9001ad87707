"""The one path every action request takes, whoever asks (DESIGN.md "Governed actions").

::

    request ─▶ kill switch (machine actors) ─▶ policy ─▶ approval? ─▶ limits ─▶ intent ─▶ queue

Automation (the processor, one call per batch), an outside agent and a human (the action
API) all call :meth:`ControlPlane.submit_many`; each stage is a pure check or one atomic
Redis script and answers a :class:`~escalation.verdict.Check`; the request's audit record
carries every check, so the audit says who asked, under which rule, with which budget state
and which approval. Execution, verification and rollback follow the queue
(:mod:`escalation.followup`).

Order matters:

* the kill switch first: a paused fleet refuses automation and agents before anything is
  read (humans may still act: the switch stops machines, not the people fixing things);
* policy before limits, so a refused request spends no budget;
* approval before limits: the budget is claimed when a person says yes (it measures what
  runs, not what was asked), and policy is evaluated again then (a freeze may have begun);
* the idempotency key is claimed in the limits script, so a replay of a request that ran
  is a ``DUPLICATE`` that executes nothing, and a replay of one waiting for approval finds
  the same pending approval.

Pages: for automation the caller pages the finding (it holds the context); for agents and
humans this module pages what a person must see — an approval to give, a store that is down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from escalation.approvals import ApprovalState, ApprovalStore, DecideResult, PendingApproval
from escalation.catalogue import Catalogue
from escalation.errors import (
    ApprovalStoreUnavailable,
    OutboxError,
    RequestStoreError,
    StoreUnavailable,
    VerifyStoreError,
)
from escalation.executors.base import ActionRequest
from escalation.limits import LimitOutcome, LimitRequest, LimitStatus, RedisLimits, Window
from escalation.page import Page, request_page
from escalation.policy import Policy, PolicyVerdict, evaluate, may_approve
from escalation.records import event_page, execution_request, intent_body, request_body, where
from escalation.request import Actor, ActorKind, Request
from escalation.request_store import RequestStore
from escalation.submission import Submission, SubmitStatus
from escalation.verdict import Check, Stage
from escalation.verify import watch_for
from escalation.verify_store import VerifyStore

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class AuditSink(Protocol):
    def append(self, kind: str, body: dict[str, Any]) -> Any: ...
    def flush(self) -> None: ...


class PageSink(Protocol):
    async def put_many(self, pages: Sequence[Page]) -> None: ...


class ActionSink(Protocol):
    async def put_many(self, requests: Sequence[ActionRequest]) -> None: ...


@dataclass(frozen=True, slots=True)
class Governance:
    """The config's governance sections, as the control plane reads them."""

    catalogue: Catalogue
    policy: Policy
    config_version: str
    # Automation rules' own (action, service) budgets, by rule name (= automation actor).
    rule_budgets: Mapping[str, Window] = field(default_factory=dict)
    approval_url: str = ""  # base of the approve/deny links in pages, e.g. https://hotpath/v1

    def limit_request(self, req: Request) -> LimitRequest:
        """What ``req`` is claimed against: its service's size, and for automation its
        rule's own (action, service) budget."""
        budget = (self.rule_budgets.get(req.actor.name)
                  if req.actor.kind is ActorKind.AUTOMATION else None)
        return LimitRequest(req, self.catalogue.service(req.service).targets, budget)


@dataclass(frozen=True, slots=True)
class Item:
    """One request of a batch; ``paused`` is the kill switch as the caller last read it."""

    request: Request
    paused: bool = False
    pause_detail: str = ""
    pause_code: str = "paused"   # "unavailable" when the switch could not be read


class ControlPlane:
    def __init__(self, gov: Governance, *, limits: RedisLimits, approvals: ApprovalStore,
                 store: RequestStore, audit: AuditSink, actions: ActionSink,
                 pages: PageSink, clock: Clock,
                 paused: Callable[[], Awaitable[tuple[bool, str]]] | None = None,
                 on_submission: Callable[[Submission], None] | None = None,
                 on_approval: Callable[[str], None] | None = None,
                 verify_store: VerifyStore | None = None) -> None:
        self.gov = gov
        # Approved actions are queued here, not by a processor: their verification watch is
        # left in the shared store, where the processor owning the series picks it up.
        self.verify_store = verify_store
        self.limits = limits
        self.approvals = approvals
        self.store = store
        self.audit = audit
        self.actions = actions
        self.pages = pages
        self.clock = clock
        # For callers that do not hold the kill switch state (the API): read per request.
        self._paused = paused
        # Metrics hooks (the runtime counts; escalation holds no metrics registry).
        self._on_submission = on_submission or (lambda _: None)
        self._on_approval = on_approval or (lambda _: None)

    # --- submit ------------------------------------------------------------------------

    async def submit(self, req: Request) -> Submission:
        """One request from the API. ``paused`` raising :class:`StoreUnavailable` (the
        switch cannot be read) holds machines back as a pause would, with its own code."""
        try:
            paused, detail = (False, "") if self._paused is None else await self._paused()
            item = Item(req, paused, detail)
        except StoreUnavailable as e:
            item = Item(req, True, str(e), pause_code="unavailable")
        (sub,) = await self.submit_many([item])
        return sub

    async def submit_many(self, items: Sequence[Item]) -> list[Submission]:
        """Decide a batch: pure checks per request, one limits round trip for the batch,
        then the audit (fsynced) before anything is queued."""
        now = self.clock()
        subs: list[Submission | None] = []
        to_claim: list[tuple[int, Request, tuple[Check, ...], PolicyVerdict]] = []
        to_approve: list[tuple[int, Request, tuple[Check, ...], PolicyVerdict]] = []
        pages: list[Page] = []
        for i, it in enumerate(items):
            req = it.request
            if it.paused and req.actor.kind is not ActorKind.HUMAN:
                held = Submission(req, SubmitStatus.REFUSED, (Check.refuse(
                    Stage.POLICY, it.pause_code, it.pause_detail or "automation is paused"),))
                subs.append(held)
                if it.pause_code == "unavailable" and req.actor.kind is not ActorKind.AUTOMATION:
                    pages.append(request_page(req, held.reason, now))
                continue
            verdict = evaluate(req, self.gov.catalogue, self.gov.policy, now)
            checks = verdict.checks
            if not verdict.allowed:
                subs.append(Submission(req, SubmitStatus.REFUSED, checks))
            elif verdict.dry_run:
                peek = await self.limits.peek(self._limit_request(req))
                subs.append(Submission(req, SubmitStatus.DRY_RUN, (*checks, peek.check)))
            elif verdict.approval_required:
                subs.append(None)
                to_approve.append((i, req, checks, verdict))
            else:
                subs.append(None)
                to_claim.append((i, req, checks, verdict))

        for i, req, checks, verdict in to_approve:
            subs[i], page = await self._ask_approval(req, checks, verdict)
            if page is not None:
                pages.append(page)
        outcomes = await self.limits.claim_many([self._limit_request(r) for _, r, _, _ in to_claim])
        claimed_now = {r.request_id for (_, r, _, _), o in zip(to_claim, outcomes, strict=True)
                       if o.status is LimitStatus.CLAIMED}
        for (i, req, checks, _), outcome in zip(to_claim, outcomes, strict=True):
            sub = _claimed(req, checks, outcome)
            if outcome.status is LimitStatus.DUPLICATE and req.request_id not in claimed_now:
                sub = await self._replay(sub)
            subs[i] = sub
            machine = req.actor.kind is ActorKind.AUTOMATION
            if sub.status is SubmitStatus.REFUSED and not machine and sub.checks[-1].code in (
                    "unavailable", "claimed_not_queued"):
                pages.append(request_page(req, sub.reason, now))

        done = [s for s in subs if s is not None]
        assert len(done) == len(items)
        runnable = [s for s in done if s.status is SubmitStatus.QUEUED]
        for s in done:
            self.audit.append("request", request_body(self.gov.config_version, s, now))
        for s in runnable:
            self.audit.append("intent", intent_body(self.gov.config_version, s.request, now))
        self.audit.flush()  # intent durable before anything can execute it
        if runnable:
            try:
                await self.actions.put_many([execution_request(s.request) for s in runnable])
            except OutboxError as e:
                done = await self._not_queued(done, e, now, pages)
            else:
                # Automation's watches are opened by the processor that owns the series;
                # an agent's or a person's naming a series are left for it in the store.
                for s in runnable:
                    if s.request.actor.kind is not ActorKind.AUTOMATION:
                        await self._watch(s.request, now)
        if pages:
            await self.pages.put_many(pages)
        # A replay is not a change of the request's state: recording "duplicate" would hide
        # what the original became (queued, recovered, ...) from GET /v1/actions/{id}; a
        # refusal only sets the status of a request never seen before (a refused resend of
        # a queued request stays "queued", the refusal goes into its history).
        await self.store.record_many([(s.request, s.status.value, s.reason, now) for s in done
                                      if s.status not in (SubmitStatus.DUPLICATE,
                                                          SubmitStatus.REFUSED)])
        await self.store.record_many([(s.request, s.status.value, s.reason, now) for s in done
                                      if s.status is SubmitStatus.REFUSED], keep_status=True)
        for s in done:
            self._on_submission(s)
        return done

    async def _replay(self, sub: Submission) -> Submission:
        """A DUPLICATE from the limits script: the same change again (nothing runs), a
        different change reusing the key (refused: nothing runs, the caller is told), or a
        claim whose request was never recorded — claimed, then a crash or a lost reply
        before it was queued: nothing will run it, so a person must be told."""
        req = sub.request
        try:
            first = await self.store.request(req.request_id)
        except RequestStoreError as e:
            return Submission(req, SubmitStatus.REFUSED, (*sub.checks[:-1], Check.refuse(
                Stage.LIMITS, "unavailable", f"replay of {req.idempotency_key}: {e}")))
        if first is None:
            return Submission(req, SubmitStatus.REFUSED, (*sub.checks[:-1], Check.refuse(
                Stage.LIMITS, "claimed_not_queued",
                f"{req.idempotency_key} was claimed before but never queued (a crash or a "
                "lost reply); nothing will run it unless a person does")))
        if not first.same_change(req):
            return Submission(req, SubmitStatus.REFUSED, (*sub.checks[:-1], Check.refuse(
                Stage.LIMITS, "idempotency_conflict",
                f"{req.idempotency_key} was used for {first.action} on {first.target} "
                f"({first.service}, {first.environment}); a different change needs its own key"
                )))
        return sub

    async def _not_queued(self, subs: list[Submission], error: OutboxError, now: float,
                          pages: list[Page]) -> list[Submission]:
        """Limits were claimed but the queue refused: nothing will run; say so everywhere."""
        check = Check.refuse(Stage.EXECUTE, "queue_unavailable", str(error))
        out = []
        for s in subs:
            if s.status is not SubmitStatus.QUEUED:
                out.append(s)
                continue
            # Undo the claim (key, budget, slot): a retry of the same request may run.
            await self.limits.unclaim(s.request)
            self.audit.append("outcome", {
                "request_id": s.request.request_id, "action": s.request.action,
                "actor": str(s.request.actor), "result": "not_executed",
                "detail": str(check), "at": now, "latency_s": 0.0, "rollback_of": None,
                "config_version": self.gov.config_version, "where": where(s.request)})
            if s.request.actor.kind is not ActorKind.AUTOMATION:
                pages.append(request_page(s.request, str(check), now))
            out.append(Submission(s.request, SubmitStatus.REFUSED, (*s.checks, check)))
        self.audit.flush()
        return out

    def _limit_request(self, req: Request) -> LimitRequest:
        return self.gov.limit_request(req)

    async def _ask_approval(self, req: Request, checks: tuple[Check, ...],
                            verdict: PolicyVerdict) -> tuple[Submission, Page | None]:
        reason = next((c.detail for c in checks if c.code == "approval_required"), "")
        expiry_s = self.gov.policy.approval.expiry_s
        try:
            approval, links, created = await self.approvals.request(
                req, reason=reason, expiry_s=expiry_s)
        except ApprovalStoreUnavailable as e:
            # Fail closed: nothing waits for an approval nobody can record; a person is told.
            down = Check.refuse(Stage.APPROVAL, "unavailable", str(e))
            page = (None if req.actor.kind is ActorKind.AUTOMATION
                    else request_page(req, str(down), self.clock()))
            return Submission(req, SubmitStatus.REFUSED, (*checks, down)), page
        if not created and not approval.request.same_change(req):
            clash = Check.refuse(
                Stage.APPROVAL, "idempotency_conflict",
                f"{req.idempotency_key} was used for {approval.request.action} on "
                f"{approval.request.target}; a different change needs its own key")
            return Submission(req, SubmitStatus.REFUSED, (*checks, clash)), None
        if approval.state is not ApprovalState.PENDING and not created:
            # A replay of a request already approved, denied or expired: nothing new.
            dup = Check.refuse(Stage.APPROVAL, "duplicate",
                               f"approval {approval.approval_id} is {approval.state.value}")
            return Submission(req, SubmitStatus.DUPLICATE, (*checks, dup),
                              approval.approval_id, approval.expires_at), None
        wait = Check.allow(Stage.APPROVAL, "pending",
                           f"approval {approval.approval_id} requested; expires at "
                           f"{approval.expires_at:.0f}", approval_id=approval.approval_id)
        sub = Submission(req, SubmitStatus.PENDING_APPROVAL, (*checks, wait),
                         approval.approval_id, approval.expires_at,
                         links.approve_token, links.deny_token)
        if created:
            self._on_approval("requested")
            self.audit.append("approval", {
                "approval_id": approval.approval_id, "request_id": req.request_id,
                "event": "requested", "actor": str(req.actor), "at": approval.created_at,
                "requested_at": approval.created_at, "expires_at": approval.expires_at,
                "reason": reason, "config_version": self.gov.config_version,
                "where": where(req),
            })
        page = None
        if created and req.actor.kind is not ActorKind.AUTOMATION:
            page = event_page(req, f"approval required: {reason}", self.clock(), "approval",
                              links=self.approval_links(sub))
        return sub, page

    def approval_links(self, sub: Submission) -> dict[str, str]:
        """approve/deny URLs for a page; the token is the capability, the caller's login
        (bearer) the identity, so a forwarded link alone cannot approve."""
        if sub.approval_id is None or sub.approve_token is None or sub.deny_token is None:
            return {}
        base = f"{self.gov.approval_url.rstrip('/')}/approvals/{sub.approval_id}"
        return {"approve": f"{base}/approve?token={sub.approve_token}",
                "deny": f"{base}/deny?token={sub.deny_token}"}

    # --- approvals ---------------------------------------------------------------------

    async def decide(self, approval_id: str, token: str, approver: Actor,
                     decision: Literal["approve", "deny"], note: str = "") -> DecideResult:
        """Approve or deny; an approval runs the request through policy (again) and limits."""
        gov = self.gov

        def rights(a: Actor, r: Request) -> Check:
            return may_approve(a, r, gov.catalogue, gov.policy)

        result = await self.approvals.decide(approval_id, token, approver, decision, rights,
                                             note)
        now = self.clock()
        ap = result.approval
        body: dict[str, Any] = {
            "approval_id": approval_id, "actor": str(approver), "at": now,
            "config_version": gov.config_version, "note": note,
        }
        if ap is not None:
            body.update(request_id=ap.request.request_id, requested_at=ap.created_at,
                        where=where(ap.request))
        if not result.check.ok:
            body.update(event="refused", code=result.check.code, detail=result.check.detail,
                        decision=decision)
            self.audit.append("approval", body)
            self.audit.flush()
            self._on_approval("refused")
            return result
        assert ap is not None
        body["event"] = "approved" if decision == "approve" else "denied"
        self.audit.append("approval", body)
        self._on_approval(body["event"])
        if decision == "approve":
            await self._run_approved(ap, approver, now)
        else:
            await self.store.record(ap.request, "denied", f"denied by {approver}", now)
        self.audit.flush()
        return result

    async def _run_approved(self, ap: PendingApproval, approver: Actor, now: float) -> None:
        req = ap.request
        verdict = evaluate(req, self.gov.catalogue, self.gov.policy, now)
        approved = Check.allow(Stage.APPROVAL, "approved", f"approved by {approver}",
                               approval_id=ap.approval_id, approver=str(approver))
        if not verdict.allowed:
            # The refusal stays last: it is the submission's reason, which the page states.
            sub = Submission(req, SubmitStatus.REFUSED, (approved, *verdict.checks))
        else:
            (outcome,) = await self.limits.claim_many([self._limit_request(req)])
            sub = _claimed(req, (*verdict.checks, approved), outcome)
        self.audit.append("request", request_body(self.gov.config_version, sub, now))
        if sub.status is SubmitStatus.QUEUED:
            self.audit.append("intent", intent_body(self.gov.config_version, req, now))
            self.audit.flush()
            try:
                await self.actions.put_many([execution_request(req)])
            except OutboxError as e:
                # As in submit_many: claimed but never queued, so release, audit, page.
                (sub,) = await self._not_queued([sub], e, now, [])
            else:
                await self._watch(req, now)
        if sub.status is not SubmitStatus.QUEUED:
            self.audit.flush()
            await self.pages.put_many([event_page(
                req, f"approved by {approver} but not run: {sub.reason}", now, "not-run")])
        await self.store.record(req, sub.status.value, sub.reason, now)
        self._on_submission(sub)

    async def _watch(self, req: Request, now: float) -> None:
        if self.verify_store is None:
            return
        # The series' clock: the finding's point (or the request) plus the time since.
        ev = req.event_ts if req.event_ts is not None else req.requested_at
        watch = watch_for(req, self.gov.catalogue, started_at=ev + max(0.0, now - req.requested_at))
        if watch is None:
            return
        try:
            await self.verify_store.add(watch)
        except VerifyStoreError as e:
            log.warning("verification of approved %s not registered: %s", req.request_id, e)

    async def sweep_expired(self) -> list[PendingApproval]:
        """Approvals nobody decided in time: audited, paged, never executed.

        Raises :class:`ApprovalStoreUnavailable` when Redis is down (the caller retries)."""
        expired = await self.approvals.take_expired()
        if not expired:
            return []
        now = self.clock()
        pages = []
        for ap in expired:
            page = event_page(
                ap.request, f"approval expired unanswered; {ap.request.action} not run", now,
                "expired")
            pages.append(page)
            self.audit.append("approval", {
                "approval_id": ap.approval_id, "request_id": ap.request.request_id,
                "event": "expired", "actor": None, "at": now, "requested_at": ap.created_at,
                "config_version": self.gov.config_version, "where": where(ap.request),
            })
            self.audit.append("page", {
                "request_id": ap.request.request_id, "reason": "approval expired",
                "dedup_key": page.dedup_key, "at": now, "where": where(ap.request),
            })
        self.audit.flush()
        await self.pages.put_many(pages)
        for _ in expired:
            self._on_approval("expired")
        await self.store.record_many([(ap.request, "expired", "approval expired unanswered", now)
                                      for ap in expired])
        return expired

    # --- reads for the API -------------------------------------------------------------

    async def status(self, request_id: str) -> dict[str, Any] | None:
        return await self.store.get(request_id)

    async def pending_approvals(self) -> list[PendingApproval]:
        return await self.approvals.pending()

    async def approval(self, approval_id: str) -> PendingApproval | None:
        return await self.approvals.get(approval_id)

    def audit_api(self, actor: Actor | None, method: str, path: str, status: int, code: str,
                  detail: str) -> None:
        """Every API call, accepted or refused, is an audit record (never the token)."""
        self.audit.append("api", {
            "actor": None if actor is None else str(actor), "method": method, "path": path,
            "status": status, "code": code, "detail": detail, "at": self.clock(),
            "config_version": self.gov.config_version,
        })
        self.audit.flush()

def _claimed(req: Request, checks: tuple[Check, ...], outcome: LimitOutcome) -> Submission:
    status = {
        LimitStatus.CLAIMED: SubmitStatus.QUEUED,
        LimitStatus.DUPLICATE: SubmitStatus.DUPLICATE,
        LimitStatus.REFUSED: SubmitStatus.REFUSED,
        LimitStatus.UNAVAILABLE: SubmitStatus.REFUSED,
    }[outcome.status]
    return Submission(req, status, (*checks, outcome.check))
