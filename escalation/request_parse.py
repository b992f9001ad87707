"""Turn a JSON request body into a :class:`~escalation.request.Request`, naming every bad field.

One shape serves the action API body and the ``hotpath policy test REQUEST.json`` file::

    {"actor": "agent:copilot", "roles": ["sre"], "action": "restart_pods",
     "service": "checkout", "environment": "production", "region": "eu-west-1",
     "target": "checkout-7f9c", "params": {}, "severity": "error",
     "idempotency_key": "copilot-42", "reason": "p99 latency 4x baseline",
     "at": 1764200000.0, "finding_id": null, "evidence": {}}

When the caller's identity is known (``actor`` given: the API authenticated it), the body's
``actor``, ``roles`` and ``at`` are ignored: a caller may not name itself, grant itself roles
or pick the time its request is judged at (that would step around a change freeze). They
count only for ``policy test``, which asks "what would happen if ... at ...".

>>> r = parse_request({"action": "restart_pods", "service": "checkout",
...                    "idempotency_key": "k1"}, actor=Actor.parse("agent:copilot"),
...                   now=100.0, default_environment="production")
>>> str(r.actor), r.environment, r.target, r.severity.label, r.requested_at
('agent:copilot', 'production', 'checkout', 'warning', 100.0)
>>> parse_request({"acton": "x", "service": 3, "idempotency_key": "k"}, actor=None, now=0.0,
...               default_environment="production")
Traceback (most recent call last):
...
escalation.errors.RequestError: request: field 'actor' is required; \
request: field 'action' is required; request: field 'service' must be a string, got int; \
request: unknown field 'acton'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from escalation.errors import RequestError
from escalation.request import Actor, Request, Severity

__all__ = ["FIELDS", "MAX_IDEMPOTENCY_KEY", "RequestError", "parse_request"]

# Keys end up in Redis key names and audit records; 200 fits a rule name plus a finding id
# with room to spare while keeping a hostile caller from bloating every key it touches.
MAX_IDEMPOTENCY_KEY = 200

FIELDS = ("actor", "roles", "action", "service", "environment", "region", "target", "params",
          "severity", "idempotency_key", "reason", "at", "finding_id", "evidence")



def _type_name(value: object) -> str:
    # Python's names (list, dict, str, int) read fine to API callers; JSON null is "null".
    return "null" if value is None else type(value).__name__


class _Fields:
    """Reads typed fields from the body, recording a problem instead of raising."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def problem(self, name: str, text: str) -> None:
        self.problems.append(f"request: field {name!r} {text}")

    def string(self, name: str, default: str | None = None, *, empty_ok: bool = False
               ) -> str | None:
        if name not in self.raw:
            if default is None:
                self.problem(name, "is required")
            return default
        value = self.raw[name]
        if not isinstance(value, str):
            self.problem(name, f"must be a string, got {_type_name(value)}")
            return None
        if not value and not empty_ok:
            self.problem(name, "must not be empty")
            return None
        return value

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            self.problem(name, f"must be an object, got {_type_name(value)}")
            return None
        return value

    def number(self, name: str, default: float) -> float | None:
        value = self.raw.get(name, default)
        # bool is an int to Python but never a timestamp a caller meant to send.
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(name, f"must be a number, got {_type_name(value)}")
            return None
        if not math.isfinite(value):
            self.problem(name, f"must be finite, got {value}")
            return None
        return float(value)


def _parse_actor(f: _Fields) -> Actor | None:
    text = f.string("actor")
    roles: tuple[str, ...] = ()
    raw_roles = f.raw.get("roles", [])
    if isinstance(raw_roles, list) and all(isinstance(r, str) for r in raw_roles):
        roles = tuple(raw_roles)
    else:
        f.problem("roles", f"must be a list of strings, got {_type_name(raw_roles)}"
                  if not isinstance(raw_roles, list) else "must be a list of strings")
    if text is None:
        return None
    try:
        return Actor.parse(text, roles)
    except ValueError as exc:
        f.problems.append(f"request: field 'actor': {exc}")
        return None


def parse_request(raw: object, *, actor: Actor | None, now: float,
                  default_environment: str) -> Request:
    """Build a :class:`Request` from a decoded JSON body or raise :class:`RequestError`.

    ``actor`` is the authenticated caller (the API) or None (``policy test``: the body
    names the actor, its roles and the time ``at``).

    >>> parse_request([], actor=None, now=0.0, default_environment="prod")
    Traceback (most recent call last):
    ...
    escalation.errors.RequestError: request: must be a JSON object, got list
    """
    if not isinstance(raw, Mapping):
        raise RequestError([f"request: must be a JSON object, got {_type_name(raw)}"])
    f = _Fields(raw)
    who = actor if actor is not None else _parse_actor(f)
    action = f.string("action")
    service = f.string("service")
    environment = f.string("environment", default_environment)
    region = f.string("region", "", empty_ok=True)
    target = f.string("target", service or "")
    params = f.mapping("params")

    severity: Severity | None = Severity.WARNING
    label = f.string("severity", Severity.WARNING.label)
    if label is not None:
        try:
            severity = Severity.parse(label)
        except ValueError as exc:
            f.problems.append(f"request: field 'severity': {exc}")
            severity = None

    key = f.raw.get("idempotency_key")
    if key is None:
        f.problem("idempotency_key", "is required")
    elif not isinstance(key, str):
        f.problem("idempotency_key", f"must be a string, got {_type_name(key)}")
        key = None
    elif not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        f.problem("idempotency_key",
                  f"must be 1..{MAX_IDEMPOTENCY_KEY} characters, got {len(key)}")
        key = None

    reason = f.string("reason", "", empty_ok=True)
    at = f.number("at", now) if actor is None else now
    finding_id: str | None = None
    if f.raw.get("finding_id") is not None:
        finding_id = f.string("finding_id")
    evidence = f.mapping("evidence")

    f.problems.extend(f"request: unknown field {k!r}" for k in raw if k not in FIELDS)
    if f.problems:
        raise RequestError(f.problems)
    # Every None below was recorded as a problem above, so these hold.
    assert who and action and service and environment and target and key
    assert region is not None and params is not None and severity is not None
    assert reason is not None and at is not None and evidence is not None
    # Keys are scoped by the caller: one caller's key can never collide with another's (or
    # with automation's rule:finding keys), so nobody can pre-empt or silence a request.
    return Request(actor=who, action=action, service=service, environment=environment,
                   target=target, idempotency_key=f"{who}:{key}", requested_at=at,
                   severity=severity,
                   region=region, params=params, reason=reason, finding_id=finding_id,
                   evidence=evidence)
