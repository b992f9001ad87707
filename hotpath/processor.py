"""One getmany batch, left to right: decode → detect → findings → decide → record.

The processor owns no I/O client of its own: it is handed the sinks (DLQ, budget,
audit, outbox, action queue) and returns when the batch's decisions are durable, so the
caller may then advance the offsets it covers. Nothing here waits on a pager or a
remediation target: those run as separate tasks reading the outbox and action queue.

Batching at every boundary: one decode pass per partition, one vectorised ensemble
update per partition, one control-plane call per batch (policy is pure; the limits are one
Redis round trip for all the batch's requests), one audit fsync, one outbox write and one
action-queue write per batch.

Automation's actions go through the same control plane as an agent's or a person's
(:mod:`escalation.control`): the processor turns a finding a rule covers into a request and
pages whatever the control plane refuses or sends for approval, with the finding's context.
It also feeds the verifiers: after an action, the finding's series is watched for recovery
(:mod:`escalation.verify`), point by point as batches arrive and at each clock tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from escalation.control import ControlPlane, Item
from escalation.decision import (
    Decision,
    DecisionContext,
    DecisionKind,
    decide,
    request_for,
    settle,
)
from escalation.errors import VerifyStoreError
from escalation.finding import Finding, finding_id
from escalation.followup import FollowUp
from escalation.kill_switch import RUNNING, KillSwitch, PauseState
from escalation.page import Page, page_from_decision
from escalation.submission import SubmitStatus
from escalation.verdict import Check
from escalation.verify import Verifier, Watch, watch_for
from hotpath.metrics import Metrics
from hotpath.paging import Paging
from hotpath.partition import PartitionOutput, PartitionState, TickAlert
from hotpath.wire import Decoded, RawMessage, Reject, reason_kind

log = logging.getLogger(__name__)

Clock = Callable[[], float]
TP = tuple[str, int]


class DlqSink(Protocol):
    async def send_many(self, rejects: Sequence[Reject]) -> None: ...


class AuditSink(Protocol):
    def append(self, kind: str, body: dict[str, Any]) -> Any: ...
    def flush(self) -> None: ...


class PageSink(Protocol):
    async def put_many(self, pages: Sequence[Page]) -> None: ...


@dataclass
class BatchResult:
    messages: int = 0
    points: int = 0
    rejects: int = 0
    findings: int = 0
    decisions: list[Decision] = field(default_factory=list)
    next_offsets: dict[TP, int] = field(default_factory=dict)
    # Event time (``ts``) of every accepted point, one array per partition: what an
    # observer needs to measure event→decision latency without decoding again.
    event_ts: list[npt.NDArray[np.float64]] = field(default_factory=list)


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
    if d.submission is not None:
        body["request_id"] = d.submission.request.request_id
        body["result"] = d.submission.status.value
        body["detail"] = d.detail
    return body


class Processor:
    def __init__(self, *, ctx: DecisionContext, environment: str, config_version: str,
                 dlq: DlqSink, control: ControlPlane, audit: AuditSink, pages: PageSink,
                 metrics: Metrics, clock: Clock, kill_switch: KillSwitch | None = None,
                 followup: FollowUp | None = None, paging: Paging | None = None) -> None:
        self.ctx = ctx
        self.environment = environment
        self.config_version = config_version
        self.dlq, self.control, self.audit = dlq, control, audit
        self.pages = pages
        self.followup = followup
        self.paging = paging
        # One verifier per partition: its deadlines run on that partition's event time.
        self.verifiers: dict[TP, Verifier] = {}
        self.metrics = metrics
        self.clock = clock
        self.kill_switch = kill_switch
        self.pause = RUNNING  # the last kill-switch state this processor saw

    async def process(self, batch: dict[TP, Sequence[RawMessage]],
                      states: dict[TP, PartitionState]) -> BatchResult:
        started = time.perf_counter()
        now = self.clock()
        # The kill switch is read while the batch is decoded and detected (it is only
        # needed to decide): its Redis round trip no longer adds to every batch's latency.
        pause_read = self.kill_switch.read_soon() if self.kill_switch is not None else None
        if pause_read is not None:
            await asyncio.sleep(0)  # let it send the GET; it waits for the reply meanwhile
        try:
            res, rejects, findings, owner, decoded = self._ingest(batch, states, now)
        except BaseException:
            if pause_read is not None:
                pause_read.cancel()  # nobody will await it
            raise
        if pause_read is not None:
            self._observe_pause(await pause_read.result(), now)

        decisions = await self._decide(findings)
        res.decisions = decisions
        await self._record(decisions, now)
        await self._open_watches(decisions, owner)
        for tp, state, dec in decoded:
            # After the decisions: a watch opened in this batch sees the batch's later points.
            verifier = self.verifiers.get(tp)
            if verifier is not None and len(verifier) and dec.points:
                await self._verified(
                    verifier.feed_batch(dec.rows, dec.ts, dec.values, state.index.row))
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

    def _ingest(self, batch: dict[TP, Sequence[RawMessage]], states: dict[TP, PartitionState],
                now: float) -> tuple[BatchResult, list[Reject], list[Finding], dict[str, TP],
                                     list[tuple[TP, PartitionState, Decoded]]]:
        """Decode and detect every partition's messages: the batch's CPU work, no I/O."""
        res = BatchResult()
        rejects: list[Reject] = []
        findings: list[Finding] = []
        owner: dict[str, TP] = {}  # series key → partition, for the watches opened below
        decoded: list[tuple[TP, PartitionState, Decoded]] = []
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
                found = _findings(state, dec, out, self.environment)
                findings.extend(found)
                owner.update((f.series_key, tp) for f in found)
            decoded.append((tp, state, dec))
            res.event_ts.append(dec.ts)
        res.rejects = len(rejects)
        res.findings = len(findings)
        return res, rejects, findings, owner, decoded

    async def _refresh_pause(self, now: float) -> None:
        """Read the kill switch (one GET) and audit a change this processor sees."""
        if self.kill_switch is not None:
            self._observe_pause(await self.kill_switch.read(), now)

    def _observe_pause(self, state: PauseState | None, now: float) -> None:
        if state is None or state.version == self.pause.version:
            return  # unreadable: keep the last state (automation fails closed on budgets)
        self.pause = state
        self.audit.append("automation", {
            **state.to_dict(), "observed_at": now, "config_version": self.config_version,
            "where": {"scope": "all automation"},
        })
        self.audit.flush()

    async def tick(self, states: dict[TP, PartitionState]) -> list[Decision]:
        """Clock tick: findings no point triggers (a silent series), decided like any other;
        verification watches picked up from the shared store and expired on event time."""
        now = self.clock()
        await self._refresh_pause(now)
        await self._verify_tick(states, now)
        if self.paging is not None:
            # Resolves of incidents clear for long enough, and due escalation steps.
            follow = await self.paging.tick(now)
            if follow:
                await self.pages.put_many(follow)
        findings = [f for state in states.values()
                    for f in _tick_findings(state, state.tick(now), state.event_time(now) or now,
                                            self.environment)]
        if not findings:
            return []
        self.metrics.findings.inc(len(findings))
        decisions = await self._decide(findings)
        await self._record(decisions, now)
        return decisions

    async def _verify_tick(self, states: dict[TP, PartitionState], now: float) -> None:
        if self.followup is None:
            return
        for tp in [tp for tp in self.verifiers if tp not in states]:
            del self.verifiers[tp]  # revoked: the new owner loads the watches from the store
        store = self.followup.verify_store
        try:
            pending = await store.pending()
            for tp, state in states.items():
                verifier = self.verifiers.setdefault(tp, Verifier())
                for w, progress in pending:
                    if state.index.row(w.series_key) is not None:
                        verifier.watch(w, progress)
                event_now = state.event_time(now)
                if event_now is not None:
                    await self._verified(verifier.expire(event_now))
                await store.save_progress(verifier.drain_changed())
        except VerifyStoreError as e:
            # Watches stay in the store; the next tick picks them up again.
            log.warning("verification: %s", e)

    async def _open_watches(self, decisions: list[Decision], owner: dict[str, TP]) -> None:
        """Watch the series of every action queued in this batch, from the finding's point."""
        if self.followup is None:
            return
        catalogue = self.control.gov.catalogue
        for d in decisions:
            sub = d.submission
            if d.kind is not DecisionKind.ACT or sub is None:
                continue
            watch = watch_for(sub.request, catalogue)
            tp = owner.get(d.finding.series_key)
            if watch is None or tp is None:
                continue
            self.verifiers.setdefault(tp, Verifier()).watch(watch)
            try:
                await self.followup.verify_store.add(watch)
            except VerifyStoreError as e:
                # This processor still verifies it; only a new owner after a rebalance
                # would not know of it.
                log.warning("verification of %s not persisted: %s", watch.request_id, e)

    async def _verified(self, done: list[tuple[Watch, Check]]) -> None:
        if self.followup is None:
            return
        for watch, check in done:
            self.metrics.verifications.labels(watch.action, check.code).inc()
            try:
                await self.followup.on_verified(watch, check)
            except VerifyStoreError as e:
                # The watch is still pending in the store: the next tick loads it again.
                log.warning("verification of %s: %s", watch.request_id, e)

    async def _decide(self, findings: list[Finding]) -> list[Decision]:
        first = [decide(f, self.ctx) for f in findings]
        wants = [d for d in first if d.kind is DecisionKind.ACT]
        if not wants:
            return first
        now = self.clock()
        detail = (f"automation paused by {self.pause.actor}: {self.pause.reason}"
                  if self.pause.paused else "")
        subs = await self.control.submit_many([
            Item(request_for(d, now), self.pause.paused, detail) for d in wants])
        settled = iter(settle(d, s) for d, s in zip(wants, subs, strict=True))
        return [next(settled) if d.kind is DecisionKind.ACT else d for d in first]

    async def _record(self, decisions: list[Decision], now: float) -> None:
        """Make the batch's decisions durable: audit fsynced, pages in the outbox (the
        control plane has already audited and queued what it accepted)."""
        if not decisions:
            return
        pages: list[Page] = []
        batch = [d.finding for d in decisions]  # correlation candidates for the context
        asked: dict[str, tuple[Decision, dict[str, str]]] = {}
        for d in decisions:
            for r in d.reasons:
                self.metrics.decisions.labels(d.kind.value, r.value).inc()
            if d.kind is DecisionKind.RECORD and d.submission is None:
                continue  # below threshold: counted, not audited (it changed nothing)
            self.audit.append("decision", _audit_body(d, self.config_version, now))
            if d.kind is DecisionKind.PAGE:
                sub = d.submission
                links = ({} if sub is None or sub.status is not SubmitStatus.PENDING_APPROVAL
                         else self.control.approval_links(sub))
                page = replace(page_from_decision(d, now), links=links)
                asked[page.dedup_key] = (d, links)
                pages.append(page)
        self.audit.flush()
        if self.paging is not None:
            paging = self.paging

            def dress(observed: Page, out: Page) -> Page:
                # Context only for the pages that go out (a trigger, an approval ask).
                found = asked.get(observed.dedup_key)
                if found is None:
                    return out
                return paging.with_context(found[0], out, found[1], batch, now)

            pages = await paging.prepare(pages, now, dress)
        if pages:
            await self.pages.put_many(pages)
