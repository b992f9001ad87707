"""Alertmanager API v2 pager: ``POST /api/v2/alerts``, so an existing routing tree takes the page.

Labels identify an alert in Alertmanager (dedup, grouping, inhibition, silences, routes),
so they hold only what stays the same over an incident's pages: ``alertname``
(``hotpath_<metric>``), ``service``, ``metric``, ``severity``, the page's own labels (names
made valid: ``[a-zA-Z_][a-zA-Z0-9_]*``; a clash with ours gets a ``label_`` prefix) and
``hotpath_incident`` (the incident key, else the dedup key). Everything else is an
annotation: ``summary`` (≤ :data:`SUMMARY_CHARS`), ``description`` (the packed context as
text, ≤ :data:`DESCRIPTION_CHARS`), ``runbook_url``, ``dashboard`` (the chart), ``<link>_url``
per page link (``approve_url``, ``deny_url``, ``console_url``) and ``status`` for an
acknowledged page. ``generatorURL`` is the console link, else the chart.

Times are RFC 3339. ``startsAt`` is the finding's time; a trigger's ``endsAt`` is ``now`` plus
``firing_for_s``; a resolve's ``endsAt`` is ``now`` — never before ``startsAt``, which
Alertmanager refuses with a 400. Alertmanager has no acknowledge: an acknowledge re-sends the
firing alert (same labels, so no new notification) with ``status: acknowledged``.

>>> from escalation.page import _example
>>> [alert] = [postable_alert(_example(), now=60.0, firing_for_s=3600.0)]
>>> alert["labels"]
{'alertname': 'hotpath_m', 'service': 'svc', 'metric': 'm', 'severity': 'info', \
'hotpath_incident': 'hotpath-f1'}
>>> alert["startsAt"], alert["endsAt"]
('1970-01-01T00:00:01.000Z', '1970-01-01T01:01:00.000Z')
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from escalation.http_delivery import JsonEndpoint
from escalation.page import Page
from escalation.pagers.limits import truncate_text
from escalation.pagers.slack import ITEM_CHARS, inline, lines

# Alertmanager's own PagerDuty notifier cuts a summary at 1024 runes; a longer one would be
# cut downstream anyway, less visibly.
SUMMARY_CHARS = 1024
# Opsgenie's description limit, the smallest of the receivers a routing tree commonly feeds a
# description to; it also keeps what Alertmanager holds and gossips per alert modest.
DESCRIPTION_CHARS = 15000
# hotpath sends a trigger once and the resolve through the durable outbox; it does not
# re-send every minute as Prometheus does, so a firing alert must outlive a long incident.
# A day bounds how long an alert could fire if its resolve were never sent.
DEFAULT_FIRING_FOR_S = 86400.0

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_OURS = ("alertname", "service", "metric", "severity", "hotpath_incident")
# Context keys with an annotation or a line of their own in the description.
_SHOWN = frozenset({"what", "current", "baseline", "deviation", "confidence", "detectors",
                    "recent", "since", "sparkline", "automation", "owner", "runbook",
                    "chart_url", "changes", "suggested", "correlated", "correlated_more"})


def label_name(name: str) -> str:
    """``name`` made a valid label name: invalid characters become ``_``, a leading digit
    (or nothing) gets a ``_`` in front.

    >>> label_name("region"), label_name("k8s.pod-name"), label_name("2xx"), label_name("")
    ('region', 'k8s_pod_name', '_2xx', '_')
    """
    out = _INVALID.sub("_", name)
    return out if out and not out[0].isdigit() else "_" + out


def rfc3339(ts: float) -> str | None:
    """Unix seconds as RFC 3339 UTC with milliseconds; None if not a representable time.

    >>> rfc3339(1764132000.25), rfc3339(float("nan"))
    ('2025-11-26T04:40:00.250Z', None)
    """
    if not math.isfinite(ts):
        return None
    try:
        moment = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uri(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def labels_for(page: Page) -> dict[str, str]:
    """The alert's identifying labels (see the module docstring).

    >>> from escalation.page import _example
    >>> from dataclasses import replace
    >>> labels_for(replace(_example(), metric="http.p99", labels={"severity": "x", "a-b": "1"}))
    {'alertname': 'hotpath_http_p99', 'service': 'svc', 'metric': 'http.p99', \
'severity': 'info', 'hotpath_incident': 'hotpath-f1', 'a_b': '1', 'label_severity': 'x'}
    """
    labels = {
        "alertname": "hotpath_" + _INVALID.sub("_", page.metric) if page.metric else "hotpath",
        "service": page.service,
        "metric": page.metric,
        "severity": page.severity,
        "hotpath_incident": page.incident_key or page.dedup_key,
    }
    for raw in sorted(page.labels):
        name = label_name(raw)
        name = f"label_{name}" if name in _OURS else name
        labels.setdefault(name, page.labels[raw])  # two names sanitised alike: first wins
    return labels


def describe(page: Page) -> str:
    """The page's evidence and packed context as plain text (the summary is its own
    annotation), ≤ :data:`DESCRIPTION_CHARS`; one line per entry, ≤ ``ITEM_CHARS`` each.

    >>> from escalation.page import _example
    >>> print(describe(_example()))
    value 1 vs baseline 0.5 (deviation 2), confidence 50% (ewma)
    not automated: no remediation rule
    """
    ctx = page.context
    confidence = "?" if math.isnan(page.confidence) else f"{page.confidence:.0%}"
    out = [f"value {inline(page.value)} vs baseline {inline(page.baseline)} "
           f"(deviation {inline(page.deviation)}), confidence {confidence}"
           + (f" ({', '.join(page.detectors)})" if page.detectors else "")]
    for key, title in (("since", "since"), ("sparkline", "recent"), ("owner", "owner"),
                       ("runbook", "runbook")):
        value = ctx.get(key)
        if isinstance(value, dict) and key == "owner":  # {"team": ...}: the names say it
            value = ", ".join(inline(v) for v in value.values() if v not in (None, ""))
        if value not in (None, "", [], {}):
            out.append(f"{title}: {truncate_text(inline(value), ITEM_CHARS)}")
    auto = ctx.get("automation")
    if isinstance(auto, dict):
        out += [truncate_text(f"automation {k.replace('_', ' ')}: {inline(v)}", ITEM_CHARS)
                for k, v in auto.items() if v not in (None, "", [], {}) and k != "approval"]
        approval = auto.get("approval")
        if isinstance(approval, dict):
            expires = f" (expires {approval['expires']})" if approval.get("expires") else ""
            out.append(f"approval pending{expires}: see approve_url and deny_url")
    else:
        out += [f"automation tried: {page.action}"] if page.action else []
        out += ["not automated: " + "; ".join(page.reasons)] if page.reasons else []
    more = ctx.get("correlated_more")
    for key, title in (("changes", "recent changes"), ("suggested", "suggested next steps"),
                       ("correlated", "correlated findings")):
        if ctx.get(key) not in (None, "", [], {}):
            extra = more if key == "correlated" and isinstance(more, int) else 0
            out.append(f"{title}:")
            out += [f"- {truncate_text(e, ITEM_CHARS)}" for e in lines(ctx[key], more=extra)]
    out += [truncate_text(f"{k}: {inline(v)}", ITEM_CHARS) for k, v in ctx.items()
            if k not in _SHOWN]
    return truncate_text("\n".join(out), DESCRIPTION_CHARS)


def postable_alert(page: Page, now: float, firing_for_s: float = DEFAULT_FIRING_FOR_S,
                   ) -> dict[str, Any]:
    """The alert to post for ``page`` at wall-clock time ``now`` (pure)."""
    annotations = {
        "summary": truncate_text(page.summary or "(no summary)", SUMMARY_CHARS),
        "description": describe(page),
    }
    runbook, chart = page.context.get("runbook"), _uri(page.context.get("chart_url"))
    if isinstance(runbook, str) and runbook:
        annotations["runbook_url"] = runbook
    if chart is not None:
        annotations["dashboard"] = chart
    for name in sorted(page.links):
        annotations.setdefault(f"{label_name(name)}_url", page.links[name])
    if page.event == "acknowledge":
        annotations["status"] = "acknowledged"
    alert: dict[str, Any] = {"labels": labels_for(page), "annotations": annotations}
    starts = rfc3339(page.ts)
    if starts is not None:  # else Alertmanager takes its own now
        alert["startsAt"] = starts
    # endsAt before startsAt is a 400: a finding stamped ahead of our clock must not cause one.
    floor = max(now, page.ts) if starts is not None else now
    ends = rfc3339(floor if page.event == "resolve" else floor + firing_for_s)
    if ends is not None:
        alert["endsAt"] = ends
    generator = _uri(page.links.get("console")) or chart
    if generator is not None:
        alert["generatorURL"] = generator
    return alert


class AlertmanagerPager:
    """POSTs ``[postable_alert(page, clock())]`` to ``<base_url>/api/v2/alerts``.

    ``base_url`` is what Alertmanager serves under (``http://alertmanager:9093``, or with its
    ``--web.route-prefix``). 200 is delivered; 400 (an invalid alert) is permanent; 5xx and
    timeouts are retryable. ``clock`` is the wall clock (Unix seconds) for ``endsAt``.

    >>> import asyncio
    >>> async def url() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return AlertmanagerPager(s, "http://127.0.0.1:9093/").url
    >>> asyncio.run(url())
    'http://127.0.0.1:9093/api/v2/alerts'
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout_s: float = 5.0,  # Alertmanager answers in milliseconds; 5 s rides out a GC
        name: str = "alertmanager",
        *,
        clock: Callable[[], float] = time.time,
        firing_for_s: float = DEFAULT_FIRING_FOR_S,
    ) -> None:
        if not firing_for_s > 0:
            raise ValueError(f"alertmanager: firing_for_s must be > 0, got {firing_for_s}")
        self._endpoint = JsonEndpoint(session, base_url.rstrip("/") + "/api/v2/alerts",
                                      timeout_s)
        self._name = name
        self._clock = clock
        self._firing_for_s = firing_for_s

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return self._endpoint.url

    async def send(self, page: Page) -> None:
        alert = postable_alert(page, self._clock(), self._firing_for_s)
        await self._endpoint.post(orjson.dumps([alert]), page.dedup_key)
