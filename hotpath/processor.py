"""One getmany batch, left to right: decode → detect → findings → decide → record.

The processor owns no I/O client of its own: it is handed the sinks (DLQ, budget,
audit, outbox, action queue) and returns when the batch's decisions are durable, so the
caller may then advance the offsets it covers. Nothing here waits on a pager or a
remediation target: those run as separate tasks reading the outbox and action queue.

Batching at every boundary: one decode pass per partition, one vectorised ensemble
update per partition, one budget round trip per batch (``claim_many``), one audit fsync,
one outbox write and one action-queue write per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from escalation.budget import BudgetRequest
from escalation.decision import (
    BudgetOutcome,
    BudgetStatus,
    Decision,
    DecisionContext,
    DecisionKind,
    Reason,
    decide,
    settle,
)
from escalation.errors import OutboxError
from escalation.executors.base import ActionRequest
from escalation.finding import Finding, finding_id
from escalation.kill_switch import RUNNING, KillSwitch
from escalation.page import Page, page_from_decision
from hotpath.metrics import Metrics
from hotpath.partition import PartitionOutput, PartitionState, TickAlert
from hotpath.wire import Decoded, RawMessage, Reject, reason_kind

Clock = Callable[[], float]
TP = tuple[str, int]


class DlqSink(Protocol):
    async def send_many(self, rejects: Sequence[Reject]) -> None: ...


class BudgetClaimer(Protocol):
    async def claim_many(self, requests: Sequence[BudgetRequest]) -> list[BudgetOutcome]: ...


class AuditSink(Protocol):
    def append(self, kind: str, body: dict[str, Any]) -> Any: ...
    def flush(self) -> None: ...


class PageSink(Protocol):
    async def put_many(self, pages: Sequence[Page]) -> None: ...


class ActionSink(Protocol):
    async def put_many(self, requests: Sequence[ActionRequest]) -> None: ...


@dataclass
class BatchResult:
    messages: int = 0
    points: int = 0
    rejects: int = 0
    findings: int = 0
    decisions: list[Decision] = field(default_factory=list)
    next_offsets: dict[TP, int] = field(default_factory=dict)


def _findings(state: PartitionState, dec: Decoded, out: PartitionOutput,
              environment: str) -> list[Finding]:
    """Value types for the alerting points only (rare), so this loop is not per point."""
    found: list[Finding] = []
    for i in np.flatnonzero(out.alert):
        row = int(dec.rows[i])
        service, metric, labels = state.index.meta(row)
        key = state.index.key(row)
        ts = float(dec.ts[i])
        agreed = out.agreed[i] or ()
        found.append(Finding(
            finding_id=finding_id(key, ts), series_key=key, service=service, metric=metric,
            labels=dict(labels), ts=ts, value=float(dec.values[i]),
            baseline=float(out.baseline[i]), deviation=float(out.deviation[i]),
            confidence=float(out.confidence[i]), detectors=agreed,
            recent=tuple(state.recent.last(row)),
            environment=labels.get("environment", environment),
        ))
    return found


def _tick_findings(state: PartitionState, alerts: list[TickAlert], now: float,
                   environment: str) -> list[Finding]:
    found = []
    for a in alerts:
        service, metric, labels = state.index.meta(a.row)
        key = state.index.key(a.row)
        recent = tuple(state.recent.last(a.row))
        # No point arrived: the finding is about the silence that began at the last point
        # (now - silence), which a replay computes the same, so the id is stable.
        silent_since = round(now - a.deviation * a.baseline, 3)
        found.append(Finding(
            finding_id=finding_id(key, silent_since), series_key=key, service=service,
            metric=metric, labels=dict(labels), ts=silent_since,
            value=recent[-1] if recent else float("nan"), baseline=a.baseline,
            deviation=a.deviation, confidence=a.confidence, detectors=a.agreed,
            recent=recent, environment=labels.get("environment", environment),
        ))
    return found


def _audit_body(d: Decision, config_version: str, now: float) -> dict[str, Any]:
    f = d.finding
    body: dict[str, Any] = {
        "actor": "automation",
        "decision": d.kind.value,
        "reasons": [r.value for r in d.reasons],
        "decided_at": now,
        "config_version": config_version,
        "where": {"service": f.service, "environment": f.environment, "labels": f.labels},
        "evidence": {
            "finding_id": f.finding_id, "series": f.series_key, "ts": f.ts, "value": f.value,
            "baseline": f.baseline, "deviation": f.deviation, "confidence": f.confidence,
            "detectors": list(f.detectors),
        },
    }
    if d.rule is not None:
        body["rule"] = d.rule.name
        body["action"] = d.rule.action
        body["target"] = d.rule.target_for(f)
        body["idempotency_key"] = d.idempotency_key
    if d.budget is not None:
        body["budget"] = {"status": d.budget.status.value, "used": d.budget.used,
                          "limit": d.budget.limit, "window_s": d.budget.window_s}
    return body


def action_request(d: Decision) -> ActionRequest:
    assert d.rule is not None and d.idempotency_key is not None
    f = d.finding
    return ActionRequest(
        action=d.rule.action, target=d.rule.target_for(f), service=f.service,
        finding_id=f.finding_id, idempotency_key=d.idempotency_key, rule=d.rule.name,
        # The evidence rides with the request, so a failure can be paged with context even
        # after a restart (escalation.page.failure_page reads it).
        params={"evidence": {
            "metric": f.metric, "labels": f.labels, "value": f.value, "baseline": f.baseline,
            "deviation": f.deviation, "confidence": f.confidence,
            "detectors": list(f.detectors), "recent": list(f.recent), "ts": f.ts,
        }},
    )


class Processor:
    def __init__(self, *, ctx: DecisionContext, environment: str, config_version: str,
                 dlq: DlqSink, budget: BudgetClaimer, audit: AuditSink, pages: PageSink,
                 actions: ActionSink, metrics: Metrics, clock: Clock,
                 kill_switch: KillSwitch | None = None) -> None:
        self.ctx = ctx
        self.environment = environment
        self.config_version = config_version
        self.dlq, self.budget, self.audit = dlq, budget, audit
        self.pages, self.actions = pages, actions
        self.metrics = metrics
        self.clock = clock
        self.kill_switch = kill_switch
        self.pause = RUNNING  # the last kill-switch state this processor saw

    async def process(self, batch: dict[TP, Sequence[RawMessage]],
                      states: dict[TP, PartitionState]) -> BatchResult:
        started = time.perf_counter()
        now = self.clock()
        await self._refresh_pause(now)
        res = BatchResult()
        rejects: list[Reject] = []
        findings: list[Finding] = []
        for tp, msgs in batch.items():
            if not msgs:
                continue
            state = states[tp]
            dec, out = state.ingest(msgs, now)
            rejects.extend(dec.rejects)
            res.messages += len(msgs)
            res.points += dec.points
            res.next_offsets[tp] = msgs[-1].offset + 1
            if out is not None:
                self.metrics.lag_seconds.observe_many(now - dec.ts)
                findings.extend(_findings(state, dec, out, self.environment))
        res.rejects = len(rejects)
        res.findings = len(findings)

        decisions = await self._decide(findings)
        res.decisions = decisions
        await self._record(decisions, now)
        if rejects:
            # The DLQ send is awaited before the offsets move: a bad message is never lost.
            await self.dlq.send_many(rejects)
            for r in rejects:
                self.metrics.dlq.labels(reason_kind(r.reason)).inc()
        self.metrics.messages.inc(res.messages)
        self.metrics.points.inc(res.points)
        self.metrics.findings.inc(res.findings)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return res

    async def _refresh_pause(self, now: float) -> None:
        """Read the kill switch (one GET per batch) and audit a change this processor sees."""
        if self.kill_switch is None:
            return
        state = await self.kill_switch.read()
        if state is None or state.version == self.pause.version:
            return  # unreadable: keep the last state (automation fails closed on budgets)
        self.pause = state
        self.audit.append("automation", {
            **state.to_dict(), "observed_at": now, "config_version": self.config_version,
            "where": {"scope": "all automation"},
        })
        self.audit.flush()

    async def tick(self, states: dict[TP, PartitionState]) -> list[Decision]:
        """Clock tick: findings no point triggers (a silent series), decided like any other."""
        now = self.clock()
        await self._refresh_pause(now)
        findings = [f for state in states.values()
                    for f in _tick_findings(state, state.tick(now), state.event_time(now) or now,
                                            self.environment)]
        if not findings:
            return []
        self.metrics.findings.inc(len(findings))
        decisions = await self._decide(findings)
        await self._record(decisions, now)
        return decisions

    async def _decide(self, findings: list[Finding]) -> list[Decision]:
        ctx = self.ctx if not self.pause.paused else replace(self.ctx, paused=True)
        first = [decide(f, ctx) for f in findings]
        wants = [d for d in first if d.kind is DecisionKind.ACT]
        if not wants:
            return first
        outcomes = await self.budget.claim_many([
            BudgetRequest(d.rule.action, d.finding.service, d.idempotency_key or "",
                          d.rule.budget_limit, d.rule.budget_window_s)
            for d in wants if d.rule is not None
        ])
        settled = iter(settle(d, o) for d, o in zip(wants, outcomes, strict=True))
        return [next(settled) if d.kind is DecisionKind.ACT else d for d in first]

    async def _record(self, decisions: list[Decision], now: float) -> None:
        """Make the batch's decisions durable: audit fsynced, pages and actions queued."""
        if not decisions:
            return
        pages: list[Page] = []
        acts: list[Decision] = []
        for d in decisions:
            for r in d.reasons:
                self.metrics.decisions.labels(d.kind.value, r.value).inc()
            if d.budget is not None and d.budget.status in (
                BudgetStatus.EXHAUSTED, BudgetStatus.UNAVAILABLE
            ):
                self.metrics.budget_denials.labels(d.budget.status.value).inc()
            if d.kind is DecisionKind.RECORD and d.budget is None:
                continue  # below threshold: counted, not audited (it changed nothing)
            self.audit.append("decision", _audit_body(d, self.config_version, now))
            if d.kind is DecisionKind.ACT:
                acts.append(d)
                self.audit.append("intent", {**_audit_body(d, self.config_version, now),
                                             "actor": "automation"})
            elif d.kind is DecisionKind.PAGE:
                pages.append(page_from_decision(d, now))
        # Intent is durable before anything can execute it.
        self.audit.flush()
        if acts:
            try:
                await self.actions.put_many([action_request(d) for d in acts])
            except OutboxError:
                # Budget was claimed but the queue refused: nothing will execute; a human must.
                for d in acts:
                    failed = replace(d, kind=DecisionKind.PAGE,
                                     reasons=(*d.reasons, Reason.QUEUE_UNAVAILABLE))
                    self.audit.append("outcome", {**_audit_body(failed, self.config_version,
                                                                now), "outcome": "not executed"})
                    pages.append(page_from_decision(failed, now))
                self.audit.flush()
        if pages:
            await self.pages.put_many(pages)
