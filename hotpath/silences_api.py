"""Silences over the API: create, list and expire (Alertmanager's silence workflow).

``POST /v1/silences`` ``{"matchers": {"service": "checkout", "metric": "*"}, "starts_at":
EPOCH (default now), "ends_at": EPOCH, "comment": "..."}`` → 201 with the silence (its
``created_by`` is the caller, never the body); ``GET /v1/silences`` → the silences not yet
ended; ``DELETE /v1/silences/{id}`` → 200 with the silence as it ended, 404 if none in force.
Bearer-authenticated like the rest of ``/v1``; every call audited once (never the token).
Bad bodies are 400 naming the field; Redis down is 503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import hdrs, web

from escalation.errors import StoreUnavailable
from escalation.request import Actor, ActorKind
from escalation.silences import Silence, SilenceStore
from hotpath.api_auth import Authenticator, AuthError

log = logging.getLogger(__name__)

PREFIX = "/v1"
MAX_BODY_BYTES = 16 * 1024  # a silence is a few matchers and a comment
# A silence that outlives a quarter is a forgotten one: pages nobody sees for months.
MAX_SILENCE_S = 90 * 86400

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiAudit(Protocol):
    def audit_api(self, actor: Actor | None, method: str, path: str, status: int, code: str,
                  detail: str) -> None: ...


def _answer(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body),
                        content_type="application/json")


class _Routes:
    def __init__(self, store: SilenceStore, auth: Authenticator, audit: ApiAudit,
                 clock: Callable[[], float]) -> None:
        self.store, self.auth, self.audit, self.clock = store, auth, audit, clock

    def guarded(self, work: Callable[[web.Request, Actor], Awaitable[tuple[int, Any, str, str]]]
                ) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            actor: Actor | None = None
            try:
                actor = self.auth.authenticate(request.headers.get(hdrs.AUTHORIZATION))
                if actor.kind is not ActorKind.HUMAN and request.method != "GET":
                    # A silence stops people being paged: only a person may set or lift one.
                    detail = f"{actor} may not change silences; only people"
                    status, body, code = 403, {"error": "not_a_person", "detail": detail}, \
                        "not_a_person"
                else:
                    status, body, code, detail = await work(request, actor)
            except AuthError as e:
                status, body, code, detail = 401, {"error": e.code, "detail": e.detail}, \
                    e.code, e.detail
            except StoreUnavailable as e:
                status, body, code, detail = 503, {"error": "unavailable", "detail": str(e)}, \
                    "unavailable", str(e)
            except Exception as e:  # audited, and JSON like every other answer
                log.exception("silences API: %s %s failed", request.method, request.path)
                status, body, code, detail = 500, {"error": "internal_error", "detail":
                                                   "the server failed; see its log"}, \
                    "internal_error", f"{type(e).__name__}: {e}"
            self.audit.audit_api(actor, request.method, request.path, status, code, detail)
            resp = _answer(status, body)
            if status == 401:
                resp.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="hotpath"'
            return resp
        return handle

    async def create(self, request: web.Request, actor: Actor) -> tuple[int, Any, str, str]:
        raw = b""
        while len(raw) <= MAX_BODY_BYTES:  # a body may arrive in several chunks
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return 413, {"error": "too_large", "detail": f"body over {MAX_BODY_BYTES} bytes"}, \
                "too_large", "body too large"
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, {"error": "bad_request", "problems": ["silence: body is not JSON"]}, \
                "bad_request", "body is not JSON"
        if not isinstance(body, dict):
            return 400, {"error": "bad_request", "problems": ["silence: must be a JSON object"]}, \
                "bad_request", "not an object"
        now = self.clock()
        unknown = sorted(set(body) - {"matchers", "starts_at", "ends_at", "comment"})
        problems = [f"silence: unknown field {k!r}" for k in unknown]
        if "comment" in body and not (isinstance(body["comment"], str) and body["comment"]):
            problems.append("silence: comment must be a non-empty string (say why)")
        matchers = body.get("matchers")
        if isinstance(matchers, dict) and not all(isinstance(v, str) for v in matchers.values()):
            problems.append("silence: every matcher must be a string glob")
        ends = body.get("ends_at")
        if isinstance(ends, int | float) and not isinstance(ends, bool) and (
                ends - now > MAX_SILENCE_S):
            problems.append(f"silence: ends_at more than {MAX_SILENCE_S // 86400:.0f} days "
                            "ahead; silence for less and renew it")
        if problems:
            return 400, {"error": "bad_request", "problems": problems}, "bad_request", \
                "; ".join(problems)
        try:
            silence = Silence.from_dict({"starts_at": now, **body, "created_by": str(actor)})
            await self.store.add(silence, now)
        except ValueError as e:
            return 400, {"error": "bad_request", "problems": [str(e)]}, "bad_request", str(e)
        return 201, silence.to_dict(), "created", silence.id

    async def list(self, request: web.Request, actor: Actor) -> tuple[int, Any, str, str]:
        found = await self.store.current(self.clock())
        return 200, [s.to_dict() for s in found], "ok", f"{len(found)} silence(s)"

    async def expire(self, request: web.Request, actor: Actor) -> tuple[int, Any, str, str]:
        sid = request.match_info["silence_id"]
        ended = await self.store.expire(sid, self.clock())
        if ended is None:
            return 404, {"error": "unknown_silence", "detail": f"no silence {sid} in force"}, \
                "unknown_silence", sid
        return 200, ended.to_dict(), "expired", sid


def add_silence_routes(app: web.Application, store: SilenceStore, auth: Authenticator,
                       audit: ApiAudit, *, clock: Callable[[], float]) -> None:
    routes = _Routes(store, auth, audit, clock)
    app.router.add_post(f"{PREFIX}/silences", routes.guarded(routes.create))
    app.router.add_get(f"{PREFIX}/silences", routes.guarded(routes.list), allow_head=False)
    app.router.add_delete(f"{PREFIX}/silences/{{silence_id}}", routes.guarded(routes.expire))
