"""After the queue: audit each outcome, free the in-flight slot, verify, roll back, page.

::

    executed ─ok──▶ outcome "success"; the series is watched (opened at queue time)
             │        ├─ recovered in the window ─▶ verification "recovered"
             │        └─ not ─▶ verification "no_recovery" ─▶ rollback (if any)
             │                                            ─▶ page "automation tried X; no recovery"
             └─failed─▶ outcome "failed" ─▶ watch closed ─▶ page "remediation failed"

The verifier itself lives with the processor (it sees the series' points); this module
only registers watches in the shared store and acts on their results. A rollback is
automation undoing its own action: it runs under the original request's authorization
(audited with ``rollback_of``), not through a second approval or budget, because refusing
to undo a change that did not help would leave production worse than either path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from escalation.catalogue import ActionSpec
from escalation.control import ActionSink, AuditSink, Governance, PageSink
from escalation.decision import Reason
from escalation.errors import OutboxError, RequestStoreError, VerifyStoreError
from escalation.executors.base import ActionRequest, ActionResult
from escalation.limits import RedisLimits
from escalation.page import Page, failure_page
from escalation.records import event_page, execution_request, where
from escalation.request import Actor, ActorKind, Request
from escalation.request_store import RequestStore
from escalation.verdict import Check, Stage
from escalation.verify import Watch, watch_for
from escalation.verify_store import VerifyStore

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def rollback_request(original: Request, spec: ActionSpec, watch: Watch, check: Check,
                     now: float) -> Request | None:
    """The request undoing ``original``, or None when its action declares no rollback.

    >>> from escalation.catalogue import ActionSpec, VerifySpec
    >>> from escalation.verdict import Stage
    >>> orig = Request(Actor(ActorKind.AUTOMATION, "restart-checkout"), "restart_pods",
    ...                "checkout", "production", "deployment/checkout", "r:f1", 10.0)
    >>> w = Watch("req_x", "r:f1", "k", "restart_pods", "checkout", "deployment/checkout",
    ...           "undo_restart", VerifySpec(60.0), 200.0, 11.0)
    >>> rb = rollback_request(orig, ActionSpec("restart_pods", rollback="undo_restart"), w,
    ...                       Check.refuse(Stage.VERIFY, "no_recovery", "no"), now=80.0)
    >>> rb.action, rb.idempotency_key, str(rb.actor)
    ('undo_restart', 'rollback:r:f1', 'automation:rollback')
    """
    if spec.rollback is None:
        return None
    return Request(
        actor=Actor(ActorKind.AUTOMATION, "rollback"), action=spec.rollback,
        service=original.service, environment=original.environment,
        target=original.target, idempotency_key=f"rollback:{original.idempotency_key}",
        requested_at=now, severity=original.severity, region=original.region,
        params=dict(original.params),
        reason=f"rollback of {original.request_id} ({original.action}): {check.detail}",
        event_ts=original.event_ts, finding_id=original.finding_id,
        evidence=dict(original.evidence),
    )


def _request_of(ex: ActionRequest) -> Request | None:
    raw = ex.context.get("request")
    return Request.from_dict(raw) if isinstance(raw, dict) else None


class FollowUp:
    def __init__(self, gov: Governance, *, limits: RedisLimits, verify_store: VerifyStore,
                 store: RequestStore, audit: AuditSink, actions: ActionSink, pages: PageSink,
                 clock: Clock) -> None:
        self.gov = gov
        self.store = store
        self.limits = limits
        self.verify_store = verify_store
        self.audit = audit
        self.actions = actions
        self.pages = pages
        self.clock = clock

    async def on_outcome(self, ex: ActionRequest, result: ActionResult) -> None:
        """The action runner's report; raising leaves the entry pending for a retry."""
        now = self.clock()
        req = _request_of(ex)
        rollback_of = ex.context.get("rollback_of")
        if req is not None:
            await self.limits.release(req)
        body: dict[str, Any] = {
            "request_id": None if req is None else req.request_id,
            "action": ex.action, "target": ex.target, "actor": ex.rule if req is None
            else str(req.actor), "result": "success" if result.ok else "failed",
            "detail": result.detail, "status": result.status, "at": now,
            "latency_s": result.latency_s, "rollback_of": rollback_of,
            "idempotency_key": ex.idempotency_key, "config_version": self.gov.config_version,
            "where": where(req) if req is not None else {"service": ex.service,
                                                          "target": ex.target},
        }
        watch = None if req is None or rollback_of else watch_for(req, self.gov.catalogue)
        judged = False
        if watch is not None and not result.ok:
            # Nothing ran, so there is nothing to verify: close the watch the processor
            # opened when it queued the action (first verdict wins in the store).
            await self.verify_store.finish(watch, Check.refuse(
                Stage.VERIFY, "not_executed", f"{ex.action} failed: {result.detail}"))
            watch = None
        if watch is not None:
            body["verifying"] = {"series": watch.series_key, "until": watch.deadline}
            judged = await self._judged(watch)
        self.audit.append("outcome", body)
        if not result.ok:
            page = self._failure_page(ex, req, result, now)
            self.audit.append("page", {"request_id": body["request_id"],
                                       "dedup_key": page.dedup_key, "at": now,
                                       "reason": "remediation failed", "where": body["where"]})
            self.audit.flush()
            await self.pages.put_many([page])
        else:
            self.audit.flush()
        if req is not None and not judged:
            status = ("verifying" if watch is not None else "succeeded") if result.ok else "failed"
            await self.store.record(req, status, result.detail, now)

    async def _judged(self, watch: Watch) -> bool:
        """Whether ``watch`` already has a verdict: the series can recover (or the window
        end) before a slow executor reports, and "verifying" must not then overwrite
        "recovered" as the request's latest status."""
        try:
            return await self.verify_store.result(watch.request_id) is not None
        except VerifyStoreError as e:
            log.warning("outcome of %s: %s; recording it as verifying", watch.request_id, e)
            return False

    @staticmethod
    def _failure_page(ex: ActionRequest, req: Request | None, result: ActionResult,
                      now: float) -> Page:
        """Built from the governed request when there is one: it carries the evidence and
        the request id, where the bare action request has neither (its page would have no
        context and share the dedup key ``hotpath-`` with every request without a finding)."""
        if req is None:
            return failure_page(ex, result, now)
        return event_page(req, f"{Reason.ACTION_FAILED.value}: {ex.action} {ex.target} "
                               f"({result.detail})", now, "failed")

    async def original(self, watch: Watch) -> Request:
        """The request a watch verifies (from the store; rebuilt from the watch if gone)."""
        try:
            found = await self.store.request(watch.request_id)
        except RequestStoreError as e:
            log.warning("verification of %s: %s; using the watch's copy", watch.request_id, e)
            found = None
        if found is not None:
            return found
        service = self.gov.catalogue.service(watch.service)
        return Request(Actor(ActorKind.AUTOMATION, "unknown"), watch.action, watch.service,
                       service.environment, watch.target, watch.idempotency_key,
                       watch.started_at, region=service.region,
                       evidence={"series": watch.series_key, "baseline": watch.baseline})

    async def on_verified(self, watch: Watch, check: Check) -> None:
        """A watch finished: audit it; no recovery → roll back (if defined) and page.

        Raises :class:`~escalation.verify_store.VerifyStoreError` when the store cannot
        record the verdict: the watch stays pending there and is judged again."""
        if not await self.verify_store.finish(watch, check):
            return  # another owner (a rebalance) already judged this watch and acted on it
        original = await self.original(watch)
        now = self.clock()
        self.audit.append("verification", {
            "request_id": watch.request_id, "action": watch.action,
            "result": check.code, "detail": check.detail, "at": now,
            "recovered_at": check.state.get("recovered_at"), "event_ts": original.event_ts,
            "config_version": self.gov.config_version, "where": where(original),
        })
        if check.ok:
            self.audit.flush()
            await self.store.record(original, "recovered", check.detail, now)
            return
        spec = self.gov.catalogue.action(watch.action)
        rb = None if spec is None else rollback_request(original, spec, watch, check, now)
        reason = f"automation tried {watch.action} on {watch.target}; no recovery"
        rb_spec = None if rb is None else self.gov.catalogue.action(rb.action)
        problems = (("not in the catalogue",) if rb is not None and rb_spec is None else
                    () if rb is None or rb_spec is None else rb_spec.param_errors(rb.params))
        if rb is not None and problems:
            # The rollback inherits the action's params; if its own schema refuses them it
            # does not run (a malformed undo could do more harm): a person decides.
            reason += f"; rollback {rb.action} not run: {'; '.join(problems)}"
            rb = None
        if rb is not None:
            self.audit.append("intent", {
                "request_id": rb.request_id, "action": rb.action, "target": rb.target,
                "actor": str(rb.actor), "at": now, "params": dict(rb.params),
                "idempotency_key": rb.idempotency_key, "rollback_of": watch.request_id,
                "config_version": self.gov.config_version, "where": where(rb),
            })
            self.audit.flush()  # intent durable before the rollback can execute
            try:
                await self.actions.put_many([execution_request(rb, rollback_of=watch.request_id)])
                reason += f"; rolling back with {rb.action}"
            except OutboxError as e:
                # The verdict is already final in the store, so this is the only chance to
                # tell anyone: the rollback did not run, a person must undo it.
                reason += f"; rollback with {rb.action} could not be queued ({e})"
                self.audit.append("outcome", {
                    "request_id": rb.request_id, "action": rb.action, "target": rb.target,
                    "actor": str(rb.actor), "result": "not_executed", "detail": str(e),
                    "status": None, "at": now, "latency_s": 0.0,
                    "rollback_of": watch.request_id, "idempotency_key": rb.idempotency_key,
                    "config_version": self.gov.config_version, "where": where(rb)})
                rb = None
        page = event_page(original, reason, now, "no-recovery")
        self.audit.append("page", {"request_id": watch.request_id, "dedup_key": page.dedup_key,
                                   "reason": reason, "at": now, "where": where(original)})
        self.audit.flush()
        await self.pages.put_many([page])
        await self.store.record(original, "rolled_back" if rb is not None else "no_recovery",
                                check.detail, now)
