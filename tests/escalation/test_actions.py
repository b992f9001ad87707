"""ActionQueue + ActionRunner: real redis-server, real HTTP receiver, injected sleep/clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from escalation.actions import ActionQueue, ActionRunner, Gate
from escalation.backoff import Backoff
from escalation.catalogue import ActionSpec
from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.executors.base import ActionRequest, ActionResult, Executor
from escalation.executors.fake import FakeExecutor
from escalation.executors.router import Router
from escalation.executors.webhook import WebhookExecutor
from escalation.kill_switch import KillSwitch
from hotpath.services.redis_server import RedisServer

from .conftest import Receiver, Reply
from .test_executor_webhook import REQ

STREAM = "hotpath:actions"
MARK = "hotpath:exec:restart:f1"


async def mark(redis: aioredis.Redis) -> dict[str, object]:
    raw = await redis.get(MARK)
    assert isinstance(raw, bytes)
    state: dict[str, object] = orjson.loads(raw)
    return state


@dataclass
class Rig:
    queue: ActionQueue
    slept: list[float] = field(default_factory=list)
    outcomes: list[tuple[ActionRequest, ActionResult]] = field(default_factory=list)
    fail_reports: int = 0

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        await asyncio.sleep(0)

    async def on_outcome(self, req: ActionRequest, result: ActionResult) -> None:
        if self.fail_reports:
            self.fail_reports -= 1
            raise RuntimeError("audit disk full")
        self.outcomes.append((req, result))

    def runner(self, executor: Executor, consumer: str = "r1",
               attempts_for: Callable[[ActionRequest], int] | None = None,
               gate: Gate | None = None) -> ActionRunner:
        return ActionRunner(
            self.queue, executor, Backoff(jitter=lambda: 1.0), clock=lambda: 0.0,
            on_outcome=self.on_outcome, sleep=self.sleep, consumer=consumer, block_ms=10,
            attempts_for=attempts_for, gate=gate,
        )


async def test_executes_reports_and_acks(redis_client: aioredis.Redis) -> None:
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    assert await r.runner(ex).run_once() == 1
    assert ex.executed == [REQ]
    assert r.outcomes == [(REQ, ActionResult(True, 200, "fake: done", 0.0))]
    assert await redis_client.xlen(STREAM) == 0
    assert (await mark(redis_client))["state"] == "reported"


async def test_each_idempotency_key_executes_once_even_if_queued_twice(
    redis_client: aioredis.Redis, receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    r = Rig(ActionQueue(redis_client))
    other = replace(REQ, idempotency_key="restart:f2", finding_id="f2")
    await r.queue.put_many([REQ, other, REQ])  # one batch
    runner = r.runner(WebhookExecutor(http_session, receiver.url))
    await runner.run_once()
    await r.queue.put_many([REQ])  # and once more, later
    await runner.run_once()
    keys = sorted(q.headers["Idempotency-Key"] for q in receiver.received)
    assert keys == ["restart:f1", "restart:f2"]
    assert sorted(req.idempotency_key for req, _ in r.outcomes) == ["restart:f1", "restart:f2"]
    assert await redis_client.xlen(STREAM) == 0


async def test_retryable_failures_are_retried_with_the_same_key(
    redis_client: aioredis.Redis,
) -> None:
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor(failures=[RetryableDeliveryError("HTTP 503", status=503),
                                RetryableDeliveryError("HTTP 429", status=429, retry_after=2.0)])
    await r.queue.put_many([REQ])
    await r.runner(ex).run_once()
    assert ex.attempts == [REQ] * 3 and r.slept == [0.2, 2.0]
    assert [res.ok for _, res in r.outcomes] == [True]


async def test_a_permanent_failure_is_reported_once_and_not_run_again(
    redis_client: aioredis.Redis,
) -> None:
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor(failures=[PermanentDeliveryError("HTTP 422: no such target", status=422)])
    await r.queue.put_many([REQ])
    await r.runner(ex).run_once()
    assert r.outcomes == [(REQ, ActionResult(
        False, 422, "fake: HTTP 422: no such target (after 1 attempt(s))", 0.0))]
    await r.queue.put_many([REQ])
    await r.runner(ex).run_once()
    assert len(ex.attempts) == 1 and len(r.outcomes) == 1


async def test_a_request_started_before_a_crash_is_sent_again(
    redis_client: aioredis.Redis,
) -> None:
    await redis_client.set(MARK, orjson.dumps({"state": "started"}))
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    await r.runner(ex).run_once()
    assert ex.executed == [REQ]  # at-least-once: the receiver dedups on the same key
    assert len(r.outcomes) == 1


async def test_a_non_idempotent_request_started_before_a_crash_is_not_sent_again(
    redis_client: aioredis.Redis,
) -> None:
    await redis_client.set(MARK, orjson.dumps({"state": "started"}))
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    await r.runner(ex, attempts_for=lambda _: 1).run_once()
    assert ex.executed == []  # it may have run once already: never a second time
    assert r.outcomes == [(REQ, ActionResult(
        False, None, "outcome unknown: a runner stopped while this non-idempotent action "
        "was in flight; not sent again", 0.0))]
    assert (await mark(redis_client))["state"] == "reported"


async def test_a_done_but_unreported_result_is_reported_without_executing(
    redis_client: aioredis.Redis,
) -> None:
    r = Rig(ActionQueue(redis_client), fail_reports=1)
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    await r.runner(ex).run_once()  # the audit write fails: logged, not acked
    assert (await mark(redis_client))["state"] == "done"
    assert await redis_client.xlen(STREAM) == 1
    # Restart (fresh queue, same consumer name): the stored result is reported, not re-run.
    r.queue = ActionQueue(redis_client)
    await r.runner(ex).run_once()
    assert len(ex.attempts) == 1
    assert r.outcomes == [(REQ, ActionResult(True, 200, "fake: done", 0.0))]
    assert await redis_client.xlen(STREAM) == 0


async def test_put_many_fails_closed_when_redis_is_down(
    redis_client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path,
) -> None:
    queue = ActionQueue(redis_client)
    redis_server.stop()
    try:
        with pytest.raises(Exception) as info:
            await queue.put_many([REQ])
    finally:
        redis_server.start()
    assert type(info.value).__name__ == "OutboxError"
    assert str(info.value).startswith("action queue hotpath:actions unavailable: ")
    assert list(tmp_path.iterdir()) == []  # no disk fallback for automation


async def test_run_backs_off_while_redis_is_down_and_resumes(
    redis_client: aioredis.Redis, redis_server: RedisServer,
) -> None:
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    stop = asyncio.Event()
    redis_server.stop()
    task = asyncio.create_task(r.runner(ex).run(stop))
    try:
        for _ in range(200):
            if r.slept:
                break
            await asyncio.sleep(0.01)
    finally:
        redis_server.start()
    await r.queue.put_many([REQ])
    for _ in range(500):
        if r.outcomes:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert r.slept and ex.executed == [REQ]


async def test_attempts_per_action_retry_only_idempotent_ones(
    redis_client: aioredis.Redis, receiver: Receiver, http_session: aiohttp.ClientSession,
) -> None:
    receiver.default = Reply(503, body=b"upstream busy")
    router = Router(
        {"webhook": WebhookExecutor(http_session, receiver.url)},
        {"restart_pods": ActionSpec("restart_pods", max_attempts=3),
         "drain_node": ActionSpec("drain_node", idempotent=False, max_attempts=3)},
    )
    drain = replace(REQ, action="drain_node", idempotency_key="drain:f1")
    r = Rig(ActionQueue(redis_client))
    await r.queue.put_many([drain, REQ])
    await r.runner(router, attempts_for=router.attempts_for).run_once()
    calls = [q.headers["Idempotency-Key"] for q in receiver.received]
    assert sorted(calls) == ["drain:f1", "restart:f1", "restart:f1", "restart:f1"]
    assert sorted((req.action, res.ok, res.status, res.detail) for req, res in r.outcomes) == [
        ("drain_node", False, 503, "router: HTTP 503: upstream busy (after 1 attempt(s))"),
        ("restart_pods", False, 503, "router: HTTP 503: upstream busy (after 3 attempt(s))"),
    ]
    assert r.slept == [0.2, 0.4]  # only the idempotent action waited between tries


async def test_without_attempts_for_every_action_gets_max_attempts(
    redis_client: aioredis.Redis,
) -> None:
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor(failures=[RetryableDeliveryError("HTTP 503", status=503)] * 6)
    await r.queue.put_many([REQ])
    await r.runner(ex).run_once()
    assert len(ex.attempts) == 5
    assert [res.detail for _, res in r.outcomes] == ["fake: HTTP 503 (after 5 attempt(s))"]


@dataclass
class PauseGate:
    """Refuses while the real kill switch says paused; records what it was asked."""

    switch: KillSwitch
    asked: list[ActionRequest] = field(default_factory=list)

    async def __call__(self, req: ActionRequest) -> str | None:
        self.asked.append(req)
        state = await self.switch.read()
        if state is None:
            raise ConnectionError("kill switch unreadable")
        return f"automation paused by {state.actor}: {state.reason}" if state.paused else None


async def test_a_refusing_gate_stops_the_action_reports_it_and_acks(
    redis_client: aioredis.Redis,
) -> None:
    switch = KillSwitch(redis_client)
    await switch.set(paused=True, actor="alice", reason="bad deploy", now=100.0)
    gate = PauseGate(switch)
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    await r.runner(ex, gate=gate).run_once()
    refused = ActionResult(False, None, "not executed: automation paused by alice: bad deploy",
                           0.0)
    assert ex.attempts == [] and gate.asked == [REQ]
    assert r.outcomes == [(REQ, refused)]
    assert await mark(redis_client) == {"state": "reported", "result": refused.to_dict()}
    assert await redis_client.xlen(STREAM) == 0
    # Resumed, and the same key delivered again: refused is final, not deferred.
    await switch.set(paused=False, actor="alice", reason="fixed", now=200.0)
    await r.queue.put_many([REQ])
    await r.runner(ex, gate=gate).run_once()
    assert ex.attempts == [] and gate.asked == [REQ] and len(r.outcomes) == 1
    assert await redis_client.xlen(STREAM) == 0


async def test_an_allowing_gate_lets_the_action_run(redis_client: aioredis.Redis) -> None:
    gate = PauseGate(KillSwitch(redis_client))  # never paused
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    await r.runner(ex, gate=gate).run_once()
    assert gate.asked == [REQ] and ex.executed == [REQ]
    assert r.outcomes == [(REQ, ActionResult(True, 200, "fake: done", 0.0))]
    assert (await mark(redis_client))["state"] == "reported"


async def test_a_gate_that_raises_refuses(
    redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(req: ActionRequest) -> str | None:
        raise ConnectionError("kill switch unreadable")

    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    with caplog.at_level("ERROR", logger="escalation.actions"):
        await r.runner(ex, gate=broken).run_once()
    assert ex.attempts == []
    assert r.outcomes == [(REQ, ActionResult(
        False, None, "not executed: gate failed: ConnectionError: kill switch unreadable", 0.0))]
    assert (await mark(redis_client))["state"] == "reported"
    assert await redis_client.xlen(STREAM) == 0
    assert [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"] == [
        "action restart:f1: the gate failed; refusing"]


async def test_a_done_mark_is_reported_without_asking_the_gate(
    redis_client: aioredis.Redis,
) -> None:
    stored = ActionResult(True, 200, "fake: done", 0.25)
    await redis_client.set(MARK, orjson.dumps({"state": "done", "result": stored.to_dict()}))
    switch = KillSwitch(redis_client)
    await switch.set(paused=True, actor="alice", reason="bad deploy", now=100.0)
    gate = PauseGate(switch)
    r = Rig(ActionQueue(redis_client))
    ex = FakeExecutor()
    await r.queue.put_many([REQ])
    await r.runner(ex, gate=gate).run_once()
    assert gate.asked == [] and ex.attempts == []
    assert r.outcomes == [(REQ, stored)]  # it ran before the pause: its outcome still counts
    assert (await mark(redis_client))["state"] == "reported"
    assert await redis_client.xlen(STREAM) == 0
