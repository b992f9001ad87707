"""decide/request_for/settle as tables: each row a finding (or control-plane answer), the
decision and its reasons."""

from __future__ import annotations

from dataclasses import replace

import pytest

from escalation.decision import (
    DecisionContext,
    DecisionKind,
    Reason,
    RemediationRule,
    decide,
    request_for,
    settle,
)
from escalation.finding import Finding
from escalation.request import ActorKind, Severity
from escalation.submission import Submission, SubmitStatus
from escalation.verdict import Check, Stage

F = Finding("f1", "checkout|http_latency_p99_ms|region=eu", "checkout", "http_latency_p99_ms",
            {"region": "eu"}, 100.0, 1200.0, 200.0, 9.5, 0.97, ("ewma",), recent=(1.0, 2.0))
RULE = RemediationRule("restart-checkout", "restart_pods", service="checkout",
                       metric="http_latency_p99_ms", min_confidence=0.9,
                       target="deployment/{service}-{region}", params={"max_unavailable": 1})
CTX = DecisionContext(page_threshold=0.5, rules=(RULE,))

ACT, PAGE, RECORD = DecisionKind.ACT, DecisionKind.PAGE, DecisionKind.RECORD


@pytest.mark.parametrize(("finding", "ctx", "kind", "reasons"), [
    (F, CTX, ACT, [Reason.RULE_MATCHED]),
    (replace(F, confidence=0.4), CTX, RECORD, [Reason.BELOW_PAGE_THRESHOLD]),
    (replace(F, metric="error_ratio"), CTX, PAGE, [Reason.NO_RULE]),
    (replace(F, service="search"), CTX, PAGE, [Reason.NO_RULE]),
    (replace(F, confidence=0.8), CTX, PAGE, [Reason.LOW_CONFIDENCE]),
    # The page threshold comes first: a rule-less context still only records.
    (replace(F, confidence=0.1), replace(CTX, rules=()), RECORD,
     [Reason.BELOW_PAGE_THRESHOLD]),
], ids=["act", "below-threshold", "other-metric", "other-service", "low-confidence",
        "threshold-first"])
def test_decide(finding: Finding, ctx: DecisionContext, kind: DecisionKind,
                reasons: list[Reason]) -> None:
    d = decide(finding, ctx)
    assert (d.kind, list(d.reasons)) == (kind, reasons)


def test_request_for_carries_the_rule_and_the_evidence() -> None:
    req = request_for(decide(F, CTX), now=105.0)
    assert (req.actor.kind, req.actor.name, req.action, req.service, req.environment,
            req.target, req.region) == (ActorKind.AUTOMATION, "restart-checkout",
                                        "restart_pods", "checkout", "production",
                                        "deployment/checkout-eu", "eu")
    assert (req.idempotency_key, req.requested_at, req.event_ts, req.finding_id,
            req.severity, dict(req.params)) == ("restart-checkout:f1", 105.0, 100.0, "f1",
                                                Severity.CRITICAL, {"max_unavailable": 1})
    assert req.evidence == {
        "finding_id": "f1", "series": F.series_key, "metric": "http_latency_p99_ms",
        "labels": {"region": "eu"}, "ts": 100.0, "value": 1200.0, "baseline": 200.0,
        "deviation": 9.5, "confidence": 0.97, "detectors": ["ewma"], "recent": [1.0, 2.0]}


def _answer(status: SubmitStatus, *checks: Check) -> Submission:
    return Submission(request_for(decide(F, CTX), 105.0), status, checks)


ALLOWED = Check.allow(Stage.POLICY, "allowed", "allowed by rule 'a'")


@pytest.mark.parametrize(("status", "check", "kind", "last"), [
    (SubmitStatus.QUEUED, Check.allow(Stage.LIMITS, "claimed", "1/3"), ACT,
     Reason.LIMITS_CLAIMED),
    (SubmitStatus.DUPLICATE, Check.refuse(Stage.LIMITS, "duplicate", "seen"), RECORD,
     Reason.DUPLICATE),
    (SubmitStatus.DRY_RUN, Check.allow(Stage.POLICY, "dry_run", "global dry-run"), RECORD,
     Reason.DRY_RUN),
    (SubmitStatus.PENDING_APPROVAL, Check.allow(Stage.APPROVAL, "pending", "apr_1"), PAGE,
     Reason.APPROVAL_REQUIRED),
    (SubmitStatus.REFUSED, Check.refuse(Stage.POLICY, "paused", "by human:a"), PAGE,
     Reason.PAUSED),
    (SubmitStatus.REFUSED, Check.refuse(Stage.POLICY, "no_rule", "no rule lets"), PAGE,
     Reason.POLICY_DENIED),
    (SubmitStatus.REFUSED, Check.refuse(Stage.POLICY, "change_freeze", "until"), PAGE,
     Reason.CHANGE_FREEZE),
    (SubmitStatus.REFUSED, Check.refuse(Stage.LIMITS, "budget_global", "20/20"), PAGE,
     Reason.BUDGET_EXHAUSTED),
    (SubmitStatus.REFUSED, Check.refuse(Stage.LIMITS, "concurrency_service", "2/2"), PAGE,
     Reason.CONCURRENCY),
    (SubmitStatus.REFUSED, Check.refuse(Stage.LIMITS, "cooldown", "free at"), PAGE,
     Reason.COOLDOWN),
    (SubmitStatus.REFUSED, Check.refuse(Stage.LIMITS, "blast_services", "3/3"), PAGE,
     Reason.BLAST_RADIUS),
    (SubmitStatus.REFUSED, Check.refuse(Stage.LIMITS, "unavailable", "down"), PAGE,
     Reason.BUDGET_UNAVAILABLE),
    (SubmitStatus.REFUSED, Check.refuse(Stage.EXECUTE, "queue_unavailable", "down"), PAGE,
     Reason.QUEUE_UNAVAILABLE),
    (SubmitStatus.REFUSED, Check.refuse(Stage.APPROVAL, "unavailable", "down"), PAGE,
     Reason.APPROVAL_UNAVAILABLE),
    (SubmitStatus.REFUSED, Check.refuse(Stage.LIMITS, "claimed_not_queued", "crash"), PAGE,
     Reason.CLAIMED_NOT_QUEUED),
    (SubmitStatus.REFUSED, Check.refuse(Stage.POLICY, "wrong_environment", "not dr"), PAGE,
     Reason.POLICY_DENIED),
], ids=lambda v: v.code if isinstance(v, Check) else None)
def test_settle_folds_the_control_plane_answer_in(status: SubmitStatus, check: Check,
                                                  kind: DecisionKind, last: Reason) -> None:
    sub = _answer(status, ALLOWED, check)
    d = settle(decide(F, CTX), sub)
    assert (d.kind, d.reasons, d.submission, d.detail) == (
        kind, (Reason.RULE_MATCHED, last), sub, str(check))
    assert d.reason_text == f"rule matched; {last.value} ({check})"


def test_settle_leaves_decisions_that_did_not_want_to_act() -> None:
    paged = decide(replace(F, metric="error_ratio"), CTX)
    assert settle(paged, _answer(SubmitStatus.QUEUED)) is paged


def test_ids_and_targets_are_deterministic() -> None:
    d = decide(F, CTX)
    assert d.idempotency_key == "restart-checkout:f1"
    assert RULE.target_for(F) == "deployment/checkout-eu"
    assert d.reason_text == "rule matched"
    assert decide(replace(F, metric="x"), CTX).idempotency_key is None
