"""The runtime's governed wiring: the runner's kill-switch gate and the secrets it warns
about, on a real redis-server."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from escalation.actions import ActionQueue
from escalation.audit import AuditLog
from escalation.executors.base import ActionRequest
from escalation.kill_switch import KillSwitch
from escalation.outbox import PageOutbox
from escalation.request import Actor, Request
from escalation.spool import Spool
from hotpath.config import Config, load_config, with_overrides
from hotpath.governance import approval_secret, build_plane, executors
from hotpath.metrics import Metrics
from hotpath.services.redis_server import RedisServer

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"


def config(redis_url: str, tmp_path: Path) -> Config:
    return with_overrides(load_config(EXAMPLE), {
        "redis": {"url": redis_url},
        "executors": {"plugins": {"jsonl": {"path": str(tmp_path / "changes.jsonl")}}}})


def execution(actor: str) -> ActionRequest:
    req = Request(Actor.parse(actor), "restart_pods", "checkout", "production",
                  "deployment/checkout", f"{actor}:k1", 1.0)
    return ActionRequest("restart_pods", "deployment/checkout", "checkout", "", req.idempotency_key,
                         req.actor.name, {}, {"request": req.to_dict(), "rollback_of": None})


async def test_the_gate_holds_machines_back_while_paused_and_lets_people_act(
        redis_client: aioredis.Redis, redis_url: str, tmp_path: Path,
        redis_server: RedisServer) -> None:
    cfg = config(redis_url, tmp_path)
    with AuditLog(tmp_path / "audit.jsonl", lambda: 1.0) as audit:
        plane = build_plane(cfg, redis_client, audit=audit, actions=ActionQueue(redis_client),
                            pages=PageOutbox(redis_client, Spool(tmp_path / "spool")),
                            clock=lambda: 1.0, metrics=Metrics())
        assert await plane.gate(execution("agent:copilot")) is None  # never paused
        await KillSwitch(redis_client).set(paused=True, actor="alice", reason="bad deploy",
                                           now=1.0)
        for machine in ("agent:copilot", "automation:restart-checkout"):
            assert await plane.gate(execution(machine)) == (
                "automation paused by alice: bad deploy")
        assert await plane.gate(execution("human:bob")) is None
        redis_server.stop()
        try:
            assert await plane.gate(execution("agent:copilot")) == (
                "the kill switch cannot be read (Redis unavailable or slow); failing closed")
            assert await plane.gate(execution("human:bob")) is None
        finally:
            redis_server.start()


async def test_missing_secrets_are_said_out_loud(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("HOTPATH_APPROVAL_SECRET", raising=False)
    monkeypatch.delenv("HOTPATH_WEBHOOK_SECRET", raising=False)
    cfg = config(redis_url, tmp_path)
    async with aiohttp.ClientSession() as session:
        with caplog.at_level(logging.WARNING, logger="hotpath.governance"):
            assert len(approval_secret(cfg)) == 32
            executors(cfg, session, lambda: 1.0)
    assert [r.getMessage() for r in caplog.records] == [
        "$HOTPATH_APPROVAL_SECRET is not set: approve/deny links are signed with a key made "
        "for this process; they stop working when it restarts and on other replicas",
        "$HOTPATH_WEBHOOK_SECRET is not set: webhook actions are sent unsigned; receivers "
        "cannot tell them from forgeries",
    ]
    monkeypatch.setenv("HOTPATH_APPROVAL_SECRET", "s" * 40)
    assert approval_secret(cfg) == b"s" * 40
