"""Acknowledge and resolve incidents over HTTP: the action API's bearer routes, and the
signed webhooks PagerDuty (v3) and Slack (interactive buttons) call when someone answers
a page there.

==========================================  ===============================================
route                                       answer
==========================================  ===============================================
``POST /v1/incidents/{key}/ack``            200 acked; 409 already_acked, already_resolved;
``POST /v1/incidents/{key}/resolve``        200 resolved; 409 already_resolved;
                                            404 unknown_incident; 401 without a bearer token
``POST /v1/inbound/pagerduty``              verified by ``X-PagerDuty-Signature``, not bearer
``POST /v1/inbound/slack``                  verified by ``X-Slack-Signature`` + timestamp
==========================================  ===============================================

The bearer routes act as the caller (``human:alice``). An inbound webhook acts as the
person the sender names (``pagerduty:Jane Doe (PU1)``, ``slack:jane (U1)``) and answers:
401 ``bad_signature`` (forged, wrong secret, stale timestamp: the detail says which), 400
``bad_request`` for a verified body that is not a well-formed event, 413 ``body_too_large``,
and otherwise 200 with ``code`` one of ``acked``, ``resolved``, ``already_acked``,
``already_resolved``, ``unknown_incident`` (an incident not ours: a PagerDuty subscription
may cover other services), ``duplicate`` (this event id was applied before: a replay) or
``ignored`` (an event type or button we do not act on) — the sender must not retry those.
A webhook route exists only when its secrets are configured. Every route answers 503
``unavailable`` when Redis does not, and every call is audited once through
``audit_api``, never with a token or a signature.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol

import orjson
from aiohttp import hdrs, web

from escalation.errors import RequestError, SignatureError, StoreUnavailable
from escalation.inbound import (
    PAGERDUTY_MAX_AGE_S,
    SLACK_TOLERANCE_S,
    InboundAction,
    parse_pagerduty,
    parse_slack,
    verify_pagerduty,
    verify_slack,
)
from escalation.oncall import Reason, Transition
from escalation.request import Actor, ActorKind
from hotpath.api import MAX_BODY_BYTES, PREFIX, Answer, bad_request, error
from hotpath.api_auth import Authenticator, AuthError

log = logging.getLogger(__name__)

_READ_CHUNK = 16 * 1024
Via = Literal["api", "pagerduty", "slack"]
# Told of every ack and resolve that changed an escalation (metrics: time to ack; telling
# the other pagers). It must not raise; if it does, the change stands and it is logged.
ChangeListener = Callable[[Transition, Via], Awaitable[None]]

# What each answer of the store means on the bearer routes.
_API_STATUS = {Reason.ACKED: 200, Reason.RESOLVED: 200, Reason.ALREADY_ACKED: 409,
               Reason.ALREADY_RESOLVED: 409}


class Escalations(Protocol):
    """What the routes need of ``escalation.oncall_store.OnCallStore``."""

    async def ack(self, incident_key: str, actor: str, now: float) -> Transition | None: ...
    async def resolve(self, incident_key: str, actor: str,
                      now: float) -> Transition | None: ...
    async def claim_event(self, source: str, event_id: str, ttl_s: float) -> bool: ...
    async def release_event(self, source: str, event_id: str) -> None: ...


class ApiAudit(Protocol):
    """The audit sink of the action API (``ControlPlane.audit_api``)."""

    def audit_api(self, actor: Actor | None, method: str, path: str, status: int, code: str,
                  detail: str) -> None: ...


def add_oncall_routes(app: web.Application, store: Escalations, auth: Authenticator,
                      audit: ApiAudit, *, clock: Callable[[], float],
                      pagerduty_secrets: Sequence[bytes] = (),
                      slack_secrets: Sequence[bytes] = (),
                      on_change: ChangeListener | None = None,
                      max_body_bytes: int = MAX_BODY_BYTES,
                      pagerduty_max_age_s: float = PAGERDUTY_MAX_AGE_S,
                      slack_tolerance_s: float = SLACK_TOLERANCE_S) -> None:
    """Add the ack/resolve routes, and the inbound webhooks whose secrets are given."""
    routes = _Routes(store, auth, audit, clock, on_change, max_body_bytes)
    r = app.router
    r.add_post(f"{PREFIX}/incidents/{{incident_key}}/ack", routes.bearer("ack"))
    r.add_post(f"{PREFIX}/incidents/{{incident_key}}/resolve", routes.bearer("resolve"))
    if pagerduty_secrets:
        pd = tuple(pagerduty_secrets)

        def pagerduty(request: web.Request, body: bytes, now: float) -> InboundAction | None:
            verify_pagerduty(pd, request.headers, body)
            return parse_pagerduty(body, now, pagerduty_max_age_s)

        # Accepted events are ±max_age around now: remember ids across that whole span.
        r.add_post(f"{PREFIX}/inbound/pagerduty",
                   routes.signed("pagerduty", pagerduty, 2 * pagerduty_max_age_s))
    if slack_secrets:
        sl = tuple(slack_secrets)

        def slack(request: web.Request, body: bytes, now: float) -> InboundAction | None:
            verify_slack(sl, request.headers, body, now, slack_tolerance_s)
            return parse_slack(body)

        r.add_post(f"{PREFIX}/inbound/slack",
                   routes.signed("slack", slack, 2 * slack_tolerance_s))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Reader = Callable[[web.Request, bytes, float], InboundAction | None]


class _TooLarge(Exception):
    pass


class _Routes:
    def __init__(self, store: Escalations, auth: Authenticator, audit: ApiAudit,
                 clock: Callable[[], float], on_change: ChangeListener | None,
                 max_body_bytes: int) -> None:
        self._store = store
        self._auth = auth
        self._audit = audit
        self._clock = clock
        self._on_change = on_change
        self._max = max_body_bytes

    def _respond(self, request: web.Request, actor: Actor | None,
                 answer: Answer) -> web.Response:
        self._audit.audit_api(actor, request.method, request.path, answer.status,
                              answer.code, answer.detail)
        return web.Response(body=orjson.dumps(answer.body), status=answer.status,
                            headers=answer.headers, content_type="application/json")

    async def _changed(self, t: Transition, via: Via) -> None:
        if self._on_change is None or t.reason not in (Reason.ACKED, Reason.RESOLVED):
            return
        try:
            # Awaited before answering: the pagers' ack/resolve is in the outbox first.
            await self._on_change(t, via)
        except Exception:
            log.exception("on-call change listener failed for %s", t.state.incident_key)

    async def _apply(self, kind: Literal["ack", "resolve"], key: str,
                     actor: str) -> Transition | None:
        now = self._clock()
        if kind == "ack":
            return await self._store.ack(key, actor, now)
        return await self._store.resolve(key, actor, now)

    # --- bearer: POST /v1/incidents/{key}/ack|resolve ----------------------------------

    def bearer(self, kind: Literal["ack", "resolve"]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            actor: Actor | None = None
            try:
                actor = self._auth.authenticate(request.headers.get(hdrs.AUTHORIZATION))
                key = request.match_info["incident_key"]
                if actor.kind is not ActorKind.HUMAN:
                    # Escalation exists to reach a person: a machine may not stop it.
                    return self._respond(request, actor, error(
                        403, "not_a_person", f"{actor} may not {kind} incidents; only people"))
                t = await self._apply(kind, key, str(actor))
                if t is None:
                    answer = error(404, "unknown_incident", f"no escalation for incident {key}")
                else:
                    await self._changed(t, "api")
                    answer = _transition(_API_STATUS.get(t.reason, 200), t)
            except AuthError as e:
                answer = _unauthorized(e)
            except StoreUnavailable as e:
                answer = error(503, "unavailable", str(e))
            return self._respond(request, actor, answer)

        return handle

    # --- signed: POST /v1/inbound/pagerduty|slack ---------------------------------------

    def signed(self, source: Via, read: Reader, remember_s: float) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            actor: Actor | None = None
            try:
                body = await self._body(request)
                action = read(request, body, self._clock())
                if action is None:
                    answer = Answer(200, {"code": "ignored", "detail": _IGNORED[source]},
                                    "ignored", _IGNORED[source])
                else:
                    actor = Actor(ActorKind.HUMAN, action.actor)
                    answer = await self._inbound(action, remember_s)
            except _TooLarge:
                answer = error(413, "body_too_large",
                               f"the body must be at most {self._max} bytes")
            except SignatureError as e:
                answer = error(401, "bad_signature", str(e))
            except RequestError as e:
                answer = bad_request(e.problems)
            except StoreUnavailable as e:
                answer = error(503, "unavailable", str(e))
            return self._respond(request, actor, answer)

        return handle

    async def _inbound(self, action: InboundAction, remember_s: float) -> Answer:
        src, eid = action.source, action.event_id
        if not await self._store.claim_event(src, eid, remember_s):
            detail = f"{src} event {eid} was already applied"
            return Answer(200, {"code": "duplicate", "detail": detail}, "duplicate", detail)
        try:
            t = await self._apply(action.kind, action.incident_key, action.actor)
        except StoreUnavailable:
            # The sender retries a 503; the retry must not be taken for a replay.
            try:
                await self._store.release_event(src, eid)
            except StoreUnavailable:
                log.warning("could not release %s event %s after a failed apply", src, eid)
            raise
        if t is None:
            detail = f"no escalation for incident {action.incident_key}"
            return Answer(200, {"code": "unknown_incident", "detail": detail},
                          "unknown_incident", detail)
        await self._changed(t, action.source)
        return _transition(200, t)

    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self._max:
            raise _TooLarge
        body = bytearray()
        # Chunks, not Content-Length: a chunked body has none.
        while chunk := await request.content.read(_READ_CHUNK):
            body += chunk
            if len(body) > self._max:
                raise _TooLarge
        return bytes(body)


_IGNORED: dict[Via, str] = {
    "api": "",
    "pagerduty": "not an incident.acknowledged or incident.resolved event",
    "slack": "not an ack or resolve button of a block_actions interaction",
}


def _transition(status: int, t: Transition) -> Answer:
    code = t.reason.value
    if status >= 400:
        return error(status, code, t.detail)
    return Answer(status, {"code": code, "detail": t.detail, "escalation": t.state.to_dict()},
                  code, t.detail)


def _unauthorized(e: AuthError) -> Answer:
    challenge = 'Bearer realm="hotpath"'
    if e.code == "unknown_token":
        challenge += ', error="invalid_token"'  # RFC 6750 §3.1
    return error(401, e.code, e.detail, {hdrs.WWW_AUTHENTICATE: challenge})
