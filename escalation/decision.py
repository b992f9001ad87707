"""Deciding, per finding: act, page or record — a pure function with its reasons.

DESIGN.md "Deciding": for each finding, in order, each step recording its reason:

1. below the page threshold → record only;
2. a remediation rule matches and confidence ≥ its automation threshold → the rule's
   action is *requested* from the control plane (:mod:`escalation.control`) as
   ``automation:<rule>``, which applies the kill switch, policy, approval and limits — the
   same path an agent's or a person's request takes;
3. otherwise, or when the control plane refuses → page a human, saying why.

So deciding is two pure steps around one control-plane call per batch: :func:`decide` says
whether automation wants to act (``ACT`` here means "ask"), :func:`request_for` builds the
request, and :func:`settle` folds the control plane's :class:`Submission` in.

>>> from escalation.finding import Finding
>>> from escalation.submission import Submission, SubmitStatus
>>> from escalation.verdict import Check, Stage
>>> f = Finding("f1", "k", "checkout", "error_ratio", {}, 0.0, 0.2, 0.01, 9.0, 0.95, ("ewma",))
>>> rule = RemediationRule("restart", action="restart_pods", metric="error_ratio",
...                        min_confidence=0.9)
>>> d = decide(f, DecisionContext(page_threshold=0.7, rules=(rule,)))
>>> d.kind, [r.value for r in d.reasons]
(<DecisionKind.ACT: 'act'>, ['rule matched'])
>>> req = request_for(d, now=1.0)
>>> str(req.actor), req.idempotency_key, req.severity.label
('automation:restart', 'restart:f1', 'critical')
>>> refused = Check.refuse(Stage.LIMITS, "budget_action_service", "restart_pods/checkout 3/3")
>>> d2 = settle(d, Submission(req, SubmitStatus.REFUSED, (refused,)))
>>> d2.kind, d2.reasons[-1].value
(<DecisionKind.PAGE: 'page'>, 'budget exhausted')
>>> d2.detail
'limits: budget_action_service: restart_pods/checkout 3/3'

"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from escalation.finding import Finding
from escalation.request import Actor, ActorKind, Request, Severity
from escalation.submission import Submission, SubmitStatus
from escalation.verdict import Stage


class DecisionKind(enum.Enum):
    ACT = "act"
    PAGE = "page"
    RECORD = "record"


class Reason(enum.Enum):
    """Why a decision came out as it did; the value goes into audit, page and metric label."""

    BELOW_PAGE_THRESHOLD = "below page threshold"
    NO_RULE = "no remediation rule"
    LOW_CONFIDENCE = "confidence below automation threshold"
    RULE_MATCHED = "rule matched"
    # The control plane's answer (the Check's code, in the page's words).
    PAUSED = "automation paused"
    POLICY_DENIED = "policy does not allow the action here"
    CHANGE_FREEZE = "change freeze"
    DRY_RUN = "dry run: allowed, not executed"
    APPROVAL_REQUIRED = "approval required"
    LIMITS_CLAIMED = "limits claimed"
    BUDGET_EXHAUSTED = "budget exhausted"
    CONCURRENCY = "too many actions in flight"
    COOLDOWN = "target in cool-down"
    BLAST_RADIUS = "blast radius limit"
    BUDGET_UNAVAILABLE = "budget store unavailable"
    APPROVAL_UNAVAILABLE = "approval store unavailable"
    CLAIMED_NOT_QUEUED = "claimed before but never queued"
    DUPLICATE = "already handled (idempotency key claimed before)"
    # Outcomes after the decision, for pages about automation that did not work out.
    QUEUE_UNAVAILABLE = "action queue unavailable"
    ACTION_FAILED = "remediation failed"


@dataclass(frozen=True, slots=True)
class RemediationRule:
    """A bounded automated remediation: which findings it covers and what it does."""

    name: str
    action: str
    service: str = "*"          # glob over the finding's service
    metric: str = "*"           # glob over the finding's metric
    min_confidence: float = 0.9
    target: str = "{service}"   # formatted with service, metric and labels
    params: Mapping[str, Any] = field(default_factory=dict)  # the action's parameters

    def matches(self, f: Finding) -> bool:
        return fnmatchcase(f.service, self.service) and fnmatchcase(f.metric, self.metric)

    def target_for(self, f: Finding) -> str:
        return self.target.format(service=f.service, metric=f.metric, **f.labels)


@dataclass(frozen=True, slots=True)
class DecisionContext:
    page_threshold: float
    rules: tuple[RemediationRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    reasons: tuple[Reason, ...]
    finding: Finding
    rule: RemediationRule | None = None
    submission: Submission | None = None  # the control plane's answer, when automation asked
    detail: str = ""                       # the deciding check, in words

    @property
    def request_id(self) -> str | None:
        return None if self.submission is None else self.submission.request.request_id

    @property
    def idempotency_key(self) -> str | None:
        """One action per (rule, finding): a replayed finding claims the same key."""
        if self.rule is None:
            return None
        return f"{self.rule.name}:{self.finding.finding_id}"

    @property
    def reason_text(self) -> str:
        text = "; ".join(r.value for r in self.reasons)
        return f"{text} ({self.detail})" if self.detail else text


def decide(f: Finding, ctx: DecisionContext) -> Decision:
    """Whether automation wants to act: ``ACT`` here means "ask the control plane"."""
    if f.confidence < ctx.page_threshold:
        return Decision(DecisionKind.RECORD, (Reason.BELOW_PAGE_THRESHOLD,), f)
    rule = next((r for r in ctx.rules if r.matches(f)), None)
    if rule is None:
        return Decision(DecisionKind.PAGE, (Reason.NO_RULE,), f)
    if f.confidence < rule.min_confidence:
        return Decision(DecisionKind.PAGE, (Reason.LOW_CONFIDENCE,), f, rule)
    return Decision(DecisionKind.ACT, (Reason.RULE_MATCHED,), f, rule)


def request_for(d: Decision, now: float) -> Request:
    """The control-plane request for a decision that wants to act, with its evidence."""
    assert d.rule is not None and d.idempotency_key is not None
    f = d.finding
    return Request(
        actor=Actor(ActorKind.AUTOMATION, d.rule.name), action=d.rule.action,
        service=f.service, environment=f.environment, target=d.rule.target_for(f),
        idempotency_key=d.idempotency_key, requested_at=now,
        severity=Severity.from_confidence(f.confidence), region=f.labels.get("region", ""),
        params=dict(d.rule.params), reason=f"rule {d.rule.name} matched {f.metric}",
        event_ts=f.ts, finding_id=f.finding_id,
        evidence={"finding_id": f.finding_id, "series": f.series_key, "metric": f.metric,
                  "labels": dict(f.labels), "ts": f.ts, "value": f.value,
                  "baseline": f.baseline, "deviation": f.deviation,
                  "confidence": f.confidence, "detectors": list(f.detectors),
                  "recent": list(f.recent)},
    )


# Refusal codes (escalation.policy / escalation.limits) → the reason a page states.
_REFUSALS = {
    "paused": Reason.PAUSED,
    "change_freeze": Reason.CHANGE_FREEZE,
    "budget_action_service": Reason.BUDGET_EXHAUSTED,
    "budget_service": Reason.BUDGET_EXHAUSTED,
    "budget_global": Reason.BUDGET_EXHAUSTED,
    "concurrency_service": Reason.CONCURRENCY,
    "concurrency_global": Reason.CONCURRENCY,
    "cooldown": Reason.COOLDOWN,
    "blast_radius": Reason.BLAST_RADIUS,
    "blast_services": Reason.BLAST_RADIUS,
    "unavailable": Reason.BUDGET_UNAVAILABLE,
    "queue_unavailable": Reason.QUEUE_UNAVAILABLE,
    "claimed_not_queued": Reason.CLAIMED_NOT_QUEUED,
}

_SETTLED = {
    SubmitStatus.QUEUED: (DecisionKind.ACT, Reason.LIMITS_CLAIMED),
    SubmitStatus.DUPLICATE: (DecisionKind.RECORD, Reason.DUPLICATE),
    SubmitStatus.DRY_RUN: (DecisionKind.RECORD, Reason.DRY_RUN),
    SubmitStatus.PENDING_APPROVAL: (DecisionKind.PAGE, Reason.APPROVAL_REQUIRED),
}


def settle(d: Decision, sub: Submission) -> Decision:
    """Fold the control plane's answer into a decision that asked to act."""
    if d.kind is not DecisionKind.ACT:
        return d
    if sub.status is SubmitStatus.REFUSED:
        last = sub.checks[-1] if sub.checks else None
        code = "" if last is None else last.code
        reason = _REFUSALS.get(code, Reason.POLICY_DENIED)
        if last is not None and last.stage is Stage.APPROVAL and code == "unavailable":
            reason = Reason.APPROVAL_UNAVAILABLE
        kind = DecisionKind.PAGE
    else:
        kind, reason = _SETTLED[sub.status]
    return replace(d, kind=kind, reasons=(*d.reasons, reason), submission=sub,
                   detail=sub.reason)
