"""decide/settle as a table: each row a finding and context, the decision and its reasons."""

from __future__ import annotations

from dataclasses import replace

import pytest

from escalation.decision import (
    BudgetOutcome,
    BudgetStatus,
    DecisionContext,
    DecisionKind,
    PolicyGrant,
    Reason,
    RemediationRule,
    decide,
    settle,
)
from escalation.finding import Finding

F = Finding("f1", "checkout|http_latency_p99_ms|region=eu", "checkout", "http_latency_p99_ms",
            {"region": "eu"}, 100.0, 1200.0, 200.0, 9.5, 0.97, ("ewma",))
RULE = RemediationRule("restart-checkout", "restart_pods", service="checkout",
                       metric="http_latency_p99_ms", min_confidence=0.9,
                       target="deployment/{service}-{region}")
CTX = DecisionContext(page_threshold=0.5, rules=(RULE,),
                      policy=(PolicyGrant("restart_pods", ("checkout",), ("production",)),))

ACT, PAGE, RECORD = DecisionKind.ACT, DecisionKind.PAGE, DecisionKind.RECORD


@pytest.mark.parametrize(("finding", "ctx", "kind", "reasons"), [
    (F, CTX, ACT, [Reason.RULE_MATCHED]),
    (replace(F, confidence=0.4), CTX, RECORD, [Reason.BELOW_PAGE_THRESHOLD]),
    (replace(F, metric="error_ratio"), CTX, PAGE, [Reason.NO_RULE]),
    (replace(F, service="search"), CTX, PAGE, [Reason.NO_RULE]),
    (replace(F, confidence=0.8), CTX, PAGE, [Reason.LOW_CONFIDENCE]),
    (replace(F, environment="staging"), CTX, PAGE, [Reason.POLICY_DENIED]),
    (F, replace(CTX, policy=()), PAGE, [Reason.POLICY_DENIED]),
    (F, replace(CTX, paused=True), PAGE, [Reason.PAUSED]),
    (F, replace(CTX, rules=(replace(RULE, approval_required=True),)), PAGE,
     [Reason.APPROVAL_REQUIRED]),
    # The page threshold comes first: a paused, rule-less context still only records.
    (replace(F, confidence=0.1), replace(CTX, rules=(), paused=True), RECORD,
     [Reason.BELOW_PAGE_THRESHOLD]),
])
def test_decide(finding: Finding, ctx: DecisionContext, kind: DecisionKind,
                reasons: list[Reason]) -> None:
    d = decide(finding, ctx)
    assert (d.kind, list(d.reasons)) == (kind, reasons)


@pytest.mark.parametrize(("status", "kind", "last"), [
    (BudgetStatus.CLAIMED, ACT, Reason.BUDGET_CLAIMED),
    (BudgetStatus.EXHAUSTED, PAGE, Reason.BUDGET_EXHAUSTED),
    (BudgetStatus.UNAVAILABLE, PAGE, Reason.BUDGET_UNAVAILABLE),
    (BudgetStatus.DUPLICATE, RECORD, Reason.DUPLICATE),
])
def test_settle_folds_the_budget_claim_in(status: BudgetStatus, kind: DecisionKind,
                                          last: Reason) -> None:
    outcome = BudgetOutcome(status, used=2, limit=2, window_s=3600.0)
    d = settle(decide(F, CTX), outcome)
    assert (d.kind, d.reasons, d.budget) == (kind, (Reason.RULE_MATCHED, last), outcome)


def test_settle_leaves_decisions_that_did_not_want_to_act() -> None:
    paged = decide(replace(F, metric="error_ratio"), CTX)
    assert settle(paged, BudgetOutcome(BudgetStatus.CLAIMED)) is paged


def test_ids_and_targets_are_deterministic() -> None:
    d = decide(F, CTX)
    assert d.idempotency_key == "restart-checkout:f1"
    assert RULE.target_for(F) == "deployment/checkout-eu"
    assert d.reason_text == "rule matched"
    assert decide(replace(F, metric="x"), CTX).idempotency_key is None
