"""What each stage of the governed path answers: a pure value with its reason.

Every stage (policy, limits, approval, execution, verification) returns a :class:`Check`:
whether the request may go on, a stable ``code`` (metric label, audit field, what tests
assert) and a ``detail`` a human reads in the page or the ``policy test`` output.

>>> c = Check.refuse(Stage.POLICY, "change_freeze", "'black-friday' until 2026-11-30T00:00Z")
>>> c.ok, str(c)
(False, "policy: change_freeze: 'black-friday' until 2026-11-30T00:00Z")
>>> str(Check.allow(Stage.LIMITS, "claimed", "budget 1/3 per hour"))
'limits: claimed: budget 1/3 per hour'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Stage(enum.Enum):
    POLICY = "policy"
    LIMITS = "limits"
    APPROVAL = "approval"
    EXECUTE = "execute"
    VERIFY = "verify"


@dataclass(frozen=True, slots=True)
class Check:
    """One stage's answer. ``state`` carries what the stage read (budget counts, the
    matched rule, ...) for the audit record's authorization section."""

    ok: bool
    stage: Stage
    code: str
    detail: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def allow(cls, stage: Stage, code: str, detail: str = "", **state: Any) -> Check:
        return cls(True, stage, code, detail, dict(state))

    @classmethod
    def refuse(cls, stage: Stage, code: str, detail: str = "", **state: Any) -> Check:
        return cls(False, stage, code, detail, dict(state))

    def __str__(self) -> str:
        text = f"{self.stage.value}: {self.code}"
        return f"{text}: {self.detail}" if self.detail else text

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "stage": self.stage.value, "code": self.code,
                "detail": self.detail, "state": self.state}
