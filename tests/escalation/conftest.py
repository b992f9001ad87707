"""Fixtures for the escalation tests: a real HTTP receiver on 127.0.0.1 and a client session.

Redis comes from the shared ``tests/conftest.py`` (``redis_server``, ``redis_client``).
The receiver is a real aiohttp.web server on a free loopback port: it records every request
and answers from a script (status, headers, delay), so pager and executor tests check the
bytes that crossed a socket, not a mock of the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One scripted answer of the receiver."""

    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering: longer than the client timeout = timeout
    body: bytes = b"{}"


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """Answers with ``script`` in order, then with ``default``; records every request."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default = Reply()
        self.received: list[Received] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            Received(request.method, request.path, dict(request.headers), body)
        )
        reply = self.script.pop(0) if self.script else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)


@asynccontextmanager
async def serving(rec: Receiver) -> AsyncIterator[Receiver]:
    """``rec`` served on 127.0.0.1 until the block ends; ``rec.url`` is its ``/hook``."""
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A started receiver; ``receiver.url`` is ``http://127.0.0.1:PORT/hook``."""
    async with serving(Receiver()) as rec:
        yield rec


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session
