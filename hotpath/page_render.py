"""``hotpath page render``: what each pager would send for a recorded page, without sending.

Reads a JSON-lines file of pages (the console pager's ``pages.jsonl``, or a demo's) and
prints the exact payload an adapter builds for one of them — the Slack Block Kit message,
the PagerDuty Events v2 event, the Opsgenie alert, the Alertmanager alert — so the on-call
view can be checked and documented from real pages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from escalation.page import Page
from escalation.pagers.alertmanager import postable_alert
from escalation.pagers.opsgenie import opsgenie_alert
from escalation.pagers.pagerduty import pagerduty_event
from escalation.pagers.slack import slack_message

# A placeholder for the routing key (32 characters, as PagerDuty requires): the real key is
# a secret and never printed.
ROUTING_KEY_PLACEHOLDER = "R" * 32

RENDERERS: dict[str, Callable[[Page, float], dict[str, Any]]] = {
    "slack": lambda page, now: slack_message(page),
    "pagerduty": lambda page, now: pagerduty_event(page, ROUTING_KEY_PLACEHOLDER,
                                                   client="hotpath", client_url=None),
    "opsgenie": lambda page, now: opsgenie_alert(page),
    "alertmanager": lambda page, now: postable_alert(page, now),
}


def _text(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def slack_text(message: dict[str, Any]) -> str:
    """A plain-text view of a Block Kit message, block by block, as a phone shows it
    (mrkdwn markers kept; buttons as ``[label] url``).

    >>> print(slack_text({"text": "t", "blocks": [
    ...     {"type": "header", "text": {"type": "plain_text", "text": "CRITICAL search"}},
    ...     {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Value* 0.2"}]},
    ...     {"type": "actions", "elements": [{"type": "button", "url": "http://x",
    ...                                       "text": {"type": "plain_text", "text": "Ack"}}]}]}))
    CRITICAL search
    *Value* 0.2
    [Ack] http://x
    """
    out: list[str] = []
    for block in message.get("blocks", []):
        kind = block.get("type")
        if kind in ("header", "section"):
            if block.get("text"):
                out.append(_text(block["text"]))
            out.extend(_text(f) for f in block.get("fields", []))
        elif kind == "context":
            out.append("  ".join(_text(e) for e in block.get("elements", [])))
        elif kind == "actions":
            out.append("  ".join(f"[{_text(e.get('text'))}] {e.get('url', '')}".rstrip()
                                 for e in block.get("elements", [])))
        elif kind == "divider":
            out.append("———")
    return "\n".join(out)


def read_pages(path: Path) -> list[Page]:
    """Every page of a JSON-lines file; a bad line names its number."""
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Page.from_json(line))
        except ValueError as e:
            raise ValueError(f"{path}: line {n}: {e}") from None
    return out


def pick(pages: list[Page], match: str | None) -> Page:
    """The last page whose dedup key, service or summary contains ``match`` (or the last)."""
    found = [p for p in pages if match is None or match in p.dedup_key
             or match == p.service or match in p.summary]
    if not found:
        raise LookupError(f"no page matches {match!r}")
    return found[-1]
