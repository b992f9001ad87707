"""Who asks for what: the one request type every actor's action goes through.

Automation (a remediation rule matching a finding), an outside agent calling the action
API and a human at the console or API all produce a :class:`Request`; the control plane
(``escalation.control``) takes it through policy → limits → approval → execute → verify →
audit, the same stages for all three.

>>> a = Actor.parse("agent:copilot")
>>> a, a.kind.value, str(Actor(ActorKind.HUMAN, "alice", ("sre",)))
(Actor(kind=<ActorKind.AGENT: 'agent'>, name='copilot', roles=()), 'agent', 'human:alice')
>>> Actor.parse("robot:x")
Traceback (most recent call last):
...
ValueError: actor 'robot:x': kind must be one of automation, agent, human
>>> Severity.parse("error") > Severity.WARNING, Severity.from_confidence(0.95).label
(True, 'critical')
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson


class ActorKind(enum.Enum):
    AUTOMATION = "automation"  # a remediation rule; name = the rule's name
    AGENT = "agent"            # an outside program (an AI copilot) over the action API
    HUMAN = "human"            # a person, over the API or the console


@dataclass(frozen=True, slots=True)
class Actor:
    """``kind:name`` plus the roles that decide approval rights (humans and agents)."""

    kind: ActorKind
    name: str
    roles: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"

    @classmethod
    def parse(cls, text: str, roles: tuple[str, ...] = ()) -> Actor:
        kind, sep, name = text.partition(":")
        kinds = ", ".join(k.value for k in ActorKind)
        if not sep or not name:
            raise ValueError(f"actor {text!r}: expected kind:name, kind one of {kinds}")
        try:
            return cls(ActorKind(kind), name, roles)
        except ValueError:
            raise ValueError(f"actor {text!r}: kind must be one of {kinds}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "roles": list(self.roles)}


class Severity(enum.IntEnum):
    """How bad the case is; policy rules gate on a minimum severity."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"severity {text!r}: must be one of {names}") from None

    @classmethod
    def from_confidence(cls, confidence: float) -> Severity:
        """Automation's severity is the finding's confidence, in four bands."""
        if confidence >= 0.9:
            return cls.CRITICAL
        if confidence >= 0.7:
            return cls.ERROR
        if confidence >= 0.5:
            return cls.WARNING
        return cls.INFO


def request_id(idempotency_key: str) -> str:
    """The request's id, derived from its idempotency key: a replay gets the same id.

    >>> request_id("restart-checkout:f1") == request_id("restart-checkout:f1")
    True
    >>> len(request_id("k"))
    20
    """
    return "req_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Request:
    """One action some actor wants done to production, with the evidence behind it.

    ``idempotency_key`` names the request across retries, replays and replicas: the same
    key is claimed once, so the same request never executes twice. For automation it is
    ``rule:finding_id``; an agent or human supplies its own (the API requires one).
    """

    actor: Actor
    action: str
    service: str
    environment: str
    target: str
    idempotency_key: str
    requested_at: float                # decision time (injected clock)
    severity: Severity = Severity.WARNING
    region: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""                   # why the actor asks (free text, into the audit)
    event_ts: float | None = None      # the telemetry time that prompted it, if any
    finding_id: str | None = None
    # What the decision read: finding id, series, scores, recent values, ... (JSON-able).
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return request_id(self.idempotency_key)

    def same_change(self, other: Request) -> bool:
        """Whether ``other`` asks for the same change (a genuine replay of this request),
        not a different one reusing its idempotency key.

        >>> from dataclasses import replace
        >>> a = Request(Actor.parse("agent:x"), "restart", "svc", "prod", "t", "k", 1.0)
        >>> a.same_change(replace(a, requested_at=2.0, reason="again"))
        True
        >>> a.same_change(replace(a, target="other"))
        False
        """
        return (self.actor.kind, self.actor.name, self.action, self.service, self.environment,
                self.region, self.target, dict(self.params)) == (
            other.actor.kind, other.actor.name, other.action, other.service,
            other.environment, other.region, other.target, dict(other.params))

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "actor": self.actor.to_dict(),
            "action": self.action,
            "service": self.service,
            "environment": self.environment,
            "region": self.region,
            "target": self.target,
            "params": dict(self.params),
            "severity": self.severity.label,
            "idempotency_key": self.idempotency_key,
            "requested_at": self.requested_at,
            "event_ts": self.event_ts,
            "finding_id": self.finding_id,
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Request:
        """Inverse of :meth:`to_dict` (the stored form: pending approvals, queues)."""
        actor = raw["actor"]
        return cls(
            actor=Actor(ActorKind(actor["kind"]), str(actor["name"]),
                        tuple(str(r) for r in actor.get("roles", ()))),
            action=str(raw["action"]), service=str(raw["service"]),
            environment=str(raw["environment"]), target=str(raw["target"]),
            idempotency_key=str(raw["idempotency_key"]),
            requested_at=float(raw["requested_at"]),
            severity=Severity.parse(str(raw.get("severity", "warning"))),
            region=str(raw.get("region", "")), params=dict(raw.get("params", {})),
            reason=str(raw.get("reason", "")),
            event_ts=None if raw.get("event_ts") is None else float(raw["event_ts"]),
            finding_id=None if raw.get("finding_id") is None else str(raw["finding_id"]),
            evidence=dict(raw.get("evidence", {})),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Request:
        return cls.from_dict(orjson.loads(data))
