"""Local HTTP receivers standing in for the remediation target and the pager.

:class:`ActionReceiver` plays a remediation API (``POST /actions``): given the webhook
secret it first checks the executor's ``X-Hotpath-Signature`` (HMAC over timestamp and
body, :func:`escalation.executors.signing.verify`) and answers 401 to a missing or bad one;
it validates the executor's JSON, is idempotent on the ``Idempotency-Key`` header like real
remediation APIs (a repeated key is answered ``duplicate`` and not executed again) and
reports each new action to a callback — in the demo, the fleet's heal. :class:`PageReceiver`
plays a generic webhook pager (``POST /pages``): it checks every page field and its type,
keeps the pages, writes them to ``pages.jsonl`` and hands each new one to a callback — in
the demo, the on-call who approves what the page asks. Both listen on 127.0.0.1 on a port
the kernel picks and are async context managers; integration tests use them too.

Bad requests get 400 (401 for the signature) and ``{"error": <reason>, "field": <name or
null>}``, plus ``"detail"`` where the reason has one. The checks are pure functions:

>>> check_action({"action": "restart_pods"}, "k1")
Problem(reason=<Rejection.MISSING_FIELD: 'missing field'>, field='target', detail=None)
>>> check_page({"dedup_key": 7}, None).to_dict()
{'error': 'wrong type: expected string', 'field': 'dedup_key'}
>>> check_signature([b"k"], None, b"{}", now=0.0).to_dict()
{'error': 'missing header', 'field': 'X-Hotpath-Signature'}
"""

from __future__ import annotations

import enum
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from escalation.errors import SignatureError
from escalation.executors.signing import SIGNATURE_HEADER, verify

IDEMPOTENCY_HEADER = "Idempotency-Key"


class Rejection(enum.Enum):
    """Why a receiver answered 400; the value is the ``error`` of the JSON body."""

    NOT_AN_OBJECT = "body is not a JSON object"
    MISSING_FIELD = "missing field"
    MISSING_HEADER = "missing header"
    KEY_MISMATCH = "Idempotency-Key header does not match the body"
    NOT_STRING = "wrong type: expected string"
    NOT_NUMBER = "wrong type: expected number"
    NOT_NUMBER_OR_NULL = "wrong type: expected number or null"
    NOT_STRING_OR_NULL = "wrong type: expected string or null"
    NOT_OBJECT = "wrong type: expected object"
    NOT_STRING_MAP = "wrong type: expected object of strings"
    NOT_STRING_LIST = "wrong type: expected array of strings"
    NOT_NUMBER_LIST = "wrong type: expected array of numbers"
    BAD_SEVERITY = "wrong value: expected critical, error, warning or info"
    BAD_SIGNATURE = "bad signature"


@dataclass(frozen=True, slots=True)
class Problem:
    reason: Rejection
    field: str | None = None
    detail: str | None = None  # e.g. which part of the signature failed

    @property
    def status(self) -> int:
        """401 when the signature is missing or wrong (who sent it), else 400 (what it says)."""
        return 401 if self.field == SIGNATURE_HEADER else 400

    def to_dict(self) -> dict[str, str | None]:
        out = {"error": self.reason.value, "field": self.field}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_Check = Callable[[object], bool]
_STRING: tuple[_Check, Rejection] = (lambda v: isinstance(v, str), Rejection.NOT_STRING)
_NUMBER: tuple[_Check, Rejection] = (_is_number, Rejection.NOT_NUMBER)
_NUMBER_OR_NULL: tuple[_Check, Rejection] = (
    lambda v: v is None or _is_number(v), Rejection.NOT_NUMBER_OR_NULL)
_STRING_OR_NULL: tuple[_Check, Rejection] = (
    lambda v: v is None or isinstance(v, str), Rejection.NOT_STRING_OR_NULL)
_OBJECT: tuple[_Check, Rejection] = (lambda v: isinstance(v, dict), Rejection.NOT_OBJECT)
_STRING_MAP: tuple[_Check, Rejection] = (
    lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    Rejection.NOT_STRING_MAP)
_STRING_LIST: tuple[_Check, Rejection] = (
    lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    Rejection.NOT_STRING_LIST)
_NUMBER_LIST: tuple[_Check, Rejection] = (
    lambda v: isinstance(v, list) and all(_is_number(x) for x in v), Rejection.NOT_NUMBER_LIST)
_SEVERITY: tuple[_Check, Rejection] = (
    lambda v: v in ("critical", "error", "warning", "info"), Rejection.BAD_SEVERITY)

# The executor's request (escalation.executors.base.ActionRequest.to_dict), in the order
# fields are checked; ``context`` carries the governed request behind the action.
ACTION_FIELDS: Mapping[str, tuple[_Check, Rejection]] = {
    "action": _STRING, "target": _STRING, "service": _STRING, "finding_id": _STRING,
    "idempotency_key": _STRING, "rule": _STRING, "params": _OBJECT, "context": _OBJECT,
}

# escalation.page.Page.to_dict(); value/baseline/deviation are null when unknown (NaN).
PAGE_FIELDS: Mapping[str, tuple[_Check, Rejection]] = {
    "dedup_key": _STRING, "summary": _STRING, "severity": _SEVERITY, "service": _STRING,
    "metric": _STRING, "labels": _STRING_MAP, "value": _NUMBER_OR_NULL,
    "baseline": _NUMBER_OR_NULL, "deviation": _NUMBER_OR_NULL, "confidence": _NUMBER,
    "detectors": _STRING_LIST, "reasons": _STRING_LIST, "recent": _NUMBER_LIST,
    "finding_id": _STRING, "ts": _NUMBER, "created": _NUMBER, "action": _STRING_OR_NULL,
    "links": _STRING_MAP,  # approve/deny URLs; {} when the page asks nothing
}


def _check(
    body: object, fields: Mapping[str, tuple[_Check, Rejection]], header: str | None,
    key_field: str, header_required: bool,
) -> Problem | None:
    if not isinstance(body, dict):
        return Problem(Rejection.NOT_AN_OBJECT)
    for name, (ok, rejection) in fields.items():
        if name not in body:
            return Problem(Rejection.MISSING_FIELD, name)
        if not ok(body[name]):
            return Problem(rejection, name)
    if header is None:
        return Problem(Rejection.MISSING_HEADER, IDEMPOTENCY_HEADER) if header_required else None
    if header != body[key_field]:
        return Problem(Rejection.KEY_MISMATCH, key_field)
    return None


def check_action(body: object, idempotency_key: str | None) -> Problem | None:
    """Why an action request is bad, or None; the header must equal ``idempotency_key``.

    >>> ok = {"action": "scale_out", "target": "payments", "service": "payments",
    ...       "finding_id": "f1", "idempotency_key": "r:f1", "rule": "r", "params": {},
    ...       "context": {}}
    >>> check_action(ok, "r:f1") is None
    True
    >>> check_action(ok, None).to_dict()
    {'error': 'missing header', 'field': 'Idempotency-Key'}
    >>> check_action({**ok, "params": []}, "r:f1").to_dict()
    {'error': 'wrong type: expected object', 'field': 'params'}
    """
    return _check(body, ACTION_FIELDS, idempotency_key, "idempotency_key", True)


def check_page(body: object, idempotency_key: str | None) -> Problem | None:
    """Why a page is bad, or None; an ``Idempotency-Key`` header, if sent, must be the dedup key.

    >>> check_page([], None).to_dict()
    {'error': 'body is not a JSON object', 'field': None}
    """
    return _check(body, PAGE_FIELDS, idempotency_key, "dedup_key", False)


def check_signature(secrets: Sequence[bytes], header: str | None, body: bytes,
                    now: float) -> Problem | None:
    """Why a request's ``X-Hotpath-Signature`` does not prove it came from the executor.

    ``now`` is wall-clock seconds: the signed timestamp must be within the tolerance of it.

    >>> from escalation.executors.signing import sign
    >>> check_signature([b"k"], sign(b"k", 1000, b"{}"), b"{}", now=1001.0) is None
    True
    >>> check_signature([b"k"], sign(b"other", 1000, b"{}"), b"{}", now=1001.0).to_dict()
    ... # doctest: +NORMALIZE_WHITESPACE
    {'error': 'bad signature', 'field': 'X-Hotpath-Signature',
     'detail': 'signature: no v1 signature matches the body under any of 1 secret(s)'}
    """
    if header is None:
        return Problem(Rejection.MISSING_HEADER, SIGNATURE_HEADER)
    try:
        verify(secrets, header, body, now)
    except SignatureError as e:
        return Problem(Rejection.BAD_SIGNATURE, SIGNATURE_HEADER, str(e))
    return None


def _parse(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # reported as "body is not a JSON object"


async def _json_body(request: web.Request) -> object:
    return _parse(await request.read())


def _answer(status: int, body: Mapping[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class LoopbackServer:
    """An aiohttp app on 127.0.0.1; the socket is bound before serving, so no port race."""

    _path: str

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._path}"

    async def _handle(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_post(self._path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@dataclass(frozen=True, slots=True)
class ReceivedAction:
    """One request to ``/actions`` as it arrived, and how it was answered."""

    idempotency_key: str | None
    body: object
    status: int
    outcome: str  # "accepted", "duplicate" or the rejection's error text


class ActionReceiver(LoopbackServer):
    """``POST /actions``: 202 accepted (``on_action(body)`` runs), 200 duplicate, 400 bad
    body, or 401 when ``secret`` is given and the signature is missing or does not verify.

    ``secret`` is the webhook executor's signing key (the demo sets it for the run);
    ``wall_clock`` is what a signature's timestamp is checked against. ``received`` holds
    every request; ``executed`` counts per idempotency key how often the action actually ran
    (never more than once); ``problems`` are the requests answered 4xx.
    """

    _path = "/actions"

    def __init__(self, on_action: Callable[[dict[str, Any]], None] | None = None, *,
                 secret: bytes | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        if secret is not None and not secret:
            raise ValueError("action receiver: an empty secret verifies nothing; pass None")
        self._on_action = on_action
        self._secrets = [] if secret is None else [secret]
        self._wall_clock = wall_clock
        self.received: list[ReceivedAction] = []
        self.executed: Counter[str] = Counter()

    @property
    def problems(self) -> list[ReceivedAction]:
        """The requests that were refused (400 or 401), in arrival order."""
        return [r for r in self.received if r.status >= 400]

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Bodies of the requests that were executed, in arrival order."""
        return [
            r.body for r in self.received if r.outcome == "accepted" and isinstance(r.body, dict)
        ]

    async def _handle(self, request: web.Request) -> web.Response:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        raw = await request.read()
        body = _parse(raw)
        # Who sent it before what it says: an unsigned request is not read as an action.
        problem = (None if not self._secrets else check_signature(
            self._secrets, request.headers.get(SIGNATURE_HEADER), raw, self._wall_clock()))
        if problem is None:
            problem = check_action(body, key)
        if problem is not None:
            outcome = problem.reason.value + (f": {problem.detail}" if problem.detail else "")
            self.received.append(ReceivedAction(key, body, problem.status, outcome))
            return _answer(problem.status, problem.to_dict())
        assert isinstance(body, dict) and key is not None  # check_action guarantees both
        if self.executed[key]:
            self.received.append(ReceivedAction(key, body, 200, "duplicate"))
            return _answer(200, {"status": "duplicate", "idempotency_key": key})
        # Marked before the callback so a concurrent retry of the same key cannot run it twice
        # (there is no await in between, but a callback could one day be made async).
        self.executed[key] += 1
        self.received.append(ReceivedAction(key, body, 202, "accepted"))
        if self._on_action is not None:
            self._on_action(body)
        return _answer(202, {"status": "accepted", "idempotency_key": key})


class PageReceiver(LoopbackServer):
    """``POST /pages``: 202 for a valid page (kept, and appended to ``path`` if given), or 400.

    ``path`` is the JSON-lines file itself. ``on_page(page)`` runs for the first arrival of
    each ``dedup_key`` (a re-send is not a new incident); it must not block — the demo's
    :class:`~hotpath.demo.oncall.OnCall` schedules its answer as a task.

    ``pages`` holds every valid page in arrival order, re-sends included; ``unique_pages``
    the first of each ``dedup_key`` — what an on-call engineer would see as incidents.
    """

    _path = "/pages"

    def __init__(self, path: Path | None = None,
                 on_page: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.path = path
        self._on_page = on_page
        self.pages: list[dict[str, Any]] = []
        self.rejected: list[tuple[object, Problem]] = []
        self._dedup_keys: set[str] = set()

    @property
    def unique_pages(self) -> list[dict[str, Any]]:
        first: dict[str, dict[str, Any]] = {}
        for page in self.pages:
            first.setdefault(page["dedup_key"], page)
        return list(first.values())

    async def _handle(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        problem = check_page(body, request.headers.get(IDEMPOTENCY_HEADER))
        if problem is not None:
            self.rejected.append((body, problem))
            return _answer(400, problem.to_dict())
        assert isinstance(body, dict)  # check_page guarantees it
        duplicate = body["dedup_key"] in self._dedup_keys
        self._dedup_keys.add(body["dedup_key"])
        self.pages.append(body)
        if self.path is not None:
            with self.path.open("ab") as out:
                out.write(orjson.dumps(body) + b"\n")
        if not duplicate and self._on_page is not None:
            self._on_page(body)
        status = "duplicate" if duplicate else "accepted"
        return _answer(202, {"status": status, "dedup_key": body["dedup_key"]})
