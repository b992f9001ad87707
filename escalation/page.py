"""A page: what a human is told when automation did not (or could not) handle a finding.

A :class:`Page` is a frozen value built by a pure function from a :class:`Decision`. Its
``dedup_key`` derives from the finding id, so a finding replayed after a crash produces the
same key and the receiver (PagerDuty-style) folds both into one incident.

>>> from escalation.decision import Decision, DecisionKind, Reason
>>> from escalation.finding import Finding
>>> f = Finding("abc", "k", "checkout", "error_ratio", {}, 10.0, 0.21, 0.004, 12.3, 0.97,
...             ("ewma",), recent=(0.003, 0.21))
>>> d = Decision(DecisionKind.PAGE, (Reason.RULE_MATCHED, Reason.BUDGET_EXHAUSTED), f)
>>> p = page_from_decision(d, now=11.0)
>>> p.dedup_key, p.severity
('hotpath-abc', 'critical')
>>> p.summary
'checkout error_ratio 0.21 vs baseline 0.004 (dev 12.3) — budget exhausted'
>>> Page.from_json(p.to_json()) == p
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from escalation.decision import Decision, DecisionKind, Reason
from escalation.executors.base import ActionRequest, ActionResult
from escalation.request import Request

Severity = Literal["critical", "error", "warning", "info"]

# Confidence → severity (the PagerDuty Events v2 scale). 0.95 is where two or more detectors
# agree strongly in practice; 0.85 one strong detector; 0.7 is the usual page threshold, so
# anything paged below it was paged for another reason (e.g. an action failed) and is "info".
_SEVERITY_FLOORS: tuple[tuple[float, Severity], ...] = (
    (0.95, "critical"),
    (0.85, "error"),
    (0.7, "warning"),
)

# A page carries the series' recent values so the human sees the shape without a dashboard;
# 30 points is about a sparkline's worth and keeps the payload well under receivers' limits.
RECENT_MAX = 30

_FIELDS = (
    "dedup_key", "summary", "severity", "service", "metric", "labels", "value", "baseline",
    "deviation", "confidence", "detectors", "reasons", "recent", "finding_id", "ts",
    "created", "action",
)


def severity_for(confidence: float) -> Severity:
    """Severity of a page from the finding's confidence.

    >>> [severity_for(c) for c in (0.99, 0.9, 0.75, 0.3)]
    ['critical', 'error', 'warning', 'info']
    """
    for floor, severity in _SEVERITY_FLOORS:
        if confidence >= floor:
            return severity
    return "info"


def dedup_key_for(finding_id: str) -> str:
    """The receiver-side dedup key of the page about one finding.

    >>> dedup_key_for("f1")
    'hotpath-f1'
    """
    return f"hotpath-{finding_id}"


@dataclass(frozen=True, slots=True)
class Page:
    """Everything the on-call engineer needs, in one JSON-able value."""

    dedup_key: str
    summary: str
    severity: Severity
    service: str
    metric: str
    labels: dict[str, str]
    value: float
    baseline: float            # NaN when unknown (travels as JSON null)
    deviation: float
    confidence: float
    detectors: tuple[str, ...]
    reasons: tuple[str, ...]   # Reason.value strings: why automation did not act
    recent: tuple[float, ...]  # last <= RECENT_MAX values, oldest first
    finding_id: str
    ts: float                  # event time of the finding
    created: float             # decision time
    action: str | None         # what automation tried, if anything
    # approve/deny (and later console) URLs; empty for pages that ask nothing of the human
    links: dict[str, str] = field(default_factory=dict)
    # What the receiver is told to do with the incident this page belongs to.
    event: Literal["trigger", "acknowledge", "resolve"] = "trigger"
    # The incident's key (findings grouped by service/metric family/region); "" = the page
    # is its own incident (dedup_key).
    incident_key: str = ""
    # The packed context (escalation.context.PageContext.to_dict()): what, since when,
    # baseline, sparkline, correlated findings, recent changes, automation, owner, runbook,
    # suggested actions. JSON-able; adapters render it within their receiver's limits.
    context: dict[str, Any] = field(default_factory=dict)
    # Which pagers get it (an on-call level's receivers); empty: every pager.
    receivers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object sent to receivers (field order as declared; NaN → null).

        >>> sorted(_example().to_dict())[:3]
        ['action', 'baseline', 'confidence']
        """
        out = {name: getattr(self, name) for name in _FIELDS}
        out["links"] = dict(self.links)
        out["event"] = self.event
        out["incident_key"] = self.incident_key
        out["context"] = dict(self.context)
        out["receivers"] = list(self.receivers)
        for name in ("value", "baseline", "deviation"):
            if math.isnan(out[name]):
                out[name] = None
        return out

    def to_json(self) -> bytes:
        """Compact JSON bytes (orjson).

        >>> _example().to_json()[:28]
        b'{"dedup_key":"hotpath-f1","s'
        """
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> Page:
        """Parse :meth:`to_json` output; a missing or mistyped field raises ValueError.

        >>> Page.from_json(b'{"dedup_key": "x"}')
        Traceback (most recent call last):
        ...
        ValueError: page: missing field 'summary'
        """
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"page: not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"page: expected an object, got {type(raw).__name__}")
        for name in _FIELDS:
            if name not in raw:
                raise ValueError(f"page: missing field {name!r}")
        try:
            return cls(
                dedup_key=str(raw["dedup_key"]),
                summary=str(raw["summary"]),
                severity=_severity(raw["severity"]),
                service=str(raw["service"]),
                metric=str(raw["metric"]),
                labels={str(k): str(v) for k, v in dict(raw["labels"]).items()},
                value=_float(raw["value"]),
                baseline=_float(raw["baseline"]),
                deviation=_float(raw["deviation"]),
                confidence=float(raw["confidence"]),
                detectors=tuple(str(d) for d in raw["detectors"]),
                reasons=tuple(str(r) for r in raw["reasons"]),
                recent=tuple(float(v) for v in raw["recent"]),
                finding_id=str(raw["finding_id"]),
                ts=float(raw["ts"]),
                created=float(raw["created"]),
                action=None if raw["action"] is None else str(raw["action"]),
                links={str(k): str(v) for k, v in dict(raw.get("links") or {}).items()},
                event=_event(raw.get("event", "trigger")),
                incident_key=str(raw.get("incident_key") or ""),
                context=dict(raw.get("context") or {}),
                receivers=tuple(str(r) for r in raw.get("receivers") or ()),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"page: bad field value: {e}") from None


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _event(v: Any) -> Literal["trigger", "acknowledge", "resolve"]:
    for e in ("trigger", "acknowledge", "resolve"):
        if v == e:
            return e
    raise ValueError(f"event {v!r} is not one of trigger, acknowledge, resolve")


def _severity(v: Any) -> Severity:
    for s in ("critical", "error", "warning", "info"):
        if v == s:
            return s
    raise ValueError(f"severity {v!r} is not one of critical, error, warning, info")


def _num(x: float) -> str:
    return "?" if math.isnan(x) else f"{x:.3g}"


def page_from_decision(decision: Decision, now: float) -> Page:
    """The page for a decision (pure). ``now`` is the decision time.

    ``action`` is the rule's action only when the decision was to act — a page about an
    action that ran and failed or did not help; a PAGE decision means automation never ran.
    The summary ends with the last reason: decide/settle append the deciding one last.
    """
    f = decision.finding
    reasons = tuple(r.value for r in decision.reasons)
    labels = ",".join(f"{k}={f.labels[k]}" for k in sorted(f.labels))
    series = f"{f.service} {f.metric}" + (f"{{{labels}}}" if labels else "")
    summary = (
        f"{series} {_num(f.value)} vs baseline {_num(f.baseline)} (dev {_num(f.deviation)})"
    )
    if reasons:
        summary += f" — {reasons[-1]}"
    rule = decision.rule if decision.kind is DecisionKind.ACT else None
    return Page(
        dedup_key=dedup_key_for(f.finding_id),
        summary=summary,
        severity=severity_for(f.confidence),
        service=f.service,
        metric=f.metric,
        labels=dict(f.labels),
        value=f.value,
        baseline=f.baseline,
        deviation=f.deviation,
        confidence=f.confidence,
        detectors=tuple(f.detectors),
        reasons=reasons,
        recent=tuple(f.recent[-RECENT_MAX:]),
        finding_id=f.finding_id,
        ts=f.ts,
        created=now,
        action=rule.action if rule is not None else None,
    )


def request_page(req: Request, reason: str, now: float,
                 links: dict[str, str] | None = None) -> Page:
    """The page about a governed request (an agent's or a person's, or automation's after
    the fact), built from the request alone so it can be sent after a restart (pure).

    >>> from escalation.request import Actor, ActorKind
    >>> req = Request(Actor(ActorKind.AGENT, "copilot"), "scale_out", "payments",
    ...               "production", "deployment/payments", "k1", requested_at=5.0,
    ...               evidence={"metric": "queue_depth", "value": 900.0, "baseline": 40.0})
    >>> p = request_page(req, "approval required: risk high", 6.0)
    >>> print(p.summary)
    agent:copilot asks scale_out deployment/payments (payments) — approval required: risk high
    >>> p.dedup_key, p.metric, p.value, p.severity
    ('hotpath-req_6ab9f1eb8f7d3388', 'queue_depth', 900.0, 'warning')
    """
    ev = dict(req.evidence)
    return Page(
        dedup_key=dedup_key_for(req.request_id),
        summary=f"{req.actor} asks {req.action} {req.target} ({req.service}) — {reason}",
        severity=_severity(req.severity.label), service=req.service,
        metric=str(ev.get("metric", "")),
        labels={str(k): str(v) for k, v in dict(ev.get("labels") or {}).items()},
        value=_float(ev.get("value")), baseline=_float(ev.get("baseline")),
        deviation=_float(ev.get("deviation")), confidence=_float(ev.get("confidence", 0.0)),
        detectors=tuple(str(d) for d in ev.get("detectors") or ()), reasons=(reason,),
        recent=tuple(float(v) for v in ev.get("recent") or ())[-RECENT_MAX:],
        finding_id=req.finding_id or req.request_id, ts=req.event_ts or req.requested_at,
        created=now, action=req.action, links=dict(links or {}),
    )


def _example() -> Page:
    return Page("hotpath-f1", "s", "info", "svc", "m", {}, 1.0, 0.5, 2.0, 0.5, ("ewma",),
                ("no remediation rule",), (1.0,), "f1", 1.0, 2.0, None)


def failure_page(req: ActionRequest, result: ActionResult, now: float) -> Page:
    """The page for an automated action that did not succeed (pure).

    The finding's evidence travels with the request (``params["evidence"]``, written by the
    runtime when it queued the action), so the page can be built after a restart too.

    >>> req = ActionRequest("restart_pods", "deployment/checkout", "checkout", "f9", "r:f9",
    ...                     "restart", {"evidence": {"metric": "latency", "value": 900.0,
    ...                     "baseline": 200.0, "deviation": 11.0, "confidence": 0.99}})
    >>> p = failure_page(req, ActionResult(False, 500, "HTTP 500", 0.2), now=5.0)
    >>> for part in p.summary.split(" — "):
    ...     print(part)
    checkout latency 900 vs baseline 200
    remediation failed: restart_pods deployment/checkout (HTTP 500)
    >>> p.action, p.reasons, p.dedup_key
    ('restart_pods', ('remediation failed',), 'hotpath-f9')
    """
    ev: dict[str, Any] = dict(req.params.get("evidence") or {})
    metric = str(ev.get("metric", "?"))
    value, baseline = _float(ev.get("value")), _float(ev.get("baseline"))
    summary = (f"{req.service} {metric} {_num(value)} vs baseline {_num(baseline)} — "
               f"{Reason.ACTION_FAILED.value}: {req.action} {req.target} ({result.detail})")
    return Page(
        dedup_key=dedup_key_for(req.finding_id), summary=summary,
        severity=severity_for(_float(ev.get("confidence")) if "confidence" in ev else 1.0),
        service=req.service, metric=metric,
        labels={str(k): str(v) for k, v in dict(ev.get("labels") or {}).items()},
        value=value, baseline=baseline, deviation=_float(ev.get("deviation")),
        confidence=_float(ev.get("confidence")),
        detectors=tuple(str(d) for d in ev.get("detectors") or ()),
        reasons=(Reason.ACTION_FAILED.value,),
        recent=tuple(float(x) for x in (ev.get("recent") or ())[-RECENT_MAX:]),
        finding_id=req.finding_id, ts=_float(ev.get("ts")), created=now, action=req.action,
    )
