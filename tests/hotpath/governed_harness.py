"""The governed path of ``hotpath.runtime.serve`` without Kafka, for end-to-end API tests.

:func:`build_governed_parts` builds what ``serve`` builds for governed actions — with
serve's own :func:`hotpath.runtime.build_governed` (page outbox and sender, action queue,
control plane, action runner), plus the audit log and the action API app — from the same
config. :func:`run_governed` starts it on 127.0.0.1 against real
loopback receivers and yields a :class:`Governed` whose :meth:`Governed.call` makes real
HTTP calls with bearer tokens and remembers each one, so a test can check that every call
left exactly one ``api`` audit record.

The approval sweeper is not started: tests move the injected clock and call
``plane.control.sweep_expired()`` themselves, so expiry never depends on wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from escalation.actions import ActionQueue, ActionRunner
from escalation.audit import AuditLog
from escalation.audit_signing import Signer
from escalation.backoff import Backoff
from escalation.executors.router import Router
from escalation.executors.signing import SIGNATURE_HEADER
from escalation.outbox import PageOutbox
from escalation.sender import PageSender
from hotpath.api import add_api_routes
from hotpath.api_auth import hash_token
from hotpath.config import Config, load_config, with_overrides
from hotpath.demo.receivers import ActionReceiver
from hotpath.governance import Plane, authenticator
from hotpath.http_server import HttpServer
from hotpath.metrics import Metrics
from hotpath.runtime import build_governed
from tests.hotpath.conftest import EXAMPLE

# The example config's demo tokens (deploy/hotpath.yaml stores their SHA-256), plus carol:
# the example has one sre-lead (alice), and a request alice makes needs another to approve.
TOKENS: Mapping[str, str] = {
    "copilot": "copilot-demo-token", "alice": "alice-demo-token", "bob": "bob-demo-token",
    "carol": "carol-demo-token",
}
ACTORS: Mapping[str, str] = {
    "copilot": "agent:copilot", "alice": "human:alice", "bob": "human:bob",
    "carol": "human:carol",
}
# Secrets from the environment, as in production; 40 bytes clears the 32-byte minimum.
APPROVAL_SECRET = "approval-secret-for-governed-api-tests-0001"
WEBHOOK_SECRET = "webhook-secret-for-governed-api-tests"
# Far from the example's ledger freeze (2026-12-28): only the scenarios' own rules apply.
T0 = 1764132000.0
# serve() backs off up to 30 s; a test rides out a Redis restart in well under a second.
FAST_BACKOFF = Backoff(base_s=0.05, max_s=0.5)
CONSUMER = "governed-test"


class Clock:
    """The injected clock: starts at ``T0`` and moves only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class SignedActionReceiver(ActionReceiver):
    """The demo's ActionReceiver checking signatures under ``WEBHOOK_SECRET`` (401 when
    missing or bad), also keeping each request's signature header and raw body so a test
    can check the signature over the exact bytes that arrived itself."""

    def __init__(self) -> None:
        super().__init__(secret=WEBHOOK_SECRET.encode())
        self.signed: list[tuple[str | None, bytes]] = []

    async def _handle(self, request: web.Request) -> web.Response:
        # aiohttp caches the body, so the receiver's own checks read the same bytes.
        self.signed.append((request.headers.get(SIGNATURE_HEADER), await request.read()))
        return await super()._handle(request)


def governed_config(tmp_path: Path, redis_url: str, *, action_url: str, page_url: str,
                    **extra: Any) -> Config:
    """deploy/hotpath.yaml aimed at this test's Redis, receivers and files; carol added."""
    example = load_config(EXAMPLE)
    principals: list[dict[str, Any]] = [
        {"name": p.name, "kind": p.kind, "roles": list(p.roles),
         "token_sha256": p.token_sha256} for p in example.principals]
    principals.append({"name": "carol", "kind": "human", "roles": ["sre-lead"],
                       "token_sha256": hash_token(TOKENS["carol"])})
    updates: dict[str, Any] = {
        "redis": {"url": redis_url},
        "pagers": {"webhook": {"url": page_url, "timeout_s": 2.0},
                   "console": {"path": tmp_path / "pages.jsonl", "echo": False},
                   # No Alertmanager runs here: its pages would only fail.
                   "alertmanager": None},
        "audit": {"path": tmp_path / "audit.jsonl"},
        "spool": {"dir": tmp_path / "spool"},
        "metrics": {"port": 0},
        "api": {"port": 0},
        "executors": {"webhook": {"url": action_url, "timeout_s": 2.0},
                      "plugins": {"jsonl": {"path": str(tmp_path / "changes.jsonl")}}},
        "principals": principals,
    }
    for section, values in extra.items():
        updates.setdefault(section, {}).update(values)
    return with_overrides(example, updates)


@dataclass
class GovernedParts:
    """What serve() builds for governed actions, not yet running: its own
    :func:`hotpath.runtime.build_governed`, the audit log and the action API app."""

    audit: AuditLog
    outbox: PageOutbox
    queue: ActionQueue
    plane: Plane
    router: Router
    runner: ActionRunner
    sender: PageSender
    app: web.Application


def build_governed_parts(cfg: Config, redis: aioredis.Redis, session: aiohttp.ClientSession,
                         *, clock: Callable[[], float], metrics: Metrics, backoff: Backoff,
                         consumer: str) -> GovernedParts:
    """serve()'s wiring of the governed path (minus Kafka and the audit mirror)."""
    audit = AuditLog(cfg.audit.path, clock, signer=Signer.from_env())
    gov = build_governed(cfg, redis, session, audit, clock=clock, metrics=metrics,
                         backoff=backoff, consumer=consumer)
    app = web.Application()
    add_api_routes(app, gov.plane.control, authenticator(cfg), clock=clock,
                   default_environment=cfg.decide.environment)
    return GovernedParts(audit, gov.outbox, gov.queue, gov.plane, gov.router, gov.runner,
                         gov.sender, app)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call a test made: what its ``api`` audit record must say."""

    actor: str | None
    method: str
    path: str
    status: int
    code: str


@dataclass
class Governed:
    """The running governed path and the calls made to it."""

    cfg: Config
    clock: Clock
    redis: aioredis.Redis
    parts: GovernedParts
    session: aiohttp.ClientSession
    base: str
    calls: list[Call] = field(default_factory=list)
    replies: list[tuple[str, str, Reply]] = field(default_factory=list)  # method, path, reply

    @property
    def plane(self) -> Plane:
        return self.parts.plane

    async def call(self, method: str, path: str, who: str | None, *, json: Any = None,
                   token: str | None = None) -> Reply:
        """``path`` (with any query) as ``who``'s bearer token; ``token`` overrides it."""
        headers: dict[str, str] = {}
        bearer = token if token is not None else (TOKENS[who] if who is not None else None)
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = None
        if json is not None:
            data = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, data=data,
                                        headers=headers) as resp:
            assert resp.content_type == "application/json", resp.content_type
            body = orjson.loads(await resp.read())
            reply = Reply(resp.status, body, dict(resp.headers))
        self.replies.append((method, path, reply))
        self.calls.append(Call(ACTORS[who] if who is not None and token is None else None,
                               method, path.partition("?")[0], reply.status,
                               _code_of(path, reply)))
        return reply

    async def submit(self, who: str, body: Mapping[str, Any]) -> Reply:
        return await self.call("POST", "/v1/actions", who, json=dict(body))

    async def wait_status(self, request_id: str, who: str, done: tuple[str, ...]) -> Reply:
        """Poll ``GET /v1/actions/{id}`` (every poll an audited call) until a status in
        ``done``."""
        last: list[Reply] = []

        async def poll() -> bool:
            last.append(await self.call("GET", f"/v1/actions/{request_id}", who))
            return last[-1].status == 200 and last[-1].body["status"] in done

        await wait_async(poll, f"request {request_id} in {done}; last {last[-1:]}")
        return last[-1]

    def audit_records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.cfg.audit.path.read_bytes().splitlines()]

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [r["body"] for r in self.audit_records() if r["kind"] == kind]


def _code_of(path: str, reply: Reply) -> str:
    """The code the API audits for a reply: the error, a submission's status, else the
    decision's check code (approved/denied) or ``ok`` for reads."""
    body = reply.body
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    if path == "/v1/actions" and isinstance(body, dict):
        return str(body["status"])
    if "/approve" in path:
        return "approved"
    if "/deny" in path:
        return "denied"
    return "ok"


async def wait_async(cond: Callable[[], Awaitable[bool]], what: str,
                     timeout: float = 10.0) -> None:
    """Poll an async condition every 0.1 s until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def run_governed(cfg: Config, clock: Clock) -> AsyncIterator[Governed]:
    """Start the governed path (API server, action runner, page sender); stop it after."""
    # As serve(): every call bounds its own wait; the socket timeout is only a backstop.
    redis = aioredis.from_url(cfg.redis.url, socket_timeout=10.0,
                              socket_connect_timeout=cfg.redis.timeout_s)
    session = aiohttp.ClientSession()
    parts = build_governed_parts(cfg, redis, session, clock=clock, metrics=Metrics(),
                                 backoff=FAST_BACKOFF, consumer=CONSUMER)
    server = HttpServer(parts.app, "127.0.0.1", 0)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    client = aiohttp.ClientSession()
    try:
        await server.start()
        tasks.append(asyncio.create_task(parts.sender.run(stop), name="page-sender"))
        tasks.append(asyncio.create_task(parts.runner.run(stop), name="action-runner"))
        yield Governed(cfg, clock, redis, parts, client, f"http://127.0.0.1:{server.port}")
    finally:
        stop.set()
        # Bounded, as serve()'s drain: a task stuck on a dead connection after a failed
        # assertion must not hang the session (it is cancelled and reported).
        _, stuck = await asyncio.wait(tasks, timeout=10.0) if tasks else (set(), set())
        for t in stuck:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await server.stop()
        await session.close()
        parts.audit.close()
        await redis.aclose()
        # A side task that died of a bug would otherwise pass unnoticed.
        for result in done:
            if isinstance(result, BaseException):
                raise result


__all__ = [
    "ACTORS", "APPROVAL_SECRET", "CONSUMER", "FAST_BACKOFF", "T0", "TOKENS", "WEBHOOK_SECRET",
    "Call", "Clock", "Governed", "GovernedParts", "Reply", "SignedActionReceiver",
    "build_governed_parts", "governed_config", "run_governed", "wait_async",
]
