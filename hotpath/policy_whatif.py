"""``hotpath policy test REQUEST.json``: what the control plane would decide, without acting.

Runs the same pure policy evaluation the live path runs (:func:`escalation.policy.evaluate`)
at the request's ``at`` time (default: now) and prints every check. With ``--limits`` it
also reads the shared limits in Redis *without claiming anything*, so an SRE can see
whether a budget or a cool-down would stop the request right now.

Exit status: 0 when the request would run (or would wait for an approval, or is dry-run),
1 when it would be refused, 2 when the request or the config is malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from escalation.catalogue import Catalogue
from escalation.limits import LimitOutcome, LimitStatus
from escalation.policy import Policy, PolicyVerdict, evaluate
from escalation.request import Request
from escalation.verdict import Check


class Outcome(Enum):
    WOULD_RUN = "would run"
    WOULD_WAIT = "would wait for approval"
    DRY_RUN = "dry run: recorded, not run"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class PolicyTest:
    request: Request
    verdict: PolicyVerdict
    limits: LimitOutcome | None = None

    @property
    def checks(self) -> tuple[Check, ...]:
        return self.verdict.checks + (() if self.limits is None else (self.limits.check,))

    @property
    def outcome(self) -> Outcome:
        v = self.verdict
        if not v.allowed:
            return Outcome.REFUSED
        if v.dry_run:
            return Outcome.DRY_RUN
        if self.limits is not None and self.limits.status is not LimitStatus.CLAIMED:
            return Outcome.REFUSED
        return Outcome.WOULD_WAIT if v.approval_required else Outcome.WOULD_RUN

    @property
    def exit_code(self) -> int:
        return 1 if self.outcome is Outcome.REFUSED else 0


def run_policy_test(req: Request, catalogue: Catalogue, policy: Policy,
                    limits: LimitOutcome | None = None) -> PolicyTest:
    """Evaluate at the request's own time (``at`` in the file), so a freeze can be tried."""
    return PolicyTest(req, evaluate(req, catalogue, policy, req.requested_at), limits)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(t: PolicyTest) -> str:
    """The text ``policy test`` prints.

    >>> from escalation.catalogue import ActionSpec
    >>> from escalation.policy import PolicyRule
    >>> from escalation.request import Actor
    >>> req = Request(Actor.parse("agent:copilot"), "restart_pods", "checkout", "production",
    ...               "deployment/checkout", "copilot-1", 1764288000.0)
    >>> cat = Catalogue(actions={"restart_pods": ActionSpec("restart_pods")})
    >>> print(render(run_policy_test(req, cat, Policy(rules=(PolicyRule("r"),)))))
    request req_a218a43c602d9aa9 at 2025-11-28T00:00:00Z
      agent:copilot asks restart_pods on deployment/checkout (service checkout, production)
      ok   policy  action_known: action 'restart_pods' (risk low, executor webhook)
      ok   policy  params_valid: params match the schema of 'restart_pods'
      FAIL policy  no_rule: no rule lets agent:copilot run restart_pods on checkout in production
    decision: refused
    """
    req = t.request
    where = f"service {req.service}, {req.environment}" + (f", {req.region}" if req.region
                                                             else "")
    lines = [f"request {req.request_id} at {_iso(req.requested_at)}",
             f"  {req.actor} asks {req.action} on {req.target} ({where})"]
    for c in t.checks:
        mark = "ok  " if c.ok else "FAIL"
        lines.append(f"  {mark} {c.stage.value:<8}{c.code}: {c.detail}")
    lines.append(f"decision: {t.outcome.value}")
    return "\n".join(lines)
