"""Signed inbound webhooks: PagerDuty v3 and Slack tell us someone acked or resolved.

Verification is pure and comes first, over the raw body bytes, before anything is parsed:

* **PagerDuty v3** signs the body: ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256(secret,
  body)>``, several comma-separated while a secret is rotated. There is no timestamp in
  the signature, so replays are stopped by the event itself: :func:`parse_pagerduty`
  refuses an ``occurred_at`` outside ``max_age_s`` of now, and the caller remembers each
  accepted ``event.id`` at least that long (``OnCallStore.claim_event``).
* **Slack** signs ``v0:<X-Slack-Request-Timestamp>:<body>`` into ``X-Slack-Signature:
  v0=<hex>``; :func:`verify_slack` refuses a timestamp more than five minutes off first.

Both take every secret currently accepted, so a secret rotates without refused requests.
A refusal is a :class:`~escalation.errors.SignatureError` whose message says exactly what
was wrong (receivers answer 401 with it); a verified body that is not a well-formed event
is a :class:`~escalation.errors.RequestError` naming every bad field (400). Events we do not
act on (other PagerDuty event types, other Slack buttons) parse to ``None``: the receiver
answers 200 so the sender does not retry them.

>>> import hashlib, hmac
>>> body = b'{"event": {}}'
>>> sig = "v1=" + hmac.new(b"pd-secret", body, hashlib.sha256).hexdigest()
>>> verify_pagerduty([b"old", b"pd-secret"], {"X-PagerDuty-Signature": sig}, body)
>>> try:
...     verify_pagerduty([b"pd-secret"], {"X-PagerDuty-Signature": sig}, body + b" ")
... except SignatureError as e:
...     print(e)
pagerduty: no v1 signature matches the body under any of 1 secret(s)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson

from escalation.approval_tokens import iso_utc
from escalation.errors import RequestError, SignatureError

PAGERDUTY_SIGNATURE_HEADER = "X-PagerDuty-Signature"
SLACK_SIGNATURE_HEADER = "X-Slack-Signature"
SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"

# Slack's documented recommendation: requests older than five minutes may be replays.
SLACK_TOLERANCE_S = 300.0
# A PagerDuty ack an hour old is history, not a live answer to a page: refusing it costs
# nothing, and the event-id memory only has to cover this window (both ways) to catch
# every replay the signature alone would let through.
PAGERDUTY_MAX_AGE_S = 3600.0

# The Slack buttons we act on: the plain ids, and the ``hotpath_<link name>`` ids the Slack
# pager (escalation.pagers.slack) gives its ack/resolve link buttons. Either way the
# incident key travels in the button's value.
ACK_ACTION_ID = "ack"
RESOLVE_ACTION_ID = "resolve"

_PD_KINDS: Mapping[str, Literal["ack", "resolve"]] = {
    "incident.acknowledged": "ack", "incident.resolved": "resolve"}
_SLACK_NAMES: tuple[tuple[str, Literal["ack", "resolve"]], ...] = (
    (ACK_ACTION_ID, "ack"), ("acknowledge", "ack"), (RESOLVE_ACTION_ID, "resolve"))
_SLACK_KINDS: Mapping[str, Literal["ack", "resolve"]] = {
    f"{prefix}{name}": kind for prefix in ("", "hotpath_") for name, kind in _SLACK_NAMES}


@dataclass(frozen=True, slots=True)
class InboundAction:
    """An ack or resolve a verified webhook asks for, and who asked."""

    kind: Literal["ack", "resolve"]
    incident_key: str
    actor: str                       # "pagerduty:Jane Doe (PXXXXXX)", "slack:jane (U0123)"
    source: Literal["pagerduty", "slack"]
    event_id: str                    # the sender's id of this event: replays repeat it
    occurred_at: float | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # Plain dicts are case-sensitive; HTTP header names are not.
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), None)


def _keys(secrets: bytes | Sequence[bytes]) -> list[bytes]:
    keys = [secrets] if isinstance(secrets, bytes) else list(secrets)
    if not keys or any(not k for k in keys):
        raise ValueError("signature verification needs at least one non-empty secret")
    return keys


def _matches(keys: list[bytes], message: bytes, candidates: list[str]) -> bool:
    # Every pair is compared in constant time, with no early exit, so timing does not tell
    # which secret or which prefix came close.
    matched = False
    for key in keys:
        expected = hmac.new(key, message, hashlib.sha256).hexdigest().encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.encode())
    return matched


def verify_pagerduty(secrets: bytes | Sequence[bytes], headers: Mapping[str, str],
                     body: bytes) -> None:
    """Return if the body is signed by PagerDuty with one of ``secrets``, else raise
    :class:`SignatureError`. Unknown signature versions are skipped.

    >>> verify_pagerduty(b"k", {"X-PagerDuty-Signature": "v2=ab"}, b"{}")
    Traceback (most recent call last):
    ...
    escalation.errors.SignatureError: pagerduty: X-PagerDuty-Signature has no v1 signature
    """
    keys = _keys(secrets)
    header = _header(headers, PAGERDUTY_SIGNATURE_HEADER)
    if not header:
        raise SignatureError(f"pagerduty: missing {PAGERDUTY_SIGNATURE_HEADER} header")
    candidates: list[str] = []
    for part in header.split(","):
        version, sep, sig = part.strip().partition("=")
        if not sep or not version or not sig:
            raise SignatureError(f"pagerduty: malformed {PAGERDUTY_SIGNATURE_HEADER}: "
                                 f"{part.strip()!r} is not version=signature")
        if version == "v1":
            candidates.append(sig)
    if not candidates:
        raise SignatureError(f"pagerduty: {PAGERDUTY_SIGNATURE_HEADER} has no v1 signature")
    if not _matches(keys, body, candidates):
        raise SignatureError("pagerduty: no v1 signature matches the body under any of "
                             f"{len(keys)} secret(s)")


def verify_slack(secret: bytes | Sequence[bytes], headers: Mapping[str, str], body: bytes,
                 now: float, tolerance_s: float = SLACK_TOLERANCE_S) -> None:
    """Return if Slack signed ``body`` at a time within ``tolerance_s`` of ``now``, else
    raise :class:`SignatureError`. The timestamp is checked first: a stale request is
    refused whatever its signature.

    >>> verify_slack(b"k", {SLACK_TIMESTAMP_HEADER: "1000", SLACK_SIGNATURE_HEADER: "v0=00"},
    ...              b"payload=%7B%7D", now=1400.0)
    Traceback (most recent call last):
    ...
    escalation.errors.SignatureError: slack: timestamp 1000 is 400s old, beyond the 300s tolerance
    """
    keys = _keys(secret)
    raw_ts = _header(headers, SLACK_TIMESTAMP_HEADER)
    if not raw_ts:
        raise SignatureError(f"slack: missing {SLACK_TIMESTAMP_HEADER} header")
    if not (raw_ts.isascii() and raw_ts.isdigit()):
        raise SignatureError(f"slack: {SLACK_TIMESTAMP_HEADER} {raw_ts!r} is not an integer")
    ts = int(raw_ts)
    age = now - ts
    if age > tolerance_s:
        raise SignatureError(f"slack: timestamp {ts} is {age:.0f}s old, beyond the "
                             f"{tolerance_s:g}s tolerance")
    if -age > tolerance_s:
        raise SignatureError(f"slack: timestamp {ts} is {-age:.0f}s in the future, beyond "
                             f"the {tolerance_s:g}s tolerance")
    sig = _header(headers, SLACK_SIGNATURE_HEADER)
    if not sig:
        raise SignatureError(f"slack: missing {SLACK_SIGNATURE_HEADER} header")
    scheme, sep, digest = sig.partition("=")
    if scheme != "v0" or not sep or not digest:
        raise SignatureError(f"slack: malformed {SLACK_SIGNATURE_HEADER}: expected v0=<hex>")
    if not _matches(keys, f"v0:{ts}:".encode() + body, [digest]):
        raise SignatureError(f"slack: {SLACK_SIGNATURE_HEADER} does not match the body under "
                             f"any of {len(keys)} secret(s)")


def _json_object(raw: bytes | str, where: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise RequestError([f"{where}: not valid JSON (line {e.lineno} column {e.colno})"]
                           ) from None
    if not isinstance(doc, dict):
        raise RequestError([f"{where}: expected a JSON object"])
    return doc


def _text(obj: dict[str, Any], name: str, where: str, problems: list[str]) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        problems.append(f"{where}.{name}: missing or not a non-empty string")
        return ""
    return value


def _obj(obj: dict[str, Any], name: str, where: str, problems: list[str]) -> dict[str, Any]:
    value = obj.get(name)
    if not isinstance(value, dict):
        problems.append(f"{where}.{name}: missing or not an object")
        return {}
    return value


def _who(source: str, name: Any, ident: Any) -> str:
    name = name if isinstance(name, str) and name else None
    ident = ident if isinstance(ident, str) and ident else None
    if name and ident:
        return f"{source}:{name} ({ident})"
    return f"{source}:{name or ident or 'unknown'}"


def parse_pagerduty(body: bytes, now: float,
                    max_age_s: float = PAGERDUTY_MAX_AGE_S) -> InboundAction | None:
    """The ack/resolve a verified PagerDuty v3 webhook carries; None for other event types.

    The incident key is ``event.data.incident_key``: the Events API v2 ``dedup_key`` the
    PagerDuty pager sent, i.e. our incident key. An event that occurred more than
    ``max_age_s`` from ``now`` is refused (:class:`SignatureError`): it can only be a replay.

    >>> body = (b'{"event": {"id": "01ABC", "event_type": "incident.acknowledged",'
    ...         b' "occurred_at": "2025-11-26T04:40:00Z", "agent": {"id": "PU1",'
    ...         b' "summary": "Jane Doe"}, "data": {"incident_key": "inc-1"}}}')
    >>> parse_pagerduty(body, now=1764132030.0)
    InboundAction(kind='ack', incident_key='inc-1', actor='pagerduty:Jane Doe (PU1)', \
source='pagerduty', event_id='01ABC', occurred_at=1764132000.0)
    """
    doc = _json_object(body, "pagerduty")
    problems: list[str] = []
    event = _obj(doc, "event", "pagerduty", problems)
    if problems:
        raise RequestError(problems)
    kind = _PD_KINDS.get(str(event.get("event_type")))
    if kind is None:
        return None
    event_id = _text(event, "id", "pagerduty.event", problems)
    occurred = _text(event, "occurred_at", "pagerduty.event", problems)
    data = _obj(event, "data", "pagerduty.event", problems)
    key = (_text(data, "incident_key", "pagerduty.event.data", problems)
           if isinstance(event.get("data"), dict) else "")
    occurred_at = 0.0
    if occurred:
        try:
            when = datetime.fromisoformat(occurred)
        except ValueError:
            problems.append(f"pagerduty.event.occurred_at: {occurred!r} is not an "
                            "ISO 8601 time")
        else:
            if when.tzinfo is None:
                problems.append(f"pagerduty.event.occurred_at: {occurred!r} has no time zone")
            occurred_at = when.timestamp()
    if problems:
        raise RequestError(problems)
    age = now - occurred_at
    if abs(age) > max_age_s:
        direction = "old" if age > 0 else "in the future"
        raise SignatureError(f"pagerduty: event {event_id} occurred at {iso_utc(occurred_at)},"
                             f" {abs(age):.0f}s {direction}, beyond the {max_age_s:g}s "
                             "tolerance")
    agent = event.get("agent")
    agent = agent if isinstance(agent, dict) else {}
    return InboundAction(kind, key, _who("pagerduty", agent.get("summary"), agent.get("id")),
                         "pagerduty", event_id, occurred_at)


def parse_slack(body: bytes) -> InboundAction | None:
    """The ack/resolve a verified Slack interaction carries (the ``payload=`` form field of
    a ``block_actions`` request); None for other interactions and other buttons.

    >>> from urllib.parse import urlencode
    >>> payload = ('{"type": "block_actions", "trigger_id": "13.4.ab", "user": {"id": "U1",'
    ...            ' "username": "jane"}, "actions": [{"action_id": "resolve",'
    ...            ' "value": "inc-1", "action_ts": "1764132000.5"}]}')
    >>> parse_slack(urlencode({"payload": payload}).encode())
    InboundAction(kind='resolve', incident_key='inc-1', actor='slack:jane (U1)', \
source='slack', event_id='13.4.ab', occurred_at=1764132000.5)
    """
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise RequestError(["slack: body is not a UTF-8 form (application/x-www-form-"
                            "urlencoded)"]) from None
    values = form.get("payload", [])
    if len(values) != 1:
        raise RequestError([f"slack: expected one payload field, got {len(values)}"])
    doc = _json_object(values[0], "slack.payload")
    if doc.get("type") != "block_actions":
        return None
    actions = doc.get("actions")
    if not isinstance(actions, list):
        raise RequestError(["slack.payload.actions: missing or not a list"])
    chosen = next((a for a in actions
                   if isinstance(a, dict) and a.get("action_id") in _SLACK_KINDS), None)
    if chosen is None:
        return None
    problems: list[str] = []
    key = _text(chosen, "value", "slack.payload.actions[]", problems)
    trigger = _text(doc, "trigger_id", "slack.payload", problems)
    user = _obj(doc, "user", "slack.payload", problems)
    if problems:
        raise RequestError(problems)
    try:
        occurred_at: float | None = float(chosen.get("action_ts", ""))
    except (TypeError, ValueError):
        occurred_at = None
    actor = _who("slack", user.get("username") or user.get("name"), user.get("id"))
    return InboundAction(_SLACK_KINDS[chosen["action_id"]], key, actor, "slack", trigger,
                         occurred_at)
