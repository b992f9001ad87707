"""PagerDuty Events API v2: trigger, acknowledge and resolve alerts by dedup key.

``POST https://events.pagerduty.com/v2/enqueue`` with the routing (integration) key in the
body. A trigger carries the summary (≤ 1024 characters), source, severity, timestamp,
component, group, class, ``custom_details`` (the page's evidence and packed context), links
and an optional image; acknowledge and resolve carry only the routing key, the action and
the dedup key. The whole event stays under :data:`MAX_EVENT_BYTES`: the summary is cut with
``…`` and the details are shrunk largest field first, so an oversized page never earns a 400.

Answers: 202 delivered; 400 invalid event (permanent); 429 rate limited (about 120 events a
minute per routing key) and 5xx retryable — :mod:`escalation.http_delivery` classifies them.

>>> from escalation.page import _example
>>> event = pagerduty_event(_example(), "R" * 32)
>>> event["event_action"], event["dedup_key"], event["payload"]["severity"]
('trigger', 'hotpath-f1', 'info')
>>> event["payload"]["source"], event["payload"]["timestamp"]
('svc', '1970-01-01T00:00:01.000+00:00')
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from escalation.http_delivery import JsonEndpoint
from escalation.page import Page
from escalation.pagers.limits import (
    json_size,
    page_details,
    shorten_key,
    shrink_json,
    truncate_text,
)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

ROUTING_KEY_CHARS = 32  # the API rejects any other length ("should be 32 characters")
SUMMARY_MAX_CHARS = 1024
DEDUP_KEY_MAX_CHARS = 255

# The documented cap is "512 KB"; read as 512 000 bytes, the smaller of the two readings, so
# the event fits whichever one the receiver applies.
MAX_EVENT_BYTES = 512_000

# A page with more links than this is unreadable on a phone; URLs longer than 2048 chars are
# not reliably opened by browsers. Both also bound the bytes links can take from the details.
MAX_LINKS = 20
MAX_URL_CHARS = 2048


def event_key(page: Page) -> str:
    """The dedup key PagerDuty folds events by: the incident's, else the page's (≤ 255).

    >>> from escalation.page import _example
    >>> event_key(_example())
    'hotpath-f1'
    """
    return shorten_key(page.incident_key or page.dedup_key, DEDUP_KEY_MAX_CHARS)


def pagerduty_event(
    page: Page,
    routing_key: str,
    *,
    client: str = "hotpath",
    client_url: str | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> dict[str, Any]:
    """The Events v2 body for ``page`` (pure); its compact JSON is at most ``max_bytes``."""
    key = event_key(page)
    if page.event != "trigger":
        return {"routing_key": routing_key, "event_action": page.event, "dedup_key": key}
    payload: dict[str, Any] = {
        "summary": truncate_text(page.summary, SUMMARY_MAX_CHARS),
        "source": page.service or client,  # required and non-empty
        "severity": page.severity,
    }
    timestamp = _iso8601(page.ts) or _iso8601(page.created)
    if timestamp:
        payload["timestamp"] = timestamp
    if page.metric:
        payload["component"] = page.metric
        payload["class"] = page.metric
    group = page.labels.get("region") or page.service
    if group:
        payload["group"] = group
    payload["custom_details"] = {}
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": payload,
    }
    links = _links(page)
    if links:
        event["links"] = links
    images = _images(page)
    if images:
        event["images"] = images
    event["client"] = client
    if client_url:
        event["client_url"] = client_url
    # Everything but the details is bounded above; the details get what is left ("{}" is
    # already counted, hence + 2).
    budget = max(max_bytes - json_size(event) + 2, 2)
    payload["custom_details"] = shrink_json(page_details(page), budget)
    return event


class PagerDutyPager:
    """Sends pages as Events API v2 events to one routing key.

    >>> import asyncio
    >>> async def name() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return PagerDutyPager(s, "R" * 32).name
    >>> asyncio.run(name())
    'pagerduty'
    >>> PagerDutyPager(None, "short")  # type: ignore[arg-type]
    Traceback (most recent call last):
    ...
    ValueError: PagerDuty routing key must be 32 characters, got 5
    """

    # PagerDuty answers 429 past about 120 events a minute per routing key: the sender
    # waits for a token instead (escalation.rate_limit.declared_limit reads this).
    rate_per_min = 120.0

    def __init__(
        self,
        session: aiohttp.ClientSession,
        routing_key: str,
        *,
        url: str = EVENTS_URL,
        timeout_s: float = 5.0,  # the API answers in < 1 s; 5 s rides out a slow moment
        client: str = "hotpath",
        client_url: str | None = None,
        name: str = "pagerduty",
    ) -> None:
        # A wrong key would earn a 400 on every page: refuse it when the config is loaded.
        if len(routing_key) != ROUTING_KEY_CHARS:
            raise ValueError(
                f"PagerDuty routing key must be {ROUTING_KEY_CHARS} characters, "
                f"got {len(routing_key)}"
            )
        self._endpoint = JsonEndpoint(session, url, timeout_s)
        self._routing_key = routing_key
        self._client = client
        self._client_url = client_url
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        event = pagerduty_event(
            page, self._routing_key, client=self._client, client_url=self._client_url
        )
        # trigger and resolve share the dedup key, so the idempotency key names the action too
        await self._endpoint.post(
            orjson.dumps(event), f"{event['dedup_key']}:{event['event_action']}"
        )


def _iso8601(ts: float) -> str | None:
    if not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def _usable(url: object) -> bool:
    return (isinstance(url, str) and url.startswith(("https://", "http://"))
            and len(url) <= MAX_URL_CHARS)


def _links(page: Page) -> list[dict[str, str]]:
    links = [{"href": url, "text": name} for name, url in page.links.items() if _usable(url)]
    chart = page.context.get("chart_url")
    if _usable(chart) and all(link["href"] != chart for link in links):
        links.append({"href": str(chart), "text": "chart"})
    return links[:MAX_LINKS]


def _images(page: Page) -> list[dict[str, str]]:
    # Only a rendered image: a text sparkline ("▁▂▇") stays in custom_details.
    for key in ("sparkline_url", "sparkline"):
        src = page.context.get(key)
        if _usable(src):
            image = {"src": str(src), "alt": f"{page.service} {page.metric} sparkline".strip()}
            chart = page.context.get("chart_url")
            if _usable(chart):
                image["href"] = str(chart)
            return [image]
    return []
