"""Local stand-ins for the PagerDuty Events v2 and Opsgenie Alert APIs, on 127.0.0.1.

Each is a real aiohttp.web server that checks a request the way the documented API does —
required fields, enums, lengths, total size, auth — and answers like it: 202 with the
API's success body, or 400/401/422 with its error body naming every problem. Where the
docs leave room, the check is stricter than the real API (unknown fields are refused;
acknowledge/resolve must not carry trigger-only fields), so an adapter that passes here
sends nothing the real one could reject.

``script`` makes the next answers a chosen status (429 with ``Retry-After``, 5xx, a 400
body) whatever the request; every request is recorded in ``calls`` with the problems found.

>>> pagerduty_problems(b'{"routing_key": "x", "event_action": "page"}')
["Length of 'routing_key' is incorrect (should be 32 characters)", \
"'event_action' must be one of trigger, acknowledge, resolve"]
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from escalation.page import Page

PD_ROUTING_KEY_CHARS = 32
PD_MAX_BYTES = 512 * 1024  # "512 KB", the larger reading: the adapter aims under 512 000
PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
_PD_TOP = {"routing_key", "event_action", "dedup_key", "payload", "links", "images",
           "client", "client_url"}
_PD_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class",
               "custom_details"}

OG_PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
# field → max characters, from the Alert API's create-alert table
_OG_TEXT = {"message": 130, "alias": 512, "description": 15_000, "entity": 512,
            "source": 100, "user": 100, "note": 25_000}
_OG_FOLLOWUP = {"user": 100, "source": 100, "note": 25_000}
_OG_RESPONDER_TYPES = ("team", "user", "escalation", "schedule")


@dataclass(frozen=True)
class Scripted:
    """An answer given instead of the API's own, for the next request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Call:
    """One request as it arrived and what the checks found wrong with it."""

    path: str          # with the query string
    headers: dict[str, str]
    body: bytes
    problems: list[str]

    def json(self) -> Any:
        return orjson.loads(self.body)


def _text(obj: dict[str, Any], name: str, limit: int | None, problems: list[str], *,
          required: bool = False, where: str = "") -> None:
    if name not in obj:
        if required:
            problems.append(f"'{where}{name}' is missing")
        return
    value = obj[name]
    if not isinstance(value, str):
        problems.append(f"'{where}{name}' must be a string")
    elif required and not value:
        problems.append(f"'{where}{name}' must not be empty")
    elif limit is not None and len(value) > limit:
        problems.append(f"'{where}{name}' is longer than {limit} characters ({len(value)})")


def _unknown(obj: dict[str, Any], allowed: set[str], where: str, problems: list[str]) -> None:
    problems.extend(f"unknown field '{where}{k}'" for k in sorted(set(obj) - allowed))


def pagerduty_problems(body: bytes) -> list[str]:
    """Everything the Events API v2 would reject in ``body`` (empty: a valid event)."""
    if len(body) > PD_MAX_BYTES:
        return [f"event is {len(body)} bytes, over {PD_MAX_BYTES}"]
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ["body is not JSON"]
    if not isinstance(event, dict):
        return ["body is not a JSON object"]
    problems: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != PD_ROUTING_KEY_CHARS:
        problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in PD_ACTIONS:
        problems.append("'event_action' must be one of trigger, acknowledge, resolve")
    _text(event, "dedup_key", 255, problems, required=action in ("acknowledge", "resolve"))
    if action != "trigger":
        _unknown(event, {"routing_key", "event_action", "dedup_key"}, "", problems)
        return problems
    _unknown(event, _PD_TOP, "", problems)
    for name in ("client", "client_url"):
        _text(event, name, None, problems)
    payload = event.get("payload")
    if not isinstance(payload, dict):
        problems.append("'payload' is missing or not an object")
    else:
        _unknown(payload, _PD_PAYLOAD, "payload.", problems)
        _text(payload, "summary", 1024, problems, required=True, where="payload.")
        # no documented cap on source, component, group, class: only their type is checked
        _text(payload, "source", None, problems, required=True, where="payload.")
        if payload.get("severity") not in PD_SEVERITIES:
            problems.append("'payload.severity' must be one of critical, error, warning, info")
        for name in ("component", "group", "class"):
            _text(payload, name, None, problems, where="payload.")
        if "timestamp" in payload:
            problems.extend(_iso8601_problems(payload["timestamp"]))
        if not isinstance(payload.get("custom_details", {}), dict):
            problems.append("'payload.custom_details' must be an object")
    problems.extend(_list_problems(event, "links", required="href", optional={"text"}))
    problems.extend(_list_problems(event, "images", required="src", optional={"href", "alt"}))
    return problems


def _iso8601_problems(value: Any) -> list[str]:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return ["'payload.timestamp' is not an ISO 8601 time with a zone"]
    return []


def _list_problems(event: dict[str, Any], name: str, *, required: str,
                   optional: set[str]) -> list[str]:
    items = event.get(name, [])
    if not isinstance(items, list):
        return [f"'{name}' must be a list"]
    problems: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"'{name}[{i}]' must be an object")
            continue
        _unknown(item, {required} | optional, f"{name}[{i}].", problems)
        url = item.get(required)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"'{name}[{i}].{required}' must be an http(s) URL")
        problems.extend(f"'{name}[{i}].{k}' must be a string"
                        for k in sorted(optional) if k in item and not isinstance(item[k], str))
    return problems


def opsgenie_alert_problems(alert: dict[str, Any]) -> dict[str, str]:
    """Field → why, for everything the create-alert call would refuse (empty: valid)."""
    problems: list[str] = []
    _unknown(alert, set(_OG_TEXT) | {"responders", "visibleTo", "actions", "tags", "details",
                                     "priority"}, "", problems)
    for name, limit in _OG_TEXT.items():
        _text(alert, name, limit, problems, required=name == "message")
    for name, types in (("responders", _OG_RESPONDER_TYPES), ("visibleTo", ("team", "user"))):
        if not isinstance(alert.get(name, []), list):
            problems.append(f"'{name}' must be a list")
            continue
        for i, r in enumerate(alert.get(name, [])):
            if not isinstance(r, dict) or r.get("type") not in types:
                problems.append(f"'{name}[{i}].type' must be one of {', '.join(types)}")
            elif not any(isinstance(r.get(k), str) for k in ("id", "name", "username")):
                problems.append(f"'{name}[{i}]' needs an id, name or username")
    for name, most in (("actions", 10), ("tags", 20)):
        items = alert.get(name, [])
        if not isinstance(items, list) or len(items) > most:
            problems.append(f"'{name}' must be a list of at most {most}")
        elif any(not isinstance(t, str) or len(t) > 50 for t in items):
            problems.append(f"'{name}' items must be strings of at most 50 characters")
    details = alert.get("details", {})
    if not isinstance(details, dict) or any(not isinstance(v, str) for v in details.values()):
        problems.append("'details' must map strings to strings")
    elif (n := sum(len(k) + len(v) for k, v in details.items())) > 8000:
        problems.append(f"'details' hold {n} characters, over 8000")
    if alert.get("priority", "P3") not in OG_PRIORITIES:
        problems.append("'priority' must be one of P1, P2, P3, P4, P5")
    return {p.split("'")[1]: p for p in problems}


_Check = Callable[[dict[str, Any]], dict[str, str]]  # body → field → why it is refused


class _FakeAPI:
    """What both fakes share: the script, the call log and deterministic request ids."""

    def __init__(self) -> None:
        self.script: list[Scripted] = []
        self.calls: list[Call] = []
        self.url = ""
        self._ids = 0

    def app(self) -> web.Application:
        raise NotImplementedError

    def _record(self, request: web.Request, body: bytes, problems: list[str]) -> None:
        self.calls.append(Call(request.path_qs, dict(request.headers), body, problems))

    def _request_id(self) -> str:
        self._ids += 1
        return f"req-{self._ids}"

    def _scripted(self) -> web.Response | None:
        if not self.script:
            return None
        s = self.script.pop(0)
        return web.Response(status=s.status, headers=s.headers, body=s.body)


class PagerDutyAPI(_FakeAPI):
    """``POST /v2/enqueue``; ``incidents`` maps dedup key → last accepted action."""

    def __init__(self) -> None:
        super().__init__()
        self.incidents: dict[str, str] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)  # let oversize reach the check
        app.router.add_post("/v2/enqueue", self._enqueue)
        return app

    async def _enqueue(self, request: web.Request) -> web.Response:
        body = await request.read()
        problems = pagerduty_problems(body)
        if request.content_type != "application/json":
            problems.append("Content-Type must be application/json")
        self._record(request, body, problems)
        if (scripted := self._scripted()) is not None:
            return scripted
        if problems:
            return web.json_response({"status": "invalid event",
                                      "message": "Event object is invalid",
                                      "errors": problems}, status=400, dumps=_dumps)
        event = orjson.loads(body)
        key = event.get("dedup_key") or self._request_id()
        self.incidents[key] = event["event_action"]
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": key}, status=202, dumps=_dumps)


class OpsgenieAPI(_FakeAPI):
    """``/v2/alerts`` and its close/acknowledge calls; ``alerts`` maps alias → state."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.alerts: dict[str, str] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/alerts", self._create)
        app.router.add_post("/v2/alerts/{identifier}/{verb:close|acknowledge}", self._followup)
        return app

    async def _create(self, request: web.Request) -> web.Response:
        return await self._handle(request, opsgenie_alert_problems, create=True)

    async def _followup(self, request: web.Request) -> web.Response:
        def check(body: dict[str, Any]) -> dict[str, str]:
            problems: list[str] = []
            _unknown(body, set(_OG_FOLLOWUP), "", problems)
            for name, limit in _OG_FOLLOWUP.items():
                _text(body, name, limit, problems)
            if request.query.get("identifierType", "id") not in ("id", "tiny", "alias"):
                problems.append("'identifierType' must be one of id, tiny, alias")
            return {p.split("'")[1]: p for p in problems}
        return await self._handle(request, check, create=False)

    async def _handle(self, request: web.Request, check: _Check, *,
                      create: bool) -> web.Response:
        body = await request.read()
        if request.headers.get("Authorization") != f"GenieKey {self.api_key}":
            self._record(request, body, ["Could not authenticate"])
            return self._answer(401, {"message": "Could not authenticate"})
        try:
            parsed = orjson.loads(body) if body or create else {}
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            self._record(request, body, ["body is not a JSON object"])
            return self._answer(400, {"message": "Request body is not a valid JSON object"})
        errors = check(parsed)
        self._record(request, body, list(errors.values()))
        if (scripted := self._scripted()) is not None:
            return scripted
        if errors:
            return self._answer(422, {"message": "Request body is not processable. "
                                      "Please check the errors.", "errors": errors})
        if create:
            self.alerts[parsed.get("alias") or self._request_id()] = "open"
        elif request.query.get("identifierType") == "alias":
            verb = request.match_info["verb"]
            self.alerts[request.match_info["identifier"]] = (
                "closed" if verb == "close" else "acknowledged")
        return self._answer(202, {"result": "Request will be processed"})

    def _answer(self, status: int, body: dict[str, Any]) -> web.Response:
        body = {**body, "took": 0.001, "requestId": self._request_id()}
        return web.json_response(body, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@asynccontextmanager
async def serve(api: PagerDutyAPI | OpsgenieAPI) -> AsyncIterator[str]:
    """Run ``api`` on a free loopback port; yields (and sets ``api.url`` to) its base URL."""
    runner = web.AppRunner(api.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    api.url = f"http://{host}:{port}"
    try:
        yield api.url
    finally:
        await runner.cleanup()


def sample_page(**changes: Any) -> Page:
    """A trigger page as the pipeline builds it, with a small packed context."""
    fields: dict[str, Any] = dict(
        dedup_key="hotpath-f1", summary="checkout error_ratio{region=eu-west-1} 0.21 vs "
        "baseline 0.004 (dev 12.3) — budget exhausted", severity="critical",
        service="checkout", metric="error_ratio", labels={"region": "eu-west-1"}, value=0.21,
        baseline=0.004, deviation=12.3, confidence=0.97, detectors=("ewma", "mad"),
        reasons=("rule matched", "budget exhausted"), recent=(0.003, 0.21), finding_id="f1",
        ts=1764132000.25, created=1764132001.0, action=None,
        links={"approve": "http://console.local/approve/t1",
               "deny": "http://console.local/deny/t1"},
        context={"what": "checkout error_ratio eu-west-1", "since": "2025-11-26T04:39:00Z",
                 "sparkline": "▁▁▂▇█", "chart_url": "http://console.local/chart/f1",
                 "sparkline_url": "http://console.local/spark/f1.png",
                 "changes": [{"kind": "deploy", "version": "v1.4.2"}], "owner": "payments"},
    )
    fields.update(changes)
    return Page(**fields)


def oversized_context() -> dict[str, Any]:
    """About 2 MB of context: a long change list, a huge runbook text and small fields."""
    return {
        "what": "checkout error_ratio eu-west-1",
        "changes": [{"kind": "deploy", "version": f"v{i}", "description": "roll out " * 8}
                    for i in range(12_000)],
        "runbook": "restart the pods, then check the queue. " * 20_000,
        "owner": "payments",
    }
