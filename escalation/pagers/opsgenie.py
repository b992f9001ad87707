"""Opsgenie Alert API: create, acknowledge and close alerts by alias.

* trigger → ``POST {api}/v2/alerts`` with ``message`` (≤ 130 chars), ``alias`` (≤ 512),
  ``description`` (≤ 15000), ``tags`` (≤ 20 × 50), ``details`` (string map, ≤ 8000 chars in
  all), ``entity`` (≤ 512), ``source`` (≤ 100), ``priority`` P1–P5 and the configured
  ``responders``;
* acknowledge → ``POST {api}/v2/alerts/{alias}/acknowledge?identifierType=alias``;
* resolve → ``POST {api}/v2/alerts/{alias}/close?identifierType=alias``.

Every request carries ``Authorization: GenieKey <key>``. Text is cut with ``…`` and the
details shrunk largest field first, so an oversized page never earns a 422. Answers: 202
delivered; 400/401/422 permanent; 429 and 5xx retryable (:mod:`escalation.http_delivery`).

>>> from escalation.page import _example
>>> alert = opsgenie_alert(_example())
>>> alert["message"], alert["alias"], alert["priority"], alert["tags"]
('s', 'hotpath-f1', 'P5', ['hotpath', 'info', 'service:svc', 'metric:m'])
>>> from dataclasses import replace
>>> opsgenie_path(replace(_example(), event="resolve"))
'/v2/alerts/hotpath-f1/close?identifierType=alias'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from escalation.http_delivery import post_json
from escalation.page import Page, Severity
from escalation.pagers.limits import page_details, shorten_key, shrink_json, truncate_text

API_URL = "https://api.opsgenie.com"  # EU accounts use https://api.eu.opsgenie.com

MESSAGE_MAX_CHARS = 130
ALIAS_MAX_CHARS = 512
DESCRIPTION_MAX_CHARS = 15_000
DETAILS_MAX_CHARS = 8_000
ENTITY_MAX_CHARS = 512
SOURCE_MAX_CHARS = 100
NOTE_MAX_CHARS = 25_000
TAGS_MAX = 20
TAG_MAX_CHARS = 50

# Opsgenie's P4 sits between warning and info; nothing we page is "low but not info".
PRIORITY: dict[Severity, str] = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}


def alert_alias(page: Page) -> str:
    """The alias Opsgenie folds alerts by: the incident's key, else the page's (≤ 512).

    >>> from escalation.page import _example
    >>> alert_alias(_example())
    'hotpath-f1'
    """
    return shorten_key(page.incident_key or page.dedup_key, ALIAS_MAX_CHARS)


def opsgenie_path(page: Page) -> str:
    """Path and query the page's event goes to (create, acknowledge or close by alias)."""
    if page.event == "trigger":
        return "/v2/alerts"
    verb = "close" if page.event == "resolve" else "acknowledge"
    return f"/v2/alerts/{quote(alert_alias(page), safe='')}/{verb}?identifierType=alias"


def opsgenie_alert(
    page: Page,
    *,
    source: str = "hotpath",
    responders: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The create-alert body for a trigger page (pure), inside every documented limit."""
    alert: dict[str, Any] = {
        "message": truncate_text(page.summary, MESSAGE_MAX_CHARS),
        "alias": alert_alias(page),
        "description": truncate_text(describe(page), DESCRIPTION_MAX_CHARS),
    }
    if responders:
        alert["responders"] = [dict(r) for r in responders]
    alert["tags"] = _tags(page)
    alert["details"] = _details(page)
    if page.service:
        alert["entity"] = truncate_text(page.service, ENTITY_MAX_CHARS)
    alert["source"] = truncate_text(source, SOURCE_MAX_CHARS)
    alert["priority"] = PRIORITY[page.severity]
    return alert


def opsgenie_followup(page: Page, *, source: str = "hotpath") -> dict[str, Any]:
    """The body of an acknowledge or close request: who sends it and why (pure)."""
    return {
        "source": truncate_text(source, SOURCE_MAX_CHARS),
        "note": truncate_text(page.summary, NOTE_MAX_CHARS),
    }


def describe(page: Page) -> str:
    """The page as plain text for the alert's description (not yet cut to the limit).

    >>> from escalation.page import _example
    >>> print(describe(_example()))
    s
    <BLANKLINE>
    value 1 vs baseline 0.5 (deviation 2), confidence 0.50, detectors: ewma
    why a human: no remediation rule
    """
    lines = [
        page.summary,
        "",
        f"value {_num(page.value)} vs baseline {_num(page.baseline)} "
        f"(deviation {_num(page.deviation)}), confidence {page.confidence:.2f}, "
        f"detectors: {', '.join(page.detectors) or 'none'}",
    ]
    if page.reasons:
        lines.append(f"why a human: {'; '.join(page.reasons)}")
    if page.action:
        lines.append(f"automation tried: {page.action}")
    lines.extend(f"{name}: {url}" for name, url in page.links.items())
    for key, value in page.context.items():
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


class OpsgeniePager:
    """Sends pages to the Opsgenie Alert API with one API key.

    >>> import asyncio
    >>> async def name() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return OpsgeniePager(s, "key").name
    >>> asyncio.run(name())
    'opsgenie'
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        *,
        api_url: str = API_URL,
        timeout_s: float = 5.0,  # the API answers in < 1 s; 5 s rides out a slow moment
        source: str = "hotpath",
        responders: Sequence[Mapping[str, str]] = (),
        name: str = "opsgenie",
    ) -> None:
        if not api_key:
            raise ValueError("Opsgenie API key is empty")
        self._session = session
        self._headers = {"Authorization": f"GenieKey {api_key}"}
        self._api_url = api_url.rstrip("/")
        self._timeout_s = timeout_s
        self._source = source
        self._responders = tuple(dict(r) for r in responders)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        if page.event == "trigger":
            body = opsgenie_alert(page, source=self._source, responders=self._responders)
        else:
            body = opsgenie_followup(page, source=self._source)
        await post_json(
            self._session, self._api_url + opsgenie_path(page), orjson.dumps(body),
            idempotency_key=f"{alert_alias(page)}:{page.event}", timeout_s=self._timeout_s,
            headers=self._headers,
        )


def _num(x: float) -> str:
    return "?" if math.isnan(x) else f"{x:.3g}"


def _tags(page: Page) -> list[str]:
    raw = ["hotpath", page.severity, f"service:{page.service}", f"metric:{page.metric}"]
    raw += [f"{k}:{page.labels[k]}" for k in sorted(page.labels)]
    tags: list[str] = []
    for tag in raw:
        cut = truncate_text(tag, TAG_MAX_CHARS)
        if cut not in tags:
            tags.append(cut)
    return tags[:TAGS_MAX]


def _details(page: Page) -> dict[str, str]:
    # Opsgenie wants a string→string map. Shrinking the structured details to N bytes of
    # JSON first bounds the flat map by N characters too (a flattened key or value never has
    # more characters than its JSON has bytes), and keeps each value valid JSON.
    fitted = shrink_json(page_details(page), DETAILS_MAX_CHARS)
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in fitted.items()}

