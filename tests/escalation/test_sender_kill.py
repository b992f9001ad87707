"""A page sender process SIGKILLed with pages in the outbox: a restarted one delivers them,
and what the first had already delivered is not sent again (real processes, real Redis, a
real HTTP receiver)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from escalation.outbox import PageOutbox
from escalation.spool import Spool

from .test_pagers_webhook import PAGE

ROOT = Path(__file__).resolve().parents[2]
DELIVERED = replace(PAGE, dedup_key="hotpath-delivered", finding_id="d")
IN_FLIGHT = replace(PAGE, dedup_key="hotpath-in-flight", finding_id="f")
WAITING = replace(PAGE, dedup_key="hotpath-waiting", finding_id="w")

# The sender process: the production classes, nothing stubbed; it runs until killed.
SENDER = textwrap.dedent("""
    import asyncio, os, sys, time, random
    from pathlib import Path
    import aiohttp, redis.asyncio as aioredis
    from escalation.backoff import Backoff
    from escalation.outbox import PageOutbox
    from escalation.pagers.webhook import WebhookPager
    from escalation.sender import PageSender
    from escalation.spool import Spool

    async def main() -> None:
        redis = aioredis.from_url(os.environ["REDIS_URL"])
        outbox = PageOutbox(redis, Spool(Path(os.environ["SPOOL"])), min_idle_ms=60_000)
        async with aiohttp.ClientSession() as session:
            pager = WebhookPager(session, os.environ["RECEIVER"], timeout_s=60.0)
            sender = PageSender(outbox, [pager], Backoff(jitter=random.random), time.time,
                                consumer="sender-1", batch=1)
            print("ready", flush=True)
            await sender.run(asyncio.Event())

    asyncio.run(main())
""")


class Receiver:
    """Answers 202 at once, except for the page it is told to hold (the request that is in
    flight when the sender dies); records every arrival."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, str]] = []  # (dedup key, Idempotency-Key)
        self.hold: str | None = None
        self.held = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        key = body["dedup_key"]
        self.arrivals.append((key, request.headers["Idempotency-Key"]))
        if key == self.hold:
            self.held.set()
            await asyncio.sleep(3600)  # never answered: the process is killed meanwhile
        return web.json_response({"status": "accepted"}, status=202)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/pages", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield rec, f"http://127.0.0.1:{port}/pages"
    finally:
        await runner.cleanup()


def start_sender(redis_url: str, url: str, spool: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": redis_url, "RECEIVER": url, "SPOOL": str(spool),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SENDER], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


async def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_killed_with_pages_in_the_outbox_delivers_after_restart_without_duplicates(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path,
        receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    outbox = PageOutbox(redis_client, Spool(tmp_path / "spool"))
    rec.hold = IN_FLIGHT.dedup_key
    await outbox.put_many([DELIVERED, IN_FLIGHT, WAITING])

    first = start_sender(redis_url, url, tmp_path / "spool")
    try:
        # One page at a time (batch=1): the first is delivered and acked, the second hangs.
        await asyncio.wait_for(rec.held.wait(), 30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert rec.arrivals == [(DELIVERED.dedup_key, DELIVERED.dedup_key),
                            (IN_FLIGHT.dedup_key, IN_FLIGHT.dedup_key)]

    rec.hold = None
    second = start_sender(redis_url, url, tmp_path / "spool")  # same consumer name
    try:
        await wait_for(lambda: len(rec.arrivals) == 4)
        await asyncio.sleep(0.5)  # nothing more arrives
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(10)
    # The delivered page is not sent again; the one in flight when the process died is
    # sent again under the same dedup and idempotency key (the receiver folds it into the
    # one incident); the one that was waiting is delivered once.
    assert rec.arrivals[2:] == [(IN_FLIGHT.dedup_key, IN_FLIGHT.dedup_key),
                                (WAITING.dedup_key, WAITING.dedup_key)]
    assert [k for k, _ in rec.arrivals].count(DELIVERED.dedup_key) == 1
    assert await outbox.depth() == 0
