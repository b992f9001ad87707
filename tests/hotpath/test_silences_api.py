"""Silences over the action API: real aiohttp server, real Redis, every call audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from escalation.request import Actor, ActorKind
from escalation.silences import SilenceStore
from hotpath.api_auth import Authenticator, Principal, hash_token
from hotpath.http_server import HttpServer
from hotpath.silences_api import add_silence_routes

NOW = 1_764_200_000.0
TOKEN = "alice-silences-token"
AGENT = "copilot-silences-token"


@dataclass
class Audit:
    calls: list[tuple[str | None, str, str, int, str]] = field(default_factory=list)

    def audit_api(self, actor: Actor | None, method: str, path: str, status: int, code: str,
                  detail: str) -> None:
        self.calls.append((None if actor is None else str(actor), method, path, status, code))


@dataclass
class Api:
    url: str
    session: aiohttp.ClientSession
    audit: Audit

    async def call(self, method: str, path: str, token: str | None = TOKEN,
                   json: Any = None) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with self.session.request(method, self.url + path, json=json,
                                        headers=headers) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def api(redis_client: aioredis.Redis) -> AsyncIterator[Api]:
    app = web.Application()
    audit = Audit()
    auth = Authenticator([Principal("alice", ActorKind.HUMAN, ("sre",), hash_token(TOKEN)),
                          Principal("copilot", ActorKind.AGENT, (), hash_token(AGENT))])
    add_silence_routes(app, SilenceStore(redis_client), auth, audit, clock=lambda: NOW)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{server.port}", session, audit)
    await server.stop()


async def test_create_list_and_expire_a_silence(api: Api) -> None:
    status, made = await api.call("POST", "/v1/silences", json={
        "matchers": {"service": "checkout"}, "ends_at": NOW + 3600, "comment": "deploy"})
    assert (status, made["created_by"], made["starts_at"], made["matchers"]) == (
        201, "human:alice", NOW, {"service": "checkout"})
    status, listed = await api.call("GET", "/v1/silences")
    assert (status, [s["id"] for s in listed]) == (200, [made["id"]])
    status, ended = await api.call("DELETE", f"/v1/silences/{made['id']}")
    assert (status, ended["ends_at"]) == (200, NOW)
    assert await api.call("GET", "/v1/silences") == (200, [])
    status, body = await api.call("DELETE", f"/v1/silences/{made['id']}")
    assert (status, body) == (404, {"error": "unknown_silence",
                                    "detail": f"no silence {made['id']} in force"})
    assert [c[3:] for c in api.audit.calls] == [
        (201, "created"), (200, "ok"), (200, "expired"), (200, "ok"), (404, "unknown_silence")]


@pytest.mark.parametrize(("body", "problem"), [
    ({"matchers": {}, "ends_at": NOW + 60, "comment": "x"},
     "silence: matchers must not be empty"),
    ({"matchers": {"service": "a"}, "ends_at": NOW - 1, "comment": "x"},
     f"silence: ends_at {NOW - 1:g} is not after starts_at {NOW:g}"),
    ({"matchers": {"service": "a"}, "ends_at": NOW + 60},
     "silence: missing field 'comment'"),
    ({"matchers": {"service": "a"}, "ends_at": NOW + 60, "comment": "x", "created_by": "x"},
     "silence: unknown field 'created_by'"),
    ({"matchers": {"service": "a"}, "ends_at": NOW + 60, "comment": None},
     "silence: comment must be a non-empty string (say why)"),
    ({"matchers": {"service": None}, "ends_at": NOW + 60, "comment": "x"},
     "silence: every matcher must be a string glob"),
    ({"matchers": {"service": "a"}, "ends_at": 1e300, "comment": "x"},
     "silence: ends_at more than 90 days ahead; silence for less and renew it"),
])
async def test_bad_bodies_name_the_problem(api: Api, body: dict[str, Any],
                                           problem: str) -> None:
    status, answer = await api.call("POST", "/v1/silences", json=body)
    assert (status, answer) == (400, {"error": "bad_request", "problems": [problem]})


async def test_no_token_is_401_and_audited(api: Api) -> None:
    status, body = await api.call("GET", "/v1/silences", token=None)
    assert (status, body["error"]) == (401, "missing_token")
    assert api.audit.calls == [(None, "GET", "/v1/silences", 401, "missing_token")]


async def test_a_machine_may_read_silences_but_not_change_them(api: Api) -> None:
    status, body = await api.call("POST", "/v1/silences", token=AGENT, json={
        "matchers": {"service": "checkout"}, "ends_at": NOW + 60, "comment": "quiet"})
    assert (status, body) == (403, {"error": "not_a_person",
                                    "detail": "agent:copilot may not change silences; "
                                              "only people"})
    assert await api.call("GET", "/v1/silences", token=AGENT) == (200, [])
