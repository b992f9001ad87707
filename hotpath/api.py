"""The action API: outside agents and humans request, follow and decide actions over HTTP.

Every route is one thin translation between JSON and the control plane
(:class:`ControlPlaneApi`): the caller authenticates with a bearer token
(:mod:`hotpath.api_auth`) and *is* the request's actor; what to allow is decided by the
control plane, the same path automation takes. The API only reads bodies, maps answers to
status codes and audits every call — accepted, refused, unauthenticated or malformed —
exactly once through :meth:`ControlPlaneApi.audit_api`, never with a token.

==========================================  ===================================================
route                                       answer
==========================================  ===================================================
``POST /v1/actions``                        202 queued/pending_approval/dry_run, 200 duplicate,
                                            403 refused (a Submission); 400 bad fields,
                                            403 actor_mismatch, 413 too large, 415 not JSON
``GET  /v1/actions/{request_id}``           200 the request's latest state, 404
``GET  /v1/approvals``                      200 ``{"approvals": [...]}`` still pending
``GET  /v1/approvals/{approval_id}``        200 the approval in any state, 404
``POST /v1/approvals/{id}/approve|deny``    200 the decided approval; a refusal is 403, or 404
                                            unknown_approval, 409 already_decided,
                                            410 approval_expired, 503 unavailable
``GET  /openapi.json``                      the OpenAPI document (``hotpath/openapi.yaml``)
==========================================  ===================================================

Any ``/v1`` route also answers 401 (``WWW-Authenticate: Bearer``) without a known token,
503 ``unavailable`` when a store the control plane reads is down, and 500 ``internal_error``
if the control plane raised anything else. Errors are ``{"error": code, "detail":
text}``; a malformed body is ``{"error": "bad_request", "problems": [...]}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Literal, Protocol

import orjson
from aiohttp import hdrs, web
from ruamel.yaml import YAML

from escalation.approvals import DecideResult, PendingApproval
from escalation.errors import StoreUnavailable
from escalation.request import Actor, Request
from escalation.request_parse import RequestError, parse_request
from escalation.submission import Submission, SubmitStatus
from hotpath.api_auth import Authenticator, AuthError

log = logging.getLogger(__name__)

OPENAPI_PATH = "/openapi.json"
PREFIX = "/v1"
# A request body is an action request (params, evidence) or an approval decision: a few KiB
# at most. 64 KiB leaves room for generous evidence while bounding what one call can make
# the server buffer.
MAX_BODY_BYTES = 64 * 1024
_READ_CHUNK = 16 * 1024

SUBMIT_STATUS: Mapping[SubmitStatus, int] = {
    SubmitStatus.QUEUED: 202, SubmitStatus.PENDING_APPROVAL: 202, SubmitStatus.DRY_RUN: 202,
    SubmitStatus.DUPLICATE: 200, SubmitStatus.REFUSED: 403,
}
# Refused approve/deny checks whose HTTP meaning is more exact than 403 Forbidden.
DECIDE_STATUS: Mapping[str, int] = {
    "unknown_approval": 404, "already_decided": 409, "approval_expired": 410,
    "unavailable": 503,
}
DECISION_FIELDS = ("token", "note")
# A store the control plane reads did not answer: 503, the caller may retry.
_UNAVAILABLE = StoreUnavailable  # every Redis-backed store: answer 503, never guess


class ControlPlaneApi(Protocol):
    """What the API needs of the control plane (``escalation.control.ControlPlane``)."""

    async def submit(self, req: Request) -> Submission: ...
    async def status(self, request_id: str) -> dict[str, Any] | None: ...
    async def pending_approvals(self) -> list[PendingApproval]: ...
    async def approval(self, approval_id: str) -> PendingApproval | None: ...
    async def decide(self, approval_id: str, token: str, approver: Actor,
                     decision: Literal["approve", "deny"], note: str) -> DecideResult: ...
    def audit_api(self, actor: Actor | None, method: str, path: str, status: int, code: str,
                  detail: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """One response and its audit line: ``code`` and ``detail`` go to ``audit_api``."""

    status: int
    body: Any
    code: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)


def error(status: int, code: str, detail: str,
          headers: Mapping[str, str] | None = None) -> Answer:
    """The answer ``{"error": code, "detail": detail}``.

    >>> error(404, "unknown_request", "no request req_1").body
    {'error': 'unknown_request', 'detail': 'no request req_1'}
    """
    return Answer(status, {"error": code, "detail": detail}, code, detail, headers or {})


def bad_request(problems: list[str]) -> Answer:
    """The answer to a malformed body: every problem, one line each."""
    return Answer(400, {"error": "bad_request", "problems": problems}, "bad_request",
                  "; ".join(problems))


class _Refused(Exception):
    """Ends a handler early with an error answer (bad body, unknown id)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.code)
        self.answer = answer


def load_openapi() -> dict[str, Any]:
    """The API's OpenAPI document, as shipped in the package (``hotpath/openapi.yaml``)."""
    text = files("hotpath").joinpath("openapi.yaml").read_text(encoding="utf-8")
    doc: dict[str, Any] = YAML(typ="safe", pure=True).load(text)
    return doc


Endpoint = Callable[[web.Request, Actor], Awaitable[Answer]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_api_routes(app: web.Application, control: ControlPlaneApi, auth: Authenticator, *,
                   clock: Callable[[], float], default_environment: str,
                   max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Add the action API's routes (and its 401/404/405 answers under ``/v1``) to ``app``."""
    api = _Api(control, auth, clock, default_environment, max_body_bytes)
    r = app.router
    r.add_post(f"{PREFIX}/actions", api.guard(api.submit))
    r.add_get(f"{PREFIX}/actions/{{request_id}}", api.guard(api.status), allow_head=False)
    r.add_get(f"{PREFIX}/approvals", api.guard(api.pending), allow_head=False)
    r.add_get(f"{PREFIX}/approvals/{{approval_id}}", api.guard(api.approval),
              allow_head=False)
    r.add_post(f"{PREFIX}/approvals/{{approval_id}}/approve", api.guard(api.approve))
    r.add_post(f"{PREFIX}/approvals/{{approval_id}}/deny", api.guard(api.deny))
    r.add_get(OPENAPI_PATH, api.openapi, allow_head=False)
    app.middlewares.append(api.unmatched)


class _Api:
    def __init__(self, control: ControlPlaneApi, auth: Authenticator,
                 clock: Callable[[], float], default_environment: str,
                 max_body_bytes: int) -> None:
        self._control = control
        self._auth = auth
        self._clock = clock
        self._env = default_environment
        self._max = max_body_bytes
        # Parsed once: a broken document fails at startup, not on the first request for it.
        self._openapi = orjson.dumps(load_openapi())

    # --- plumbing: authenticate, run, audit once, answer JSON ---------------------------

    def guard(self, endpoint: Endpoint) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            actor: Actor | None = None
            try:
                actor = self._auth.authenticate(request.headers.get(hdrs.AUTHORIZATION))
                answer = await endpoint(request, actor)
            except AuthError as e:
                answer = _unauthorized(e)
            except _Refused as e:
                answer = e.answer
            except _UNAVAILABLE as e:
                answer = error(503, "unavailable", str(e))
            except Exception as e:
                # The boundary: whatever the control plane raised, the caller gets JSON
                # and the call is still audited.
                log.exception("action API %s %s failed", request.method, request.path)
                answer = error(500, "internal_error", f"the server failed ({type(e).__name__}); "
                               "see its log")
            return self._respond(request, actor, answer)

        return handle

    def _respond(self, request: web.Request, actor: Actor | None, answer: Answer
                 ) -> web.Response:
        self._control.audit_api(actor, request.method, request.path, answer.status,
                                answer.code, answer.detail)
        return web.Response(body=orjson.dumps(answer.body), status=answer.status,
                            headers=answer.headers, content_type="application/json")

    @web.middleware
    async def unmatched(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """No route under ``/v1``: authenticate first (unknown callers learn nothing about
        which routes exist), then 404 or 405 as JSON, audited like any call."""
        exc = request.match_info.http_exception
        if exc is None or not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
            return await handler(request)
        actor: Actor | None = None
        try:
            actor = self._auth.authenticate(request.headers.get(hdrs.AUTHORIZATION))
        except AuthError as e:
            return self._respond(request, None, _unauthorized(e))
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            answer = error(405, "method_not_allowed",
                           f"{request.method} is not allowed here; allowed: {allowed}",
                           {hdrs.ALLOW: allowed})
        else:
            answer = error(404, "not_found", f"no route {request.method} {request.path}")
        return self._respond(request, actor, answer)

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        self._control.audit_api(None, request.method, request.path, 200, "ok",
                                "openapi document")
        return web.Response(body=self._openapi, content_type="application/json")

    # --- bodies ---------------------------------------------------------------------------

    async def _json_body(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise _Refused(error(415, "unsupported_media_type",
                                 f"Content-Type must be application/json, got "
                                 f"{request.content_type}"))
        too_large = _Refused(error(413, "body_too_large",
                                   f"the body must be at most {self._max} bytes"))
        if request.content_length is not None and request.content_length > self._max:
            raise too_large
        body = bytearray()
        # Read in chunks rather than trusting Content-Length: a chunked body has none.
        while chunk := await request.content.read(_READ_CHUNK):
            body += chunk
            if len(body) > self._max:
                raise too_large
        if not body:
            raise _Refused(bad_request(["body is empty: expected a JSON object"]))
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            # The position, not the parser's wording: that changes between orjson releases.
            raise _Refused(bad_request(
                [f"body is not valid JSON (line {e.lineno} column {e.colno})"])) from None

    # --- routes ---------------------------------------------------------------------------

    async def submit(self, request: web.Request, actor: Actor) -> Answer:
        raw = await self._json_body(request)
        problems = _claimed_actor_problems(raw, actor)
        try:
            req = parse_request(raw, actor=actor, now=self._clock(),
                                default_environment=self._env)
        except RequestError as e:
            raise _Refused(bad_request([*problems, *e.problems])) from None
        if problems:
            raise _Refused(bad_request(problems))
        sub = await self._control.submit(req)
        rid = sub.request.request_id
        status = SUBMIT_STATUS[sub.status]
        if sub.status is SubmitStatus.REFUSED and sub.checks and (
                sub.checks[-1].code == "idempotency_conflict"):
            status = 409  # the key names another change: a client bug, not a refusal
        headers: dict[str, str] = {}
        if status < 400:
            headers[hdrs.LOCATION] = f"{PREFIX}/actions/{rid}"
        return Answer(status, sub.to_dict(), sub.status.value, f"{rid}: {sub.reason}", headers)

    async def status(self, request: web.Request, actor: Actor) -> Answer:
        rid = request.match_info["request_id"]
        state = await self._control.status(rid)
        if state is None:
            raise _Refused(error(404, "unknown_request", f"no request {rid}"))
        return Answer(200, state, "ok", rid)

    async def pending(self, request: web.Request, actor: Actor) -> Answer:
        found = await self._control.pending_approvals()
        return Answer(200, {"approvals": [a.to_dict() for a in found]}, "ok",
                      f"{len(found)} pending")

    async def approval(self, request: web.Request, actor: Actor) -> Answer:
        aid = request.match_info["approval_id"]
        found = await self._control.approval(aid)
        if found is None:
            raise _Refused(error(404, "unknown_approval", f"no approval {aid}"))
        return Answer(200, found.to_dict(), "ok", f"{aid} is {found.state.value}")

    async def approve(self, request: web.Request, actor: Actor) -> Answer:
        return await self._decide(request, actor, "approve")

    async def deny(self, request: web.Request, actor: Actor) -> Answer:
        return await self._decide(request, actor, "deny")

    async def _decide(self, request: web.Request, actor: Actor,
                      decision: Literal["approve", "deny"]) -> Answer:
        aid = request.match_info["approval_id"]
        token, note = await self._decision_body(request)
        result = await self._control.decide(aid, token, actor, decision, note)
        check = result.check
        if not check.ok:
            return error(DECIDE_STATUS.get(check.code, 403), check.code, check.detail)
        if result.approval is None:
            raise RuntimeError(f"decide({aid}) answered {check.code} without the approval")
        return Answer(200, result.approval.to_dict(), check.code, str(check))

    async def _decision_body(self, request: web.Request) -> tuple[str, str]:
        """``token`` from the JSON body, or from ``?token=`` (the page's approve/deny links)
        when there is no body; ``note`` optional."""
        query_token = request.query.get("token")
        link_only = query_token is not None and not request.body_exists
        raw = {} if link_only else await self._json_body(request)
        if not isinstance(raw, dict):
            raise _Refused(bad_request([f"body: must be a JSON object, got {_kind(raw)}"]))
        problems = [f"body: unknown field {k!r}" for k in raw if k not in DECISION_FIELDS]
        token = raw.get("token", query_token)
        if "token" in raw and query_token is not None:
            problems.insert(0, "token: give it in the body or in the query, not both")
        elif token is None:
            problems.insert(0, "body: field 'token' is required")
        elif not isinstance(token, str):
            problems.insert(0, f"body: field 'token' must be a string, got {_kind(token)}")
        elif not token:
            problems.insert(0, "body: field 'token' must not be empty")
        note = raw.get("note", "")
        if not isinstance(note, str):
            problems.append(f"body: field 'note' must be a string, got {_kind(note)}")
        if problems:
            raise _Refused(bad_request(problems))
        return str(token), note


def _claimed_actor_problems(raw: Any, actor: Actor) -> list[str]:
    """The body may name its actor, but only the caller itself: anyone else is 403."""
    if not isinstance(raw, dict) or "actor" not in raw:
        return []
    claimed = raw["actor"]
    if not isinstance(claimed, str):
        return [f"request: field 'actor' must be a string, got {_kind(claimed)}"]
    try:
        named = Actor.parse(claimed)
    except ValueError as e:
        return [f"request: field 'actor': {e}"]
    if (named.kind, named.name) != (actor.kind, actor.name):
        raise _Refused(error(403, "actor_mismatch",
                             f"the body names actor {named} but the bearer token is {actor}'s"))
    return []


def _unauthorized(e: AuthError) -> Answer:
    challenge = 'Bearer realm="hotpath"'
    if e.code == "unknown_token":
        challenge += ', error="invalid_token"'  # RFC 6750 §3.1
    return error(401, e.code, e.detail, {hdrs.WWW_AUTHENTICATE: challenge})


def _kind(value: Any) -> str:
    # The names escalation.request_parse uses, so one body's problems read alike.
    return "null" if value is None else type(value).__name__
