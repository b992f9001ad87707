"""What the control plane answers to a request: its status, every check, and the approval.

>>> from escalation.request import Actor, ActorKind, Request
>>> from escalation.verdict import Check, Stage
>>> req = Request(Actor(ActorKind.AGENT, "copilot"), "restart_pods", "checkout", "production",
...               "deployment/checkout", "copilot-1", requested_at=0.0)
>>> s = Submission(req, SubmitStatus.REFUSED,
...                (Check.refuse(Stage.POLICY, "no_rule", "no rule lets agent:copilot ..."),))
>>> s.reason
'policy: no_rule: no rule lets agent:copilot ...'
>>> s.to_dict()["status"], s.to_dict()["request_id"]
('refused', 'req_a218a43c602d9aa9')
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from escalation.request import Request
from escalation.verdict import Check


class SubmitStatus(enum.Enum):
    QUEUED = "queued"                      # every check passed; intent audited; queued to run
    PENDING_APPROVAL = "pending_approval"  # allowed, but a person must approve first
    REFUSED = "refused"                    # a stage said no; the last check says which and why
    DRY_RUN = "dry_run"                    # allowed, but policy is in dry-run: nothing runs
    DUPLICATE = "duplicate"                # the idempotency key was claimed before: a replay


@dataclass(frozen=True, slots=True)
class Submission:
    request: Request
    status: SubmitStatus
    checks: tuple[Check, ...]
    approval_id: str | None = None
    approval_expires_at: float | None = None
    approve_token: str | None = None   # for the page's approve/deny links; never audited
    deny_token: str | None = None

    @property
    def reason(self) -> str:
        """The deciding check: the refusal, or the last step that passed."""
        return str(self.checks[-1]) if self.checks else ""

    def to_dict(self) -> dict[str, Any]:
        """The API's answer (tokens excluded: they go only to the pager's links)."""
        return {
            "request_id": self.request.request_id,
            "status": self.status.value,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
            "approval": None if self.approval_id is None else {
                "approval_id": self.approval_id, "expires_at": self.approval_expires_at},
        }
