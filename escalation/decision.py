"""Deciding, per finding: act, page or record — a pure function with its reasons.

DESIGN.md "Deciding": for each finding, in order, each step recording its reason:

1. below the page threshold → record only;
2. a remediation rule matches, confidence ≥ its automation threshold, policy allows the
   action for this service and environment, automation is not paused, no approval is
   required, and the budget has room → act;
3. otherwise → page a human, saying why automation did not act.

The budget lives in Redis, so deciding is two pure steps around one atomic claim:
:func:`decide` gives the decision as far as it can be known without the budget store
(an ``ACT`` from it means "act if the budget has room"); the caller claims the budget
only for those, then :func:`settle` folds the claim's outcome in.

>>> from escalation.finding import Finding
>>> f = Finding("f1", "k", "checkout", "error_ratio", {}, 0.0, 0.2, 0.01, 9.0, 0.95, ("ewma",))
>>> rule = RemediationRule("restart", action="restart_pods", metric="error_ratio",
...                        min_confidence=0.9)
>>> ctx = DecisionContext(page_threshold=0.7, rules=(rule,),
...                       policy=(PolicyGrant(action="restart_pods"),))
>>> d = decide(f, ctx)
>>> d.kind, [r.value for r in d.reasons]
(<DecisionKind.ACT: 'act'>, ['rule matched'])
>>> d2 = settle(d, BudgetOutcome(BudgetStatus.EXHAUSTED, used=3, limit=3))
>>> d2.kind, d2.reasons[-1].value
(<DecisionKind.PAGE: 'page'>, 'budget exhausted')
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from escalation.finding import Finding


class DecisionKind(enum.Enum):
    ACT = "act"
    PAGE = "page"
    RECORD = "record"


class Reason(enum.Enum):
    """Why a decision came out as it did; the value goes into audit, page and metric label."""

    BELOW_PAGE_THRESHOLD = "below page threshold"
    NO_RULE = "no remediation rule"
    LOW_CONFIDENCE = "confidence below automation threshold"
    POLICY_DENIED = "policy does not allow the action here"
    PAUSED = "automation paused"
    APPROVAL_REQUIRED = "approval required"
    RULE_MATCHED = "rule matched"
    BUDGET_CLAIMED = "budget claimed"
    BUDGET_EXHAUSTED = "budget exhausted"
    BUDGET_UNAVAILABLE = "budget store unavailable"
    DUPLICATE = "already handled (idempotency key claimed before)"
    # Outcomes after the decision, for pages about automation that did not work out.
    QUEUE_UNAVAILABLE = "action queue unavailable"
    ACTION_FAILED = "remediation failed"


class BudgetStatus(enum.Enum):
    CLAIMED = "claimed"          # room in the window; the idempotency key is now ours
    DUPLICATE = "duplicate"      # the idempotency key was claimed before: a replay
    EXHAUSTED = "exhausted"      # no room left in the rolling window
    UNAVAILABLE = "unavailable"  # Redis unreachable or too slow: fail closed


@dataclass(frozen=True, slots=True)
class BudgetOutcome:
    status: BudgetStatus
    used: int = 0     # actions counted in the window after this claim
    limit: int = 0
    window_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RemediationRule:
    """A bounded automated remediation: which findings it covers and what it does."""

    name: str
    action: str
    service: str = "*"          # glob over the finding's service
    metric: str = "*"           # glob over the finding's metric
    min_confidence: float = 0.9
    target: str = "{service}"   # formatted with service, metric and labels
    budget_limit: int = 3       # actions per (action, service) in the rolling window
    budget_window_s: float = 3600.0
    approval_required: bool = False

    def matches(self, f: Finding) -> bool:
        return fnmatchcase(f.service, self.service) and fnmatchcase(f.metric, self.metric)

    def target_for(self, f: Finding) -> str:
        return self.target.format(service=f.service, metric=f.metric, **f.labels)


@dataclass(frozen=True, slots=True)
class PolicyGrant:
    """Automation may run ``action`` on services matching ``services`` in ``environments``."""

    action: str
    services: tuple[str, ...] = ("*",)
    environments: tuple[str, ...] = ("*",)

    def allows(self, action: str, service: str, environment: str) -> bool:
        return (
            action == self.action
            and any(fnmatchcase(service, s) for s in self.services)
            and any(fnmatchcase(environment, e) for e in self.environments)
        )


@dataclass(frozen=True, slots=True)
class DecisionContext:
    page_threshold: float
    rules: tuple[RemediationRule, ...] = ()
    policy: tuple[PolicyGrant, ...] = ()
    paused: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    reasons: tuple[Reason, ...]
    finding: Finding
    rule: RemediationRule | None = None
    budget: BudgetOutcome | None = field(default=None)

    @property
    def idempotency_key(self) -> str | None:
        """One action per (rule, finding): a replayed finding claims the same key."""
        if self.rule is None:
            return None
        return f"{self.rule.name}:{self.finding.finding_id}"

    @property
    def reason_text(self) -> str:
        return "; ".join(r.value for r in self.reasons)


def decide(f: Finding, ctx: DecisionContext) -> Decision:
    """Everything but the budget: ACT here means "act if the budget has room"."""
    if f.confidence < ctx.page_threshold:
        return Decision(DecisionKind.RECORD, (Reason.BELOW_PAGE_THRESHOLD,), f)
    rule = next((r for r in ctx.rules if r.matches(f)), None)
    if rule is None:
        return Decision(DecisionKind.PAGE, (Reason.NO_RULE,), f)
    if f.confidence < rule.min_confidence:
        return Decision(DecisionKind.PAGE, (Reason.LOW_CONFIDENCE,), f, rule)
    if not any(g.allows(rule.action, f.service, f.environment) for g in ctx.policy):
        return Decision(DecisionKind.PAGE, (Reason.POLICY_DENIED,), f, rule)
    if ctx.paused:
        return Decision(DecisionKind.PAGE, (Reason.PAUSED,), f, rule)
    if rule.approval_required:
        return Decision(DecisionKind.PAGE, (Reason.APPROVAL_REQUIRED,), f, rule)
    return Decision(DecisionKind.ACT, (Reason.RULE_MATCHED,), f, rule)


_SETTLED = {
    BudgetStatus.CLAIMED: (DecisionKind.ACT, Reason.BUDGET_CLAIMED),
    BudgetStatus.DUPLICATE: (DecisionKind.RECORD, Reason.DUPLICATE),
    BudgetStatus.EXHAUSTED: (DecisionKind.PAGE, Reason.BUDGET_EXHAUSTED),
    BudgetStatus.UNAVAILABLE: (DecisionKind.PAGE, Reason.BUDGET_UNAVAILABLE),
}


def settle(d: Decision, budget: BudgetOutcome) -> Decision:
    """Fold the budget claim into a decision that wanted to act."""
    if d.kind is not DecisionKind.ACT:
        return d
    kind, reason = _SETTLED[budget.status]
    return replace(d, kind=kind, reasons=(*d.reasons, reason), budget=budget)
