"""The action request, its result, and the contract every executor implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

_FIELDS = ("action", "target", "service", "finding_id", "idempotency_key", "rule", "params")
_OPTIONAL = ("context",)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One remediation to carry out; ``idempotency_key`` names it across retries and replays.

    >>> r = ActionRequest("restart_pods", "checkout", "checkout", "f1", "restart:f1",
    ...                   "restart", {"replicas": 3})
    >>> ActionRequest.from_json(r.to_json()) == r
    True
    >>> ActionRequest.from_json(b'{"action": "x"}')
    Traceback (most recent call last):
    ...
    ValueError: action request: missing field 'target'
    """

    action: str
    target: str
    service: str
    finding_id: str
    idempotency_key: str
    rule: str
    params: dict[str, Any] = field(default_factory=dict)  # JSON-able
    # The governed request behind it (``{"request": Request.to_dict(), "rollback_of": id}``),
    # so the outcome can be audited, verified and paged with context after a restart.
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object sent to executors."""
        return {name: getattr(self, name) for name in (*_FIELDS, *_OPTIONAL)}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> ActionRequest:
        """Parse :meth:`to_json` output; a missing or mistyped field raises ValueError."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"action request: not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"action request: expected an object, got {type(raw).__name__}")
        for name in _FIELDS:
            if name not in raw:
                raise ValueError(f"action request: missing field {name!r}")
        if not isinstance(raw["params"], dict):
            raise ValueError("action request: field 'params' must be an object")
        context = raw.get("context", {})
        if not isinstance(context, dict):
            raise ValueError("action request: field 'context' must be an object")
        strings = {n: raw[n] for n in _FIELDS if n != "params"}
        for name, value in strings.items():
            if not isinstance(value, str):
                raise ValueError(f"action request: field {name!r} must be a string")
        return cls(**strings, params=raw["params"], context=context)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What came of an action: ``ok``, the receiver's status, a short detail, the latency.

    >>> ActionResult.from_dict(ActionResult(True, 202, "accepted", 0.1).to_dict())
    ActionResult(ok=True, status=202, detail='accepted', latency_s=0.1)
    """

    ok: bool
    status: int | None
    detail: str
    latency_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "detail": self.detail,
                "latency_s": self.latency_s}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ActionResult:
        status = raw["status"]
        return cls(bool(raw["ok"]), None if status is None else int(status),
                   str(raw["detail"]), float(raw["latency_s"]))


class Executor(Protocol):
    """Carries out one action; says whether a failure is worth retrying.

    ``execute`` returns an ``ok`` :class:`ActionResult` when the receiver accepted the
    action and *raises* otherwise: :class:`~escalation.errors.RetryableDeliveryError` (5xx,
    429, timeouts, connection errors) or :class:`~escalation.errors.PermanentDeliveryError`
    (other 4xx). Raising — rather than returning a failed result — lets the one retry stage
    classify pagers and executors alike; the runner builds the failed result. It must send
    ``idempotency_key`` so that a retried or replayed request is applied once.
    """

    @property
    def name(self) -> str: ...

    async def execute(self, req: ActionRequest) -> ActionResult: ...
