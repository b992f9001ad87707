"""The context packed into every page: what the on-call engineer would otherwise gather.

:func:`build_context` is a pure function of a finding, what automation did about it
(:class:`Automation`), the service's catalogue entry, the other findings and the change
events the caller holds, and the time. Its :class:`PageContext` goes into
``Page.context`` as :meth:`PageContext.to_dict` — JSON-able, keys in a stable order, NaN as
``null`` — and each pager adapter renders it within its receiver's limits::

    what        service, metric, labels            since       first anomalous point (ISO)
    current / baseline / deviation / confidence / detectors
    sparkline   the recent values as one line      recent      the values themselves
    chart_url   the console's chart of the series
    correlated  other anomalous series of the same service or region, oldest first (≤ 10)
    changes     the service's changes just before the anomaly, newest first (≤ 5)
    automation  what it did, why it did not, approve/deny links when a person must decide
    owner       {team}                              runbook
    suggested   next actions derived from all of the above

>>> from escalation.catalogue import ServiceSpec
>>> f = Finding("f1", "search|error_ratio|", "search", "error_ratio", {}, 1764132000.0,
...             0.2, 0.01, 9.5, 0.93, ("ewma", "mad"), recent=(0.01, 0.01, 0.2))
>>> ctx = build_context(f, Automation(covered=False, did=None, why_not="no remediation rule"),
...                     now=1764132005.0, owner=ServiceSpec("search", team="discovery"))
>>> ctx.sparkline.strip(), ctx.since
('▁▁█', '2025-11-26T04:40:00Z')
>>> for s in ctx.suggested:
...     print(s)
no automation covers error_ratio on search: consider a remediation rule
no runbook for search: add one to the service catalogue
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from escalation.approval_tokens import iso_utc
from escalation.catalogue import ServiceSpec
from escalation.changes import ChangeEvent
from escalation.decision import Decision
from escalation.finding import Finding
from escalation.sparkline import DEFAULT_WIDTH, sparkline
from escalation.submission import SubmitStatus


@dataclass(frozen=True, slots=True)
class ContextSettings:
    # why: a cascade (a dependency slows, its callers time out) shows up within minutes;
    # 15 min either side catches it without pulling in the day's unrelated noise.
    correlate_window_s: float = 900.0
    # why: most bad deploys and flag flips show within the hour after they go out.
    changes_window_s: float = 3600.0
    # why: a page is read on a phone; ten lines of correlation is already a lot, and the
    # count of the rest says how wide the blast is.
    max_correlated: int = 10
    max_changes: int = 5  # why: the newest change is the usual suspect; five give history
    sparkline_width: int = DEFAULT_WIDTH


DEFAULT_SETTINGS = ContextSettings()


@dataclass(frozen=True, slots=True)
class Approval:
    """The approve/deny links of a pending approval (signed, single-use URLs)."""

    approve: str
    deny: str
    expires_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        expires = None if self.expires_at is None else iso_utc(self.expires_at)
        return {"approve": self.approve, "deny": self.deny, "expires": expires}


@dataclass(frozen=True, slots=True)
class Automation:
    """What automation did about a finding, or why it did not.

    Built from a decision by :func:`automation_of`; for a page about an action that ran and
    failed, the caller fills it in (``did="ran restart_pods on ...: HTTP 500"``).
    """

    covered: bool               # a remediation rule covers the finding
    did: str | None             # what automation did or asked for; None: nothing
    why_not: str                # why it did not act (the decision's reason text)
    rule: str | None = None
    action: str | None = None
    target: str | None = None
    status: str | None = None   # the control plane's answer (SubmitStatus value)
    approval: Approval | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"did": self.did, "why_not": self.why_not, "rule": self.rule,
                "action": self.action, "target": self.target, "status": self.status,
                "approval": None if self.approval is None else self.approval.to_dict()}


_DID = {
    SubmitStatus.QUEUED: "queued {action} on {target}",
    SubmitStatus.PENDING_APPROVAL: "requested {action} on {target}; waiting for approval",
    SubmitStatus.REFUSED: "requested {action} on {target}; refused",
    SubmitStatus.DRY_RUN: "dry run: would have run {action} on {target}",
    SubmitStatus.DUPLICATE: "{action} on {target} was requested before (a replay)",
}


def automation_of(d: Decision, links: Mapping[str, str] | None = None) -> Automation:
    """What automation did for a decision; ``links`` are the control plane's approve/deny
    URLs (``ControlPlane.approval_links``), used only while the approval is pending.

    >>> from escalation.decision import DecisionKind, Reason
    >>> f = Finding("f1", "k", "search", "error_ratio", {}, 0.0, 0.2, 0.01, 9.0, 0.95, ())
    >>> automation_of(Decision(DecisionKind.PAGE, (Reason.NO_RULE,), f)).to_dict()["why_not"]
    'no remediation rule'
    """
    rule = d.rule
    sub = d.submission
    target = None if rule is None else rule.target_for(d.finding)
    did = None
    approval = None
    if sub is not None and rule is not None:
        did = _DID[sub.status].format(action=rule.action, target=target)
        pending = sub.status is SubmitStatus.PENDING_APPROVAL
        if pending and links and "approve" in links and "deny" in links:
            approval = Approval(links["approve"], links["deny"], sub.approval_expires_at)
    queued = sub is not None and sub.status is SubmitStatus.QUEUED
    return Automation(
        covered=rule is not None, did=did, why_not="" if queued else d.reason_text,
        rule=None if rule is None else rule.name, action=None if rule is None else rule.action,
        target=target, status=None if sub is None else sub.status.value, approval=approval)


@dataclass(frozen=True, slots=True)
class Correlated:
    """Another anomalous series near the finding (one entry per series)."""

    service: str
    metric: str
    region: str | None
    value: float       # at its latest finding
    baseline: float
    since: float       # its first anomalous point within the window

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "metric": self.metric, "region": self.region,
                "value": _json(self.value), "baseline": _json(self.baseline),
                "since": iso_utc(self.since)}


@dataclass(frozen=True, slots=True)
class PageContext:
    service: str
    metric: str
    labels: dict[str, str]
    since: str                   # first anomalous point, ISO 8601 UTC
    current: float
    baseline: float              # NaN when unknown
    deviation: float
    confidence: float
    detectors: tuple[str, ...]
    sparkline: str
    recent: tuple[float, ...]
    chart_url: str               # "" when no console URL is configured
    correlated: tuple[Correlated, ...]
    correlated_more: int         # correlated series left out by the cap
    changes: tuple[tuple[ChangeEvent, float], ...]  # (change, seconds before `since`)
    automation: Automation
    team: str
    runbook: str
    suggested: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, stable key order, NaN/inf as ``None``."""
        return {
            "what": {"service": self.service, "metric": self.metric,
                     "labels": dict(sorted(self.labels.items()))},
            "since": self.since,
            "current": _json(self.current),
            "baseline": _json(self.baseline),
            "deviation": _json(self.deviation),
            "confidence": _json(self.confidence),
            "detectors": list(self.detectors),
            "sparkline": self.sparkline,
            "recent": [_json(v) for v in self.recent],
            "chart_url": self.chart_url,
            "correlated": [c.to_dict() for c in self.correlated],
            "correlated_more": self.correlated_more,
            "changes": [{**ev.to_dict(), "before_s": round(before, 1)}
                        for ev, before in self.changes],
            "automation": self.automation.to_dict(),
            "owner": {"team": self.team},
            "runbook": self.runbook,
            "suggested": list(self.suggested),
        }


def chart_url(console_url: str, key: str) -> str:
    """The console's chart of one series ("" without a console URL).

    >>> chart_url("https://hotpath.example/", "checkout|error_ratio|region=eu")
    'https://hotpath.example/chart?series=checkout%7Cerror_ratio%7Cregion%3Deu'
    """
    if not console_url:
        return ""
    return f"{console_url.rstrip('/')}/chart?{urlencode({'series': key})}"


def build_context(f: Finding, automation: Automation, *, now: float, owner: ServiceSpec,
                  console_url: str = "", candidates: Iterable[Finding] = (),
                  changes: Iterable[ChangeEvent] = (),
                  settings: ContextSettings = DEFAULT_SETTINGS) -> PageContext:
    """The page's context for finding ``f`` (pure; ``now`` is the decision time).

    ``candidates`` are the other findings the caller holds (this batch's, recent ones);
    ``changes`` the change events it holds (``RecentChanges.for_service``): both are
    filtered here, so passing more than needed is harmless.
    """
    start = f.first_seen if f.first_seen is not None else f.ts
    correlated = _correlated(f, candidates, settings.correlate_window_s)
    kept = tuple(correlated[: settings.max_correlated])
    recent_changes = sorted(
        (ev for ev in changes if ev.service == f.service
         and start - settings.changes_window_s <= ev.ts <= f.ts),
        key=lambda ev: ev.ts, reverse=True)[: settings.max_changes]
    ctx = PageContext(
        service=f.service, metric=f.metric, labels=dict(f.labels), since=iso_utc(start),
        current=f.value, baseline=f.baseline, deviation=f.deviation,
        confidence=f.confidence, detectors=tuple(f.detectors),
        sparkline=sparkline(f.recent, settings.sparkline_width),
        recent=tuple(f.recent[-settings.sparkline_width:]),
        chart_url=chart_url(console_url, f.series_key),
        correlated=kept, correlated_more=len(correlated) - len(kept),
        changes=tuple((ev, start - ev.ts) for ev in recent_changes),
        automation=automation, team=owner.team, runbook=owner.runbook)
    return replace(ctx, suggested=_suggest(ctx, f, correlated, now))


def _correlated(f: Finding, candidates: Iterable[Finding], window_s: float) -> list[Correlated]:
    """One entry per other series of the same service or region, oldest first."""
    region = f.labels.get("region") or None
    first: dict[str, float] = {}
    latest: dict[str, Finding] = {}
    for c in candidates:
        if c.series_key == f.series_key or abs(c.ts - f.ts) > window_s:
            continue
        if c.service != f.service and (region is None or c.labels.get("region") != region):
            continue
        began = c.first_seen if c.first_seen is not None else c.ts
        first[c.series_key] = min(first.get(c.series_key, began), began)
        if c.series_key not in latest or c.ts > latest[c.series_key].ts:
            latest[c.series_key] = c
    out = [Correlated(c.service, c.metric, c.labels.get("region") or None, c.value,
                      c.baseline, first[key]) for key, c in latest.items()]
    out.sort(key=lambda c: (c.since, c.service, c.metric, c.region or ""))
    return out


def _suggest(ctx: PageContext, f: Finding, correlated: list[Correlated],
             now: float) -> tuple[str, ...]:
    """Next actions, most actionable first: a decision waiting for this person, the
    likeliest cause, the scope, what automation could not do, then where to read more."""
    out: list[str] = []
    auto = ctx.automation
    what = f"{auto.action} on {auto.target}"
    if auto.approval is not None:
        expires = auto.approval.expires_at
        left = f" (expires in {_span(expires - now)})" if expires and expires > now else ""
        out.append(f"approve or deny the pending {what}{left}")
    if ctx.changes:
        ev, before = ctx.changes[0]
        when = (f"{_span(before)} before the anomaly" if before >= 0
                else f"{_span(-before)} after the anomaly began")
        if ev.kind == "deploy":
            version = f" {ev.version}" if ev.version else ""
            out.append(f"a deploy of {ev.service}{version} went out {when}: "
                       "consider rolling it back")
        else:
            about = f" ({ev.description or ev.version})" if ev.description or ev.version else ""
            out.append(f"a {ev.kind} change to {ev.service}{about} was made {when}: "
                       "consider reverting it")
    others = sorted({c.service for c in correlated if c.service != f.service})
    if others:
        names = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        out.append(f"{_n(len(correlated), 'other series')} in {_n(len(others), 'other service')}"
                   f" ({names}) {_are(len(correlated))} anomalous too: look for a shared cause "
                   "first")
    elif correlated:
        out.append(f"{_n(len(correlated), 'other metric')} of {f.service} "
                   f"{_are(len(correlated))} anomalous too: treat them as one incident")
    if not auto.covered:
        out.append(f"no automation covers {f.metric} on {f.service}: "
                   "consider a remediation rule")
    elif auto.status is None and auto.action is not None:
        out.append(f"confidence {f.confidence:.2f} is below rule {auto.rule}'s automation "
                   f"threshold: confirm the anomaly, then request {what} by hand if it fits")
    elif auto.status == SubmitStatus.REFUSED.value:
        out.append(f"automation's {what} was refused: request it by hand if it is still "
                   "the right fix")
    elif auto.status == SubmitStatus.DRY_RUN.value:
        out.append(f"policy is in dry run, so {what} did not run: request it by hand if "
                   "it is right")
    if not math.isfinite(f.baseline):
        out.append("no baseline yet (a new or sparse series): judge the value against the "
                   "sparkline and the chart")
    if ctx.runbook:
        out.append(f"check the runbook: {ctx.runbook}")
    else:
        out.append(f"no runbook for {f.service}: add one to the service catalogue")
    if not ctx.team:
        out.append(f"no owner team for {f.service}: add one to the service catalogue")
    return tuple(out)


def _span(seconds: float) -> str:
    """A duration as a person says it.

    >>> [_span(s) for s in (42, 180, 5400, 9000)]
    ['42 s', '3 min', '1.5 h', '2.5 h']
    """
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 or noun.endswith("series") else f"{count} {noun}s"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _json(x: float) -> float | None:
    return x if math.isfinite(x) else None
