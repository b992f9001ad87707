"""Policy as code: who may request which action, where and when, and who must approve it.

A :class:`Policy` is plain frozen data (the config layer builds it from the YAML).
:func:`evaluate` is a pure function of the request, the catalogue, the policy and the time;
its :class:`PolicyVerdict` lists every check it made, each with a stable code and a reason,
which is what ``hotpath policy test`` prints and the audit record keeps. :func:`may_approve`
applies the decision rights: whose approval counts for a request.

Patterns are ``fnmatch`` globs, matched case-sensitively. Actor patterns are
``kind:name-glob`` (``automation:*``, ``agent:copilot``, ``human:*``) or ``*``. A request
without a region (``""``) matches only the region pattern ``*``.

>>> from escalation.catalogue import ActionSpec, Catalogue, Risk
>>> from escalation.request import Actor, Request, Severity
>>> catalogue = Catalogue(actions={
...     "restart_pods": ActionSpec("restart_pods", risk=Risk.LOW),
...     "failover_region": ActionSpec("failover_region", risk=Risk.HIGH)})
>>> policy = Policy(
...     rules=(PolicyRule("auto-restart", actions=("restart_pods",), min_severity=Severity.ERROR),
...            PolicyRule("oncall", actors=("human:*",))),
...     freezes=(FreezeWindow("black-friday", start=1764288000.0, end=1764633600.0,
...                           services=("checkout",), exempt_actors=("human:*",)),),
...     approval=ApprovalPolicy(risk_at_least=Risk.HIGH,
...                             rights=(ApprovalRight(("sre",), environments=("production",)),)))
>>> restart = Request(Actor.parse("automation:latency-restart"), "restart_pods", "checkout",
...                   "production", target="checkout-7f9c", idempotency_key="latency-restart:f1",
...                   requested_at=1764200000.0, severity=Severity.ERROR)
>>> verdict = evaluate(restart, catalogue, policy, now=restart.requested_at)
>>> verdict.allowed, verdict.rule, verdict.summary
(True, 'auto-restart', "allowed by rule 'auto-restart'; no approval needed")
>>> for check in verdict.checks:
...     print(check)
policy: action_known: action 'restart_pods' (risk low, executor webhook)
policy: params_valid: params match the schema of 'restart_pods'
policy: rule_matched: matching rules: 'auto-restart'
policy: severity_met: severity error >= minimum error of rule 'auto-restart'
policy: no_freeze: no change freeze in force
policy: allowed: allowed by rule 'auto-restart'
policy: no_approval_needed: risk low < high; environment production does not require approval

The same restart during the freeze is refused; a human may still fail over (break-glass),
but a high-risk action waits for an SRE's approval:

>>> evaluate(restart, catalogue, policy, now=1764300000.0).summary
"refused: change_freeze: change freeze 'black-friday' in force until 2025-12-02T00:00:00Z"
>>> alice = Actor.parse("human:alice", roles=("oncall",))
>>> failover = Request(alice, "failover_region", "checkout", "production", target="checkout",
...                    idempotency_key="alice-1", requested_at=1764300000.0)
>>> evaluate(failover, catalogue, policy, now=failover.requested_at).summary
"allowed by rule 'oncall'; approval required: risk high >= high"
>>> print(may_approve(alice, failover, catalogue, policy))
approval: self_approval: human:alice cannot approve their own request
>>> print(may_approve(Actor.parse("human:bob", roles=("sre",)), failover, catalogue, policy))
approval: authorized: human:bob may approve failover_region in production (right of roles sre)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from escalation.catalogue import Catalogue, Risk
from escalation.request import Actor, ActorKind, Request, Severity
from escalation.verdict import Check, Stage

__all__ = [
    "ApprovalMode", "ApprovalPolicy", "ApprovalRight", "FreezeWindow", "Policy", "PolicyRule",
    "PolicyVerdict", "approval_deadline", "evaluate", "may_approve", "policy_problems",
]

_ACTOR_KINDS = ", ".join(k.value for k in ActorKind)


class ApprovalMode(enum.Enum):
    NEVER = "never"
    ALWAYS = "always"
    POLICY = "policy"  # as ApprovalPolicy says (risk, environment)


def _matches(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def _actor_matches(actor: Actor, patterns: Iterable[str]) -> bool:
    return _matches(str(actor), patterns)


def _check_actor_patterns(owner: str, patterns: tuple[str, ...]) -> None:
    """A typo'd kind (``humans:*``) would silently match nobody: refuse it at load."""
    for p in patterns:
        kind, sep, _ = p.partition(":")
        literal_kind = not any(ch in kind for ch in "*?[")
        if p != "*" and (not sep or (literal_kind and kind not in {k.value for k in ActorKind})):
            raise ValueError(f"{owner}: actor pattern {p!r}: expected kind:name-glob "
                             f"with kind one of {_ACTOR_KINDS}, or *")


def _require_nonempty(owner: str, **fields: tuple[str, ...]) -> None:
    # An empty tuple matches nothing: a rule or window that can never apply is a config bug.
    for name, value in fields.items():
        if not value:
            raise ValueError(f"{owner}: {name} must not be empty (use ('*',) for any)")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """Lets matching actors request matching actions; the first rule that fits wins."""

    name: str
    actors: tuple[str, ...] = ("automation:*",)
    actions: tuple[str, ...] = ("*",)
    services: tuple[str, ...] = ("*",)
    environments: tuple[str, ...] = ("*",)
    regions: tuple[str, ...] = ("*",)
    min_severity: Severity = Severity.INFO
    approval: ApprovalMode = ApprovalMode.POLICY
    dry_run: bool = False

    def __post_init__(self) -> None:
        owner = f"rule {self.name!r}"
        _require_nonempty(owner, actors=self.actors, actions=self.actions,
                          services=self.services, environments=self.environments,
                          regions=self.regions)
        _check_actor_patterns(owner, self.actors)

    def matches(self, req: Request) -> bool:
        return (_actor_matches(req.actor, self.actors) and _matches(req.action, self.actions)
                and _matches(req.service, self.services)
                and _matches(req.environment, self.environments)
                and _matches(req.region, self.regions))


@dataclass(frozen=True, slots=True)
class FreezeWindow:
    """No matching change in ``[start, end)`` (epoch seconds) unless the actor is exempt."""

    name: str
    start: float
    end: float
    services: tuple[str, ...] = ("*",)
    environments: tuple[str, ...] = ("*",)
    actions: tuple[str, ...] = ("*",)
    exempt_actors: tuple[str, ...] = ()  # break-glass, e.g. ("human:*",)

    def __post_init__(self) -> None:
        owner = f"freeze {self.name!r}"
        if not self.end > self.start:
            raise ValueError(f"{owner}: end {_iso(self.end)} must be after start "
                             f"{_iso(self.start)}")
        _require_nonempty(owner, services=self.services, environments=self.environments,
                          actions=self.actions)
        _check_actor_patterns(owner, self.exempt_actors)

    def covers(self, req: Request, now: float) -> bool:
        return (self.start <= now < self.end and _matches(req.service, self.services)
                and _matches(req.environment, self.environments)
                and _matches(req.action, self.actions))

    def exempts(self, actor: Actor) -> bool:
        return _actor_matches(actor, self.exempt_actors)


@dataclass(frozen=True, slots=True)
class ApprovalRight:
    """Holders of any of ``roles`` may approve matching actions in matching environments."""

    roles: tuple[str, ...]
    actions: tuple[str, ...] = ("*",)
    environments: tuple[str, ...] = ("*",)

    def __post_init__(self) -> None:
        _require_nonempty(f"approval right {self.roles!r}", roles=self.roles,
                          actions=self.actions, environments=self.environments)

    def grants(self, approver: Actor, req: Request) -> bool:
        return (bool(set(self.roles) & set(approver.roles)) and _matches(req.action, self.actions)
                and _matches(req.environment, self.environments))


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """When a rule in ``POLICY`` mode needs a human's yes, and who may give it."""

    risk_at_least: Risk | None = Risk.HIGH   # None: risk alone never requires approval
    environments: tuple[str, ...] = ()       # globs; a match requires approval
    expiry_s: float = 900.0                  # a pending approval lapses (and pages) after this
    rights: tuple[ApprovalRight, ...] = ()

    def __post_init__(self) -> None:
        if not self.expiry_s > 0:
            raise ValueError(f"approval: expiry_s must be > 0, got {self.expiry_s}")

    def reasons(self, risk: Risk, environment: str) -> tuple[str, ...]:
        """Why approval is required (empty: it is not)."""
        out = []
        if self.risk_at_least is not None and risk >= self.risk_at_least:
            out.append(f"risk {risk.label} >= {self.risk_at_least.label}")
        if _matches(environment, self.environments):
            out.append(f"environment {environment} requires approval")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[PolicyRule, ...] = ()
    freezes: tuple[FreezeWindow, ...] = ()
    approval: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    dry_run: bool = False  # global: every allowed action is recorded, none executed

    def __post_init__(self) -> None:
        # The verdict and the audit cite a rule by name: two rules with one name are ambiguous.
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"policy: duplicate rule name {rule.name!r}")
            seen.add(rule.name)


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    """Every check :func:`evaluate` made, in order; a refusal is the last and only failing one.

    ``dry_run`` is True only for an allowed request that must not execute.
    """

    checks: tuple[Check, ...]
    allowed: bool
    rule: str | None
    approval_required: bool
    dry_run: bool

    @property
    def refusal(self) -> Check | None:
        return None if self.allowed else self.checks[-1]

    @property
    def summary(self) -> str:
        if not self.allowed:
            last = self.checks[-1]
            return f"refused: {last.code}: {last.detail}"
        parts = [f"allowed by rule {self.rule!r}"]
        for check in self.checks:
            if check.code == "approval_required":
                parts.append(f"approval required: {check.detail}")
            elif check.code == "no_approval_needed":
                parts.append("no approval needed")
            elif check.code == "dry_run":
                parts.append(f"dry-run: {check.detail}")
        return "; ".join(parts)


def _refused(checks: list[Check], code: str, detail: str, **state: object) -> PolicyVerdict:
    checks.append(Check.refuse(Stage.POLICY, code, detail, **state))
    return PolicyVerdict(tuple(checks), allowed=False, rule=None, approval_required=False,
                         dry_run=False)


def _service_refusal(req: Request, catalogue: Catalogue) -> tuple[str, str] | None:
    """With a service catalogue, a request must name a known service where it runs: the
    environment and region drive rules, freezes and approvals, so a caller must not be
    able to claim a laxer one than the service it changes."""
    if not catalogue.knows(req.service):
        known = ", ".join(sorted(catalogue.services))
        return "unknown_service", f"service {req.service!r} is not in the catalogue ({known})"
    svc = catalogue.service(req.service)
    if req.environment not in svc.environments:
        return ("wrong_environment", f"service {svc.name!r} runs in "
                f"{', '.join(svc.environments)}, not {req.environment}")
    if svc.regions and req.region and req.region not in svc.regions:
        return ("wrong_region", f"service {svc.name!r} runs in {', '.join(svc.regions)}, "
                f"not {req.region}")
    return None


def evaluate(req: Request, catalogue: Catalogue, policy: Policy, now: float) -> PolicyVerdict:
    """Decide whether ``req`` may go on at time ``now``; see the module docstring."""
    checks: list[Check] = []
    add = checks.append
    spec = catalogue.action(req.action)
    if spec is None:
        known = ", ".join(sorted(catalogue.actions)) or "none"
        return _refused(checks, "unknown_action",
                        f"action {req.action!r} is not in the catalogue (known: {known})")
    add(Check.allow(Stage.POLICY, "action_known",
                    f"action {spec.name!r} (risk {spec.risk.label}, executor {spec.executor})"))
    errors = spec.param_errors(req.params)
    if errors:
        return _refused(checks, "invalid_params", "; ".join(errors), errors=list(errors))
    add(Check.allow(Stage.POLICY, "params_valid", f"params match the schema of {spec.name!r}"))
    if catalogue.services:
        refusal = _service_refusal(req, catalogue)
        if refusal is not None:
            return _refused(checks, *refusal)
        svc = catalogue.service(req.service)
        add(Check.allow(Stage.POLICY, "service_known",
                        f"service {svc.name!r} runs in {req.environment}"
                        + (f" ({req.region})" if req.region else "")))

    matching = [r for r in policy.rules if r.matches(req)]
    if not matching:
        where = req.environment + (f" ({req.region})" if req.region else "")
        return _refused(checks, "no_rule", f"no rule lets {req.actor} run {req.action} "
                                           f"on {req.service} in {where}")
    names = ", ".join(repr(r.name) for r in matching)
    add(Check.allow(Stage.POLICY, "rule_matched", f"matching rules: {names}",
                    rules=[r.name for r in matching]))

    rule = next((r for r in matching if req.severity >= r.min_severity), None)
    if rule is None:
        first = matching[0]
        return _refused(checks, "severity_below_minimum",
                        f"severity {req.severity.label} < minimum "
                        f"{first.min_severity.label} of rule {first.name!r}",
                        rule=first.name, severity=req.severity.label,
                        min_severity=first.min_severity.label)
    add(Check.allow(Stage.POLICY, "severity_met",
                    f"severity {req.severity.label} >= minimum "
                    f"{rule.min_severity.label} of rule {rule.name!r}"))

    in_force = [w for w in policy.freezes if w.covers(req, now)]
    blocking = next((w for w in in_force if not w.exempts(req.actor)), None)
    if blocking is not None:
        return _refused(checks, "change_freeze", f"change freeze {blocking.name!r} in force "
                                                 f"until {_iso(blocking.end)}",
                        freeze=blocking.name, until=blocking.end)
    if in_force:
        # Break-glass is allowed but never silent: the audit shows which freeze was bypassed.
        frozen = ", ".join(repr(w.name) for w in in_force)
        add(Check.allow(Stage.POLICY, "freeze_exempt",
                        f"{req.actor} is exempt from change freeze {frozen}",
                        freezes=[w.name for w in in_force]))
    else:
        add(Check.allow(Stage.POLICY, "no_freeze", "no change freeze in force"))

    add(Check.allow(Stage.POLICY, "allowed", f"allowed by rule {rule.name!r}",
                    rule=rule.name, risk=spec.risk.label))

    required = _approval_check(rule, policy.approval, spec.risk, req.environment)
    add(required)

    dry = [text for on, text in ((policy.dry_run, "global dry-run"),
                                 (rule.dry_run, f"rule {rule.name!r} is dry-run")) if on]
    if dry:
        add(Check.allow(Stage.POLICY, "dry_run", "; ".join(dry)))
    return PolicyVerdict(tuple(checks), allowed=True, rule=rule.name,
                         approval_required=required.code == "approval_required",
                         dry_run=bool(dry))


def _approval_check(rule: PolicyRule, approval: ApprovalPolicy, risk: Risk,
                    environment: str) -> Check:
    expiry = {"expiry_s": approval.expiry_s}
    if rule.approval is ApprovalMode.ALWAYS:
        return Check.allow(Stage.POLICY, "approval_required",
                           f"rule {rule.name!r} always requires approval", **expiry)
    if rule.approval is ApprovalMode.NEVER:
        return Check.allow(Stage.POLICY, "no_approval_needed",
                           f"rule {rule.name!r} never requires approval")
    reasons = approval.reasons(risk, environment)
    if reasons:
        return Check.allow(Stage.POLICY, "approval_required", "; ".join(reasons), **expiry)
    gate = ("no risk gate" if approval.risk_at_least is None
            else f"risk {risk.label} < {approval.risk_at_least.label}")
    return Check.allow(Stage.POLICY, "no_approval_needed",
                       f"{gate}; environment {environment} does not require approval")


def approval_deadline(policy: Policy, requested_at: float) -> float:
    """When a pending approval for a request made at ``requested_at`` lapses.

    >>> approval_deadline(Policy(approval=ApprovalPolicy(expiry_s=600.0)), 1000.0)
    1600.0
    """
    return requested_at + policy.approval.expiry_s


def may_approve(approver: Actor, req: Request, catalogue: Catalogue, policy: Policy) -> Check:
    """Whether ``approver``'s yes counts for ``req`` (decision rights are policy too)."""
    if approver.kind is req.actor.kind and approver.name == req.actor.name:
        return Check.refuse(Stage.APPROVAL, "self_approval",
                            f"{approver} cannot approve their own request")
    if approver.kind is ActorKind.AUTOMATION:
        return Check.refuse(Stage.APPROVAL, "automation_cannot_approve",
                            f"{approver} cannot approve: automation holds no decision rights")
    if catalogue.action(req.action) is None:
        return Check.refuse(Stage.APPROVAL, "unknown_action",
                            f"action {req.action!r} is not in the catalogue")
    right = next((r for r in policy.approval.rights if r.grants(approver, req)), None)
    if right is None:
        roles = ", ".join(approver.roles) or "none"
        return Check.refuse(Stage.APPROVAL, "not_authorized",
                            f"{approver} (roles: {roles}) may not approve {req.action} "
                            f"in {req.environment}")
    return Check.allow(Stage.APPROVAL, "authorized",
                       f"{approver} may approve {req.action} in {req.environment} "
                       f"(right of roles {', '.join(right.roles)})",
                       approver=str(approver), right_roles=list(right.roles))


def policy_problems(policy: Policy, catalogue: Catalogue) -> tuple[str, ...]:
    """Config mistakes that load fine but make part of the policy dead (for config checks).

    >>> from escalation.catalogue import ActionSpec
    >>> cat = Catalogue(actions={"restart_pods": ActionSpec("restart_pods")})
    >>> policy_problems(Policy(rules=(PolicyRule("r", actions=("restrat_*",)),)), cat)
    ("rule 'r': actions ('restrat_*',) match no catalogue action",)
    """
    out = []
    names = list(catalogue.actions)
    for rule in policy.rules:
        if not any(_matches(n, rule.actions) for n in names):
            out.append(f"rule {rule.name!r}: actions {rule.actions!r} match no catalogue action")
    for w in policy.freezes:
        if not any(_matches(n, w.actions) for n in names):
            out.append(f"freeze {w.name!r}: actions {w.actions!r} match no catalogue action")
    for right in policy.approval.rights:
        if not any(_matches(n, right.actions) for n in names):
            out.append(f"approval right {right.roles!r}: actions {right.actions!r} "
                       f"match no catalogue action")
    needs_approval = (any(r.approval is ApprovalMode.ALWAYS for r in policy.rules)
                      or any(policy.approval.risk_at_least is not None
                             and spec.risk >= policy.approval.risk_at_least
                             for spec in catalogue.actions.values())
                      or bool(policy.approval.environments))
    if needs_approval and not policy.approval.rights:
        out.append("approval: some requests require approval but no rights are defined, "
                   "so nobody can approve them")
    return tuple(out)
