"""Wiring: build every stage from the config, run the loop and its side tasks, stop cleanly.

Tasks, all on one uvloop event loop:

- the consume loop (getmany → process → commit), never waiting on an outside system;
- the page sender, reading the outbox (Redis stream, local spool when Redis is down);
- the action runner, reading the action queue and calling the remediation executor;
- the HTTP endpoint serving ``/metrics``.

Stop (SIGINT/SIGTERM, or the ``stop`` event): the loop finishes its batch, checkpoints
and commits; the side tasks drain what they hold within a grace period; the audit log is
flushed and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from detectors.ensemble import Ensemble
from escalation.actions import ActionQueue, ActionRunner
from escalation.audit import AuditLog
from escalation.audit_signing import Signer
from escalation.backoff import Backoff
from escalation.budget import RedisBudget
from escalation.decision import DecisionContext
from escalation.executors.base import ActionRequest, ActionResult, Executor
from escalation.executors.webhook import WebhookExecutor
from escalation.kill_switch import KillSwitch
from escalation.outbox import PageOutbox
from escalation.page import failure_page
from escalation.pagers.base import Pager
from escalation.pagers.console import ConsolePager
from escalation.pagers.webhook import WebhookPager
from escalation.sender import PageSender
from escalation.spool import Spool
from hotpath.checkpoint import CheckpointStore
from hotpath.config import Config
from hotpath.consumer import ConsumeLoop, PartitionStates
from hotpath.dlq import KafkaDlq
from hotpath.http_server import HttpServer, make_app
from hotpath.metrics import Metrics
from hotpath.partition import PartitionState, Profile
from hotpath.processor import BatchResult, Processor

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# Side tasks get this long after the loop stops to finish in-flight deliveries.
_DRAIN_GRACE_S = 5.0
_SOCKET_BACKSTOP_S = 10.0


@dataclass
class Running:
    """Handles on a running processor, for the demo and the tests."""

    metrics: Metrics
    metrics_port: int
    states: PartitionStates
    on_batch: list[Callable[[BatchResult], Any]] = field(default_factory=list)


def make_ensemble(cfg: Config) -> Ensemble:
    """The default detector set's ensemble: what a series matching no profile runs."""
    return cfg.detectors.default.build()


def partition_factory(cfg: Config) -> Callable[[], PartitionState]:
    """Fresh detector state for one partition, as configured (live loop, replay, NAB)."""
    d = cfg.detectors
    blob = orjson.dumps(d.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    # A checkpoint is only valid for the detector configuration it was taken under.
    fingerprint = hashlib.sha256(blob).hexdigest()[:16]

    def factory() -> PartitionState:
        profiles = [Profile(p.name, p.match, p.detectors.build()) for p in d.profiles]
        profiles.append(Profile("default", None, d.default.build()))
        return PartitionState(profiles, d.bounds, fingerprint)

    return factory


def decision_context(cfg: Config) -> DecisionContext:
    return DecisionContext(
        page_threshold=cfg.decide.page_threshold,
        rules=tuple(r.rule() for r in cfg.remediations),
        policy=tuple(p.grant() for p in cfg.policy),
        paused=cfg.automation.paused,
    )


def _pagers(cfg: Config, session: aiohttp.ClientSession) -> list[Pager]:
    pagers: list[Pager] = []
    if cfg.pagers.webhook is not None:
        pagers.append(WebhookPager(session, cfg.pagers.webhook.url,
                                   timeout_s=cfg.pagers.webhook.timeout_s))
    if cfg.pagers.console is not None:
        pagers.append(ConsolePager(cfg.pagers.console.path,
                                   sys.stdout if cfg.pagers.console.echo else None))
    return pagers


async def serve(cfg: Config, stop: asyncio.Event, *, clock: Clock = time.time,
                ready: Callable[[Running], Any] | None = None,
                executor: Executor | None = None) -> None:
    """Run until ``stop`` is set. ``executor`` overrides the configured one (tests)."""
    metrics = Metrics()
    rng = random.Random()
    # Every call site bounds its own wait with asyncio.timeout (budget and outbox writes at
    # redis.timeout_s, blocking stream reads at their block time plus that); the socket
    # timeout is only the backstop for a connection that went silent. No client retries:
    # a retried budget claim whose first reply was lost would read as a duplicate.
    redis = aioredis.from_url(cfg.redis.url, socket_timeout=_SOCKET_BACKSTOP_S,
                              socket_connect_timeout=cfg.redis.timeout_s)
    session = aiohttp.ClientSession()
    # Signed checkpoints when $HOTPATH_AUDIT_KEY holds an Ed25519 seed (a secret: never in
    # the YAML); `hotpath audit verify --public-key` checks them.
    audit = AuditLog(cfg.audit.path, clock, signer=Signer.from_env())
    outbox = PageOutbox(redis, Spool(cfg.spool.dir), timeout_s=cfg.redis.timeout_s)
    backoff = Backoff(jitter=rng.random)
    # Stable across restarts of this host's processor, so a restarted one re-reads the
    # outbox and action entries it had claimed but not finished.
    consumer_name = f"{socket.gethostname()}:{cfg.kafka.group}"

    def page_result(pager: str, outcome: str, latency: float) -> None:
        metrics.pages.labels(pager, outcome).inc()
        metrics.page_latency.labels(pager).observe(latency)

    sender = PageSender(outbox, _pagers(cfg, session), backoff, clock, on_result=page_result,
                        consumer=consumer_name)
    queue = ActionQueue(redis, timeout_s=cfg.redis.timeout_s)

    async def on_outcome(req: ActionRequest, result: ActionResult) -> None:
        outcome = "succeeded" if result.ok else "failed"
        metrics.actions.labels(req.action, outcome).inc()
        audit.append("outcome", {
            "actor": "automation", "rule": req.rule, "action": req.action,
            "target": req.target,
            "where": {"service": req.service,
                      "labels": dict(req.params.get("evidence", {}).get("labels", {}))},
            "idempotency_key": req.idempotency_key,
            "evidence": {"finding_id": req.finding_id},
            "outcome": outcome, "status": result.status, "detail": result.detail,
            "latency_s": result.latency_s, "config_version": cfg.version_hash(),
        })
        audit.flush()
        if not result.ok:
            await outbox.put_many([failure_page(req, result, clock())])

    if executor is None and cfg.executors.webhook is not None:
        executor = WebhookExecutor(session, cfg.executors.webhook.url,
                                   timeout_s=cfg.executors.webhook.timeout_s)
    runner = (ActionRunner(queue, executor, backoff, clock, on_outcome, consumer=consumer_name)
              if executor is not None else None)

    producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all",
                                linger_ms=5, max_request_size=4 * 1024 * 1024)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cfg.kafka.bootstrap, group_id=cfg.kafka.group,
        enable_auto_commit=False, auto_offset_reset=cfg.kafka.auto_offset_reset,
        session_timeout_ms=cfg.kafka.session_timeout_ms,
        heartbeat_interval_ms=cfg.kafka.heartbeat_interval_ms,
        # Above the 1 MiB message limit, so an oversized message reaches the decoder and
        # goes to the DLQ with its reason instead of stalling the fetch.
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    store = CheckpointStore(redis, cfg.redis.key_prefix, cfg.kafka.group)

    states = PartitionStates(consumer, partition_factory(cfg), store, metrics)
    processor = Processor(
        ctx=decision_context(cfg), environment=cfg.decide.environment,
        config_version=cfg.version_hash(), dlq=KafkaDlq(producer, cfg.kafka.dlq_topic),
        budget=RedisBudget(redis, clock, timeout_s=cfg.redis.timeout_s), audit=audit,
        pages=outbox, actions=queue, metrics=metrics, clock=clock,
        kill_switch=KillSwitch(redis, cfg.redis.key_prefix, timeout_s=cfg.redis.timeout_s),
    )
    loop = ConsumeLoop(consumer, states, processor, metrics,
                       commit_interval_s=cfg.kafka.commit_interval_s,
                       max_records=cfg.kafka.max_batch,
                       poll_timeout_ms=cfg.kafka.poll_timeout_ms, monotonic=time.monotonic,
                       tick_interval_s=cfg.detectors.tick_interval_s)
    http = HttpServer(make_app(metrics), cfg.metrics.host, cfg.metrics.port)

    side_stop = asyncio.Event()
    side: list[asyncio.Task[Any]] = []
    try:
        await http.start()
        await producer.start()
        consumer.subscribe([cfg.kafka.topic], listener=states)
        await consumer.start()
        side.append(asyncio.create_task(sender.run(side_stop), name="page-sender"))
        if runner is not None:
            side.append(asyncio.create_task(runner.run(side_stop), name="action-runner"))
        running = Running(metrics, http.port, states)
        loop.on_batch = lambda res: [cb(res) for cb in running.on_batch]
        if ready is not None:
            ready(running)
        await loop.run(stop)
    finally:
        side_stop.set()
        if side:
            _, pending = await asyncio.wait(side, timeout=_DRAIN_GRACE_S)
            for t in pending:
                t.cancel()
            for t in side:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
        await http.stop()
        await session.close()
        audit.close()
        await redis.aclose()


def run_forever(cfg: Config) -> int:
    """``hotpath run``: serve until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        lp = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            lp.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    uvloop.run(main())
    return 0
