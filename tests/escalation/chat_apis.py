"""Fake Slack, Alertmanager and signed-webhook APIs: real aiohttp servers on 127.0.0.1 that
check each request the way the real API documents, and answer as it does.

* :class:`SlackWebhookApi` — a Slack incoming webhook: JSON ``{text, blocks}`` checked against
  Block Kit's structure and every documented limit; 200 ``ok``, else 400 with Slack's error
  string as the body (``invalid_payload``, ``invalid_blocks``, ``no_text``, ``msg_too_long``).
* :class:`AlertmanagerApi` — ``POST /api/v2/alerts``: a JSON array of postable alerts, label and
  annotation names ``[a-zA-Z_][a-zA-Z0-9_]*``, RFC 3339 times, ``endsAt`` not before
  ``startsAt``, at least one label after empty values are dropped (as Alertmanager does);
  200 with an empty body, else 400 with the error as a JSON string.
* :class:`SignedHookApi` — our signed webhook: ``X-Hotpath-Signature`` checked with
  :func:`escalation.executors.signing.verify` at the receiver's own clock; 202 or 401.

Every server can be scripted to answer the next requests with a given :class:`Reply`
(429 with ``Retry-After``, 5xx, Slack's 404 ``no_service``...) before it looks at them.
Each refusal is recorded as a :class:`Refusal` with the exact reason, so a test can show the
check that fired. Use ``async with serve(SlackWebhookApi()) as api: ... api.url``.

:data:`PAGE` is a page with a full packed context (shaped like
``escalation.context.PageContext.to_dict()``) for the adapters' tests.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from escalation.errors import SignatureError
from escalation.executors.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, parse, verify
from escalation.page import Page

from .conftest import Reply

# --- a page with everything in it, for the adapters' tests ----------------------------------
APPROVE = "https://hotpath.example/approve?token=eyJhY3Rpb24iOiJyZXN0YXJ0In0.sig"
DENY = "https://hotpath.example/deny?token=eyJhY3Rpb24iOiJyZXN0YXJ0In0.sig"
CONSOLE = "https://hotpath.example/incidents/inc-checkout-eu"
CHART = "https://hotpath.example/chart?series=checkout%7Cerror_ratio%7Cregion%3Deu"

# Shaped like escalation.context.PageContext.to_dict().
CONTEXT: dict[str, Any] = {
    "what": {"service": "checkout", "metric": "error_ratio", "labels": {"region": "eu"}},
    "since": "2025-11-26T04:38:00Z",
    "current": 0.21, "baseline": 0.004, "deviation": 12.3, "confidence": 0.97,
    "detectors": ["ewma", "mad"],
    "sparkline": "▁▁▂▁▃█",
    "recent": [0.003, 0.004, 0.01, 0.004, 0.05, 0.21],
    "chart_url": CHART,
    "correlated": [{"service": "payments", "metric": "latency_p99_ms", "region": "eu",
                    "value": 950.0, "baseline": 210.0, "since": "2025-11-26T04:37:30Z"}],
    "correlated_more": 0,
    "changes": [{"kind": "deploy", "service": "checkout", "ts": 1764131700.0, "actor": "ci",
                 "version": "v1.4.2", "description": "new retry policy", "before_s": 180.0}],
    "automation": {"did": None, "why_not": "budget exhausted", "rule": "restart-checkout",
                   "action": "restart_pods", "target": "deployment/checkout", "status": None,
                   "approval": None},
    "owner": {"team": "payments-core"},
    "runbook": "https://runbooks.example/checkout",
    "suggested": ["a deploy of checkout v1.4.2 went out 3 min before the anomaly: "
                  "consider rolling it back", "check the runbook: https://runbooks.example/checkout"],
}

PAGE = Page(
    dedup_key="hotpath-f1", summary="checkout error_ratio{region=eu} 0.21 vs baseline 0.004 "
    "(dev 12.3) — budget exhausted", severity="critical", service="checkout",
    metric="error_ratio", labels={"region": "eu"}, value=0.21, baseline=0.004, deviation=12.3,
    confidence=0.97, detectors=("ewma", "mad"), reasons=("rule matched", "budget exhausted"),
    recent=(0.003, 0.21), finding_id="f1", ts=1764131880.0, created=1764131885.0, action=None,
    incident_key="inc-checkout-eu", context=CONTEXT,
)


@dataclass(frozen=True)
class Refusal:
    """A request the fake API refused: the status, the API's error string and why."""

    status: int
    error: str
    detail: str


class Invalid(Exception):
    """Raised by a check; becomes a 4xx answer and a :class:`Refusal`."""

    def __init__(self, error: str, detail: str, status: int = 400) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail
        self.status = status


@dataclass
class FakeApi:
    """What every fake shares: the script, the accepted payloads and the refusals."""

    path: str = "/"
    script: list[Reply] = field(default_factory=list)
    accepted: list[Any] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    requests: int = 0
    base: str = ""  # http://127.0.0.1:PORT while served
    url: str = ""   # base + path

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.script:
            reply = self.script.pop(0)
            return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
        try:
            payload = self.check(request, body)
        except Invalid as e:
            self.refused.append(Refusal(e.status, e.error, e.detail))
            return self.refusal(e)
        self.accepted.append(payload)
        return self.ok()

    def check(self, request: web.Request, body: bytes) -> Any:
        raise NotImplementedError

    def ok(self) -> web.Response:
        raise NotImplementedError

    def refusal(self, e: Invalid) -> web.Response:
        raise NotImplementedError


Api = TypeVar("Api", bound=FakeApi)


@asynccontextmanager
async def serve(api: Api) -> AsyncIterator[Api]:
    """Run ``api`` on a free loopback port; ``api.url`` is set while inside."""
    # Slack and Alertmanager take bodies well over aiohttp's 1 MB default; the checks, not
    # the transport, must be what refuses a payload.
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post(api.path, api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    api.base = f"http://{host}:{port}"
    api.url = api.base + api.path
    try:
        yield api
    finally:
        await runner.cleanup()


def _json_body(request: web.Request, body: bytes, error: str) -> Any:
    if request.content_type != "application/json":
        raise Invalid(error, f"content type {request.content_type!r}, not application/json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Invalid(error, f"body is not JSON: {e}") from None


# --- Slack ------------------------------------------------------------------------------
# Block Kit reference (api.slack.com/reference/block-kit): blocks, text objects, elements.
SLACK_MAX_BLOCKS = 50
SLACK_TEXT_MAX = 40000          # top-level text; longer is refused (msg_too_long)
SLACK_HEADER_TEXT = 150
SLACK_SECTION_TEXT = 3000
SLACK_FIELDS = 10
SLACK_FIELD_TEXT = 2000
SLACK_CONTEXT_ELEMENTS = 10
SLACK_CONTEXT_TEXT = 3000
SLACK_ACTIONS_ELEMENTS = 25
SLACK_BUTTON_TEXT = 75
SLACK_BUTTON_URL = 3000
SLACK_ACTION_ID = 255
SLACK_BUTTON_VALUE = 2000
SLACK_BLOCK_ID = 255


def _keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise Invalid("invalid_blocks", f"{where}: unknown field(s) {', '.join(extra)}")


def _text_object(obj: Any, where: str, limit: int, plain_only: bool = False) -> None:
    if not isinstance(obj, dict):
        raise Invalid("invalid_blocks", f"{where}: must be a text object")
    kind = obj.get("type")
    if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
        wanted = "plain_text" if plain_only else "plain_text or mrkdwn"
        raise Invalid("invalid_blocks", f"{where}.type: {kind!r}, must be {wanted}")
    _keys(obj, {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"},
          where)
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():  # Slack trims before it counts
        raise Invalid("invalid_blocks", f"{where}.text: must be a non-empty string")
    if len(text) > limit:
        raise Invalid("invalid_blocks", f"{where}.text: {len(text)} characters, over {limit}")


def _length(value: Any, where: str, limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise Invalid("invalid_blocks", f"{where}: must be a non-empty string")
    if len(value) > limit:
        raise Invalid("invalid_blocks", f"{where}: {len(value)} characters, over {limit}")


def _button(el: dict[str, Any], where: str, action_ids: set[str]) -> None:
    _keys(el, {"type", "text", "action_id", "url", "value", "style", "confirm",
               "accessibility_label"}, where)
    _text_object(el.get("text"), f"{where}.text", SLACK_BUTTON_TEXT, plain_only=True)
    if "action_id" in el:
        _length(el["action_id"], f"{where}.action_id", SLACK_ACTION_ID)
        if el["action_id"] in action_ids:
            raise Invalid("invalid_blocks", f"{where}.action_id: {el['action_id']!r} repeated")
        action_ids.add(el["action_id"])
    if "url" in el:
        _length(el["url"], f"{where}.url", SLACK_BUTTON_URL)
        if urlsplit(el["url"]).scheme not in ("http", "https"):
            raise Invalid("invalid_blocks", f"{where}.url: not an http(s) URL")
    if "value" in el:
        _length(el["value"], f"{where}.value", SLACK_BUTTON_VALUE)
    if "style" in el and el["style"] not in ("primary", "danger"):
        raise Invalid("invalid_blocks",
                      f"{where}.style: {el['style']!r}, must be primary or danger")


def _elements(block: dict[str, Any], where: str, limit: int) -> list[Any]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        raise Invalid("invalid_blocks", f"{where}.elements: must be a non-empty array")
    if len(elements) > limit:
        raise Invalid("invalid_blocks", f"{where}.elements: {len(elements)} items, over {limit}")
    return elements


def check_slack_block(block: Any, where: str, block_ids: set[str], action_ids: set[str]) -> None:
    """Raise :class:`Invalid` (``invalid_blocks``) naming the first thing wrong with a block."""
    if not isinstance(block, dict):
        raise Invalid("invalid_blocks", f"{where}: must be an object")
    if "block_id" in block:
        _length(block["block_id"], f"{where}.block_id", SLACK_BLOCK_ID)
        if block["block_id"] in block_ids:
            raise Invalid("invalid_blocks", f"{where}.block_id: {block['block_id']!r} repeated")
        block_ids.add(block["block_id"])
    kind = block.get("type")
    if kind == "header":
        _keys(block, {"type", "block_id", "text"}, where)
        _text_object(block.get("text"), f"{where}.text", SLACK_HEADER_TEXT, plain_only=True)
    elif kind == "section":
        _keys(block, {"type", "block_id", "text", "fields", "accessory", "expand"}, where)
        if "text" not in block and "fields" not in block:
            raise Invalid("invalid_blocks", f"{where}: a section needs text or fields")
        if "text" in block:
            _text_object(block["text"], f"{where}.text", SLACK_SECTION_TEXT)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not fields:
                raise Invalid("invalid_blocks", f"{where}.fields: must be a non-empty array")
            if len(fields) > SLACK_FIELDS:
                raise Invalid("invalid_blocks",
                              f"{where}.fields: {len(fields)} items, over {SLACK_FIELDS}")
            for i, f in enumerate(fields):
                _text_object(f, f"{where}.fields[{i}]", SLACK_FIELD_TEXT)
        if "accessory" in block:
            _button(block["accessory"], f"{where}.accessory", action_ids)
    elif kind == "context":
        _keys(block, {"type", "block_id", "elements"}, where)
        for i, el in enumerate(_elements(block, where, SLACK_CONTEXT_ELEMENTS)):
            _text_object(el, f"{where}.elements[{i}]", SLACK_CONTEXT_TEXT)
    elif kind == "actions":
        _keys(block, {"type", "block_id", "elements"}, where)
        for i, el in enumerate(_elements(block, where, SLACK_ACTIONS_ELEMENTS)):
            if not isinstance(el, dict) or el.get("type") != "button":
                raise Invalid("invalid_blocks", f"{where}.elements[{i}]: only buttons here")
            _button(el, f"{where}.elements[{i}]", action_ids)
    elif kind == "divider":
        _keys(block, {"type", "block_id"}, where)
    else:
        raise Invalid("invalid_blocks", f"{where}.type: unknown block type {kind!r}")


def check_slack_message(payload: Any) -> None:
    """Raise :class:`Invalid` with Slack's error string if Slack would refuse ``payload``."""
    if not isinstance(payload, dict):
        raise Invalid("invalid_payload", "the body must be a JSON object")
    text, blocks = payload.get("text"), payload.get("blocks")
    if text is None and blocks is None:
        raise Invalid("no_text", "neither text nor blocks")
    if text is not None:
        if not isinstance(text, str) or (not text and blocks is None):
            raise Invalid("no_text", "text must be a non-empty string")
        if len(text) > SLACK_TEXT_MAX:
            raise Invalid("msg_too_long", f"text: {len(text)} characters, over {SLACK_TEXT_MAX}")
    if blocks is not None:
        if not isinstance(blocks, list) or not blocks:
            raise Invalid("invalid_blocks", "blocks: must be a non-empty array")
        if len(blocks) > SLACK_MAX_BLOCKS:
            raise Invalid("invalid_blocks",
                          f"blocks: {len(blocks)} blocks, over {SLACK_MAX_BLOCKS}")
        block_ids: set[str] = set()
        action_ids: set[str] = set()
        for i, block in enumerate(blocks):
            check_slack_block(block, f"blocks[{i}]", block_ids, action_ids)


@dataclass
class SlackWebhookApi(FakeApi):
    """A Slack incoming webhook at ``/services/T0/B0/x``; ``accepted`` holds the messages."""

    path: str = "/services/T0/B0/x"

    def check(self, request: web.Request, body: bytes) -> Any:
        payload = _json_body(request, body, "invalid_payload")
        check_slack_message(payload)
        return payload

    def ok(self) -> web.Response:
        return web.Response(status=200, text="ok")

    def refusal(self, e: Invalid) -> web.Response:
        return web.Response(status=e.status, text=e.error)


# --- Alertmanager -----------------------------------------------------------------------
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise Invalid("bad_request", f"{where}: {value!r} is not an RFC3339 date-time")
    # Python parses at most 6 fractional digits; Go's RFC3339Nano may send 9.
    head, dot, frac = value.partition(".")
    if dot:
        digits = re.match(r"\d+", frac)
        assert digits is not None
        value = f"{head}.{digits.group()[:6]}{frac[digits.end():]}"
    return datetime.fromisoformat(value)


def _names(pairs: Any, where: str, what: str) -> dict[str, str]:
    if not isinstance(pairs, dict):
        raise Invalid("bad_request", f"{where}: must be an object of strings")
    for name, value in pairs.items():
        if not isinstance(value, str):
            raise Invalid("bad_request", f"{where}.{name}: must be a string")
        if not LABEL_NAME.fullmatch(name):
            raise Invalid("bad_request", f"invalid {what}: invalid name {name!r}")
    return dict(pairs)


def check_alerts(payload: Any) -> list[dict[str, Any]]:
    """The alerts of a ``POST /api/v2/alerts`` body, or :class:`Invalid` saying what is wrong."""
    if not isinstance(payload, list):
        raise Invalid("bad_request", "body: must be a JSON array of alerts")
    for i, alert in enumerate(payload):
        where = f"alerts[{i}]"
        if not isinstance(alert, dict):
            raise Invalid("bad_request", f"{where}: must be an object")
        extra = sorted(set(alert) - {"labels", "annotations", "startsAt", "endsAt",
                                     "generatorURL"})
        if extra:
            raise Invalid("bad_request", f"{where}: unknown field(s) {', '.join(extra)}")
        if "labels" not in alert:
            raise Invalid("bad_request", f"{where}.labels in body is required")
        # Alertmanager drops empty label values before validating.
        labels = {k: v for k, v in _names(alert["labels"], f"{where}.labels", "label set").items()
                  if v != ""}
        if not labels:
            raise Invalid("bad_request", f"{where}: at least one label pair required")
        if "alertname" not in labels:
            raise Invalid("bad_request", f"{where}.labels: alertname is required")
        _names(alert.get("annotations", {}), f"{where}.annotations", "annotations")
        starts = _rfc3339(alert["startsAt"], f"{where}.startsAt") if "startsAt" in alert else None
        ends = _rfc3339(alert["endsAt"], f"{where}.endsAt") if "endsAt" in alert else None
        if starts is not None and ends is not None and ends < starts:
            raise Invalid("bad_request", f"{where}: start time must be before end time")
        if "generatorURL" in alert:
            url = alert["generatorURL"]
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or not parts.scheme or not parts.netloc:
                raise Invalid("bad_request", f"{where}.generatorURL: {url!r} is not a URI")
    return payload


@dataclass
class AlertmanagerApi(FakeApi):
    """Alertmanager's ``POST /api/v2/alerts``; ``accepted`` holds each posted array."""

    path: str = "/api/v2/alerts"

    def check(self, request: web.Request, body: bytes) -> Any:
        return check_alerts(_json_body(request, body, "bad_request"))

    def ok(self) -> web.Response:
        return web.Response(status=200)

    def refusal(self, e: Invalid) -> web.Response:
        return web.Response(status=e.status, body=orjson.dumps(e.detail),
                            content_type="application/json")


# --- signed webhook ---------------------------------------------------------------------
@dataclass
class SignedHookApi(FakeApi):
    """A receiver of our signed webhook: verifies with ``secrets`` at ``clock()``."""

    path: str = "/hook"
    secrets: Sequence[bytes] = (b"secret",)
    clock: Callable[[], float] = lambda: 0.0

    def check(self, request: web.Request, body: bytes) -> Any:
        header = request.headers.get(SIGNATURE_HEADER)
        if header is None:
            raise Invalid("unauthorized", f"no {SIGNATURE_HEADER} header", 401)
        try:
            verify(self.secrets, header, body, now=self.clock())
        except SignatureError as e:
            raise Invalid("unauthorized", str(e), 401) from None
        stamp = request.headers.get(TIMESTAMP_HEADER)
        if stamp != str(parse(header)[0]):
            raise Invalid("unauthorized", f"{TIMESTAMP_HEADER} {stamp!r} is not the signed t=",
                          401)
        return _json_body(request, body, "bad_request")

    def ok(self) -> web.Response:
        return web.Response(status=202)

    def refusal(self, e: Invalid) -> web.Response:
        return web.Response(status=e.status, text=e.detail)
