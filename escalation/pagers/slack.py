"""Slack pager: one incoming-webhook message per page, in Block Kit, inside Slack's limits.

A trigger reads top to bottom as the on-call engineer needs it: a header
``[CRITICAL] checkout error_ratio``; the summary; fields (value vs baseline, deviation,
confidence, detectors, since, labels, incident); the sparkline and a chart link; what
automation did or why it did not; owner and runbook; recent changes; suggested next actions;
correlated findings; any other context key; then one button per link (approve in green,
deny in red, acknowledge, console). ``resolve`` and ``acknowledge`` are one short line.
The context is :meth:`escalation.context.PageContext.to_dict`; its ``what``, ``current``,
``baseline``... are what the header and fields already say, from the page's own fields.

Slack refuses (400 ``invalid_blocks``) rather than truncates, so every text is cut to its
Block Kit limit here, lists show their first :data:`LIST_ITEMS` entries and a count of the
rest, and a message that would pass 50 blocks loses its lowest-priority blocks first (the
latest first within a priority), with a note saying how many.

>>> from escalation.page import _example
>>> msg = slack_message(_example())
>>> msg["text"], msg["blocks"][0]["text"]["text"]
('[INFO] svc m: s', '[INFO] svc m')
>>> [b["type"] for b in msg["blocks"]]
['header', 'section', 'section', 'section']
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from escalation.http_delivery import JsonEndpoint
from escalation.page import Page
from escalation.pagers.limits import ELLIPSIS, truncate_text

# Block Kit's documented limits (api.slack.com/reference/block-kit); Slack answers 400
# invalid_blocks past any of them.
MAX_BLOCKS = 50
HEADER_TEXT = 150
SECTION_TEXT = 3000
FIELDS = 10
FIELD_TEXT = 2000
CONTEXT_TEXT = 3000
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_URL = 3000
ACTION_ID = 255
BUTTON_VALUE = 2000

# The top-level text is the push notification and the screen-reader line: Slack takes 40000
# characters, but a phone shows about 150; 300 keeps the whole summary start readable.
FALLBACK_TEXT = 300
# A screenful on a phone: the rest of a long list is one click away in the console.
LIST_ITEMS = 10
# One list entry (a correlated finding, a change) is a line, not a document.
ITEM_CHARS = 300
# Owner and runbook share one section; each gets a third of it, so both always show.
OWNER_CHARS = 1000
LINK_URL = 1000

_ESSENTIAL, _USEFUL, _SUPPORTING, _BACKGROUND, _EXTRA = range(5)
# Context keys the layout shows (escalation.context.PageContext.to_dict); any other key gets
# a section of its own at the lowest priority.
_COVERED = frozenset({"what", "since", "current", "baseline", "deviation", "confidence",
                      "detectors", "sparkline", "recent", "chart_url", "correlated",
                      "correlated_more", "changes", "automation", "owner", "runbook",
                      "suggested"})
# Known links, in button order: label and style. Other links follow, sorted by name.
_BUTTONS: dict[str, tuple[str, str | None]] = {
    "approve": ("Approve", "primary"),
    "deny": ("Deny", "danger"),
    "ack": ("Acknowledge", None),
    "acknowledge": ("Acknowledge", None),
    "resolve": ("Resolve", None),
    "console": ("Open in console", None),
}
_TIME_KEYS = frozenset({"ts", "since", "at", "time", "when", "started"})


def mrkdwn(raw: str, limit: int) -> str:
    """``raw`` escaped for mrkdwn (``& < >`` as entities) and cut to ``limit`` characters
    without splitting an entity.

    >>> mrkdwn("a<b", 10), mrkdwn("ab<c", 4)
    ('a&lt;b', 'ab…')
    """
    text = raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 4))  # "&amp;" is 5 long: a split one starts here
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def _num(x: float) -> str:
    return "?" if math.isnan(x) else f"{x:.4g}"


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return _num(ts)


def _leaf(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and key in _TIME_KEYS:
        return _iso(float(value))
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, str | int):
        return str(value)
    if value is None:
        return "—"
    return orjson.dumps(value).decode()


def inline(value: Any) -> str:
    """One line for any JSON value: objects as ``key: value`` pairs, arrays comma-separated.

    >>> inline({"service": "api", "deviation": 5.25, "ts": 0, "tags": ["a"]})
    'service: api, deviation: 5.25, ts: 1970-01-01 00:00:00 UTC, tags: ["a"]'
    """
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_leaf(str(k), v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_leaf("", v) for v in value)
    return _leaf("", value)


def lines(value: Any, limit: int = LIST_ITEMS, more: int = 0) -> list[str]:
    """A list's first ``limit`` entries (an object's pairs), then a count of the rest
    (plus ``more`` left out before it got here).

    >>> lines(["a", "b", "c"], limit=2, more=4)
    ['a', 'b', '… and 5 more in the console']
    """
    if isinstance(value, dict):
        out = [f"{k}: {inline(v)}" for k, v in list(value.items())[:limit]]
    elif isinstance(value, list):
        out = [inline(v) for v in value[:limit]]
    else:
        return [inline(value)]
    rest = max(0, len(value) - limit) + more
    if rest > 0:
        out.append(f"{ELLIPSIS} and {rest} more in the console")
    return out


def _md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _list_section(title: str, entries: list[str]) -> dict[str, Any]:
    head = f"*{title}*\n"
    body = "\n".join(f"• {truncate_text(e, ITEM_CHARS)}" for e in entries)
    return {"type": "section", "text": _md(head + mrkdwn(body, SECTION_TEXT - len(head)))}


def _url(value: Any, limit: int) -> str | None:
    """``value`` if it is an http(s) URL Slack can carry in a link or a button."""
    if not isinstance(value, str) or len(value) > limit or any(c in value for c in "|<> "):
        return None
    return value if urlsplit(value).scheme in ("http", "https") else None


def _empty(value: Any) -> bool:
    # Slack refuses a text object that is only whitespace, as it does an empty one.
    return value is None or value == [] or value == {} or (
        isinstance(value, str) and not value.strip())


def _fields(page: Page) -> dict[str, Any]:
    since = page.context.get("since", page.ts)
    pairs = [
        ("Value", f"{_num(page.value)} vs baseline {_num(page.baseline)}"),
        ("Deviation", _num(page.deviation)),
        ("Confidence", "?" if math.isnan(page.confidence) else f"{page.confidence:.0%}"),
        ("Detectors", ", ".join(page.detectors)),
        ("Since", _leaf("since", since)),
    ]
    if page.labels:
        pairs.append(("Labels", ", ".join(f"{k}={page.labels[k]}" for k in sorted(page.labels))))
    pairs.append(("Incident", page.incident_key or page.dedup_key))
    fields = []
    for name, value in pairs[:FIELDS]:
        head = f"*{name}*\n"
        fields.append(_md(head + mrkdwn(value if value.strip() else "—",
                                        FIELD_TEXT - len(head))))
    return {"type": "section", "fields": fields}


def _chart(page: Page) -> dict[str, Any] | None:
    elements: list[dict[str, Any]] = []
    spark = truncate_text(inline(page.context.get("sparkline") or ""), CONTEXT_TEXT)
    if not _empty(spark):
        elements.append({"type": "plain_text", "text": spark})
    chart = _url(page.context.get("chart_url"), LINK_URL)
    if chart is not None:
        elements.append(_md(f"<{chart}|Open chart>"))
    return {"type": "context", "elements": elements} if elements else None


def _automation(page: Page) -> dict[str, Any] | None:
    auto = page.context.get("automation")
    if not isinstance(auto, dict):  # no packed context: the page's own fields say it
        entries = [f"tried: {page.action}"] if page.action else []
        if page.reasons:
            entries.append("not automated: " + "; ".join(page.reasons))
        if not _empty(auto):
            entries.append(inline(auto))
        return _list_section("Automation", entries) if entries else None
    entries = []
    for key, value in auto.items():
        if _empty(value):
            continue
        if key == "approval" and isinstance(value, dict):
            expires = f" (expires {value['expires']})" if value.get("expires") else ""
            entries.append(f"approval pending{expires}: approve or deny below")
        else:
            entries.append(f"{str(key).replace('_', ' ')}: {inline(value)}")
    return _list_section("Automation", entries) if entries else None


def _owner(page: Page) -> dict[str, Any] | None:
    parts = []
    owner, runbook = page.context.get("owner"), page.context.get("runbook")
    if isinstance(owner, dict):  # {"team": ...}: the names say it without their keys
        owner = ", ".join(inline(v) for v in owner.values() if not _empty(v))
    if not _empty(owner):
        parts.append("*Owner* " + mrkdwn(inline(owner), OWNER_CHARS))
    if not _empty(runbook):
        url = _url(runbook, LINK_URL)
        parts.append("*Runbook* " + (f"<{url}|runbook>" if url else mrkdwn(inline(runbook),
                                                                             OWNER_CHARS)))
    return {"type": "section", "text": _md("\n".join(parts))} if parts else None


def _buttons(page: Page) -> dict[str, Any] | None:
    names = [n for n in _BUTTONS if n in page.links]
    names += sorted(n for n in page.links if n not in _BUTTONS)
    value = truncate_text(page.incident_key or page.dedup_key or "hotpath", BUTTON_VALUE)
    buttons: list[dict[str, Any]] = []
    for name in names:
        url = _url(page.links[name], BUTTON_URL)
        label, style = _BUTTONS.get(name, (name.replace("_", " ").strip().capitalize(), None))
        if url is None or not label or len(buttons) == ACTIONS_ELEMENTS:
            continue
        action_id = f"hotpath_{name}"
        if len(action_id) > ACTION_ID:
            action_id = f"hotpath_link_{len(buttons)}"
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": truncate_text(label, BUTTON_TEXT)},
            "url": url, "value": value, "action_id": action_id,
        }
        if style is not None:
            button["style"] = style
        buttons.append(button)
    return {"type": "actions", "elements": buttons} if buttons else None


def _fit(planned: list[tuple[int, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    """The blocks, at most :data:`MAX_BLOCKS`: lowest priority (then latest) dropped first."""
    present = [(prio, block) for prio, block in planned if block is not None]
    if len(present) <= MAX_BLOCKS:
        return [block for _, block in present]
    room = MAX_BLOCKS - 1  # one block says what was left out
    keep = sorted(sorted(range(len(present)), key=lambda i: (present[i][0], i))[:room])
    blocks = [present[i][1] for i in keep]
    note = {"type": "context", "elements": [_md(
        f"{len(present) - room} more sections left out (Slack shows {MAX_BLOCKS} blocks); "
        "the whole page is in the console")]}
    at = len(blocks) - 1 if blocks[-1]["type"] == "actions" else len(blocks)
    return [*blocks[:at], note, *blocks[at:]]


def _short(page: Page, verb: str, icon: str) -> dict[str, Any]:
    head = f"{icon} *{verb}* "
    what = f"{page.service} {page.metric} — {page.summary}"
    key = page.incident_key or page.dedup_key
    return {
        "text": mrkdwn(f"[{verb.upper()}] {page.service} {page.metric}: {page.summary}",
                       FALLBACK_TEXT),
        "blocks": [
            {"type": "section", "text": _md(head + mrkdwn(what, SECTION_TEXT - len(head)))},
            {"type": "context", "elements": [_md(mrkdwn(f"incident {key}", CONTEXT_TEXT))]},
        ],
    }


def slack_message(page: Page) -> dict[str, Any]:
    """The incoming-webhook body ``{"text", "blocks"}`` for ``page`` (pure)."""
    if page.event == "resolve":
        return _short(page, "Resolved", "✅")
    if page.event == "acknowledge":
        return _short(page, "Acknowledged", "👀")
    series = " ".join(p for p in (page.service, page.metric) if p)
    title = f"[{page.severity.upper()}] {series}".strip()
    extras = [(_EXTRA, _list_section(mrkdwn(str(k), 100), lines(v)))
              for k, v in page.context.items() if k not in _COVERED and not _empty(v)]
    more = page.context.get("correlated_more")
    listed = [(prio, _list_section(title_, lines(
                  page.context[key], more=more if key == "correlated" and isinstance(more, int)
                  else 0)))
              for prio, key, title_ in ((_SUPPORTING, "changes", "Recent changes"),
                                        (_SUPPORTING, "suggested", "Suggested next steps"),
                                        (_BACKGROUND, "correlated", "Correlated findings"))
              if not _empty(page.context.get(key))]
    planned: list[tuple[int, dict[str, Any] | None]] = [
        (_ESSENTIAL, {"type": "header",
                      "text": {"type": "plain_text", "text": truncate_text(title, HEADER_TEXT)}}),
        (_ESSENTIAL, {"type": "section",
                      "text": _md(mrkdwn(page.summary if page.summary.strip()
                                         else "(no summary)", SECTION_TEXT))}),
        (_ESSENTIAL, _fields(page)),
        (_USEFUL, _chart(page)),
        (_ESSENTIAL, _automation(page)),
        (_USEFUL, _owner(page)),
        *listed,
        *extras,
        (_ESSENTIAL, _buttons(page)),
    ]
    return {"text": mrkdwn(f"{title}: {page.summary}", FALLBACK_TEXT), "blocks": _fit(planned)}


class SlackPager:
    """POSTs :func:`slack_message` to a Slack incoming-webhook URL.

    Slack answers 200 ``ok``; 400 ``invalid_blocks``/``invalid_payload``, 404 ``no_service``,
    410 ``channel_is_archived`` are permanent (the error string is in the message); 429 with
    ``Retry-After`` and 5xx are retryable.

    >>> import asyncio
    >>> async def name() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return SlackPager(s, "http://127.0.0.1:9/services/T/B/x").name
    >>> asyncio.run(name())
    'slack'
    """

    # Slack allows about one message a second per incoming webhook and answers 429 past
    # it: the sender waits for a token instead (escalation.rate_limit.declared_limit).
    rate_per_min = 60.0

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        timeout_s: float = 5.0,  # Slack answers in well under 1 s; 5 s rides out a slow moment
        name: str = "slack",
    ) -> None:
        self._endpoint = JsonEndpoint(session, url, timeout_s)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        await self._endpoint.post(orjson.dumps(slack_message(page)), page.dedup_key)
