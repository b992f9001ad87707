"""Wiring: build every stage from the config, run the loop and its side tasks, stop cleanly.

Tasks, all on one uvloop event loop:

- the consume loop (getmany → process → commit), never waiting on an outside system;
- the page sender, reading the outbox (Redis stream, local spool when Redis is down);
- the action runner, reading the action queue and calling the executors (through the
  router that picks one per catalogue action);
- the approval sweeper, paging approvals nobody answered in time;
- the HTTP endpoints: ``/metrics`` and the action API (``/v1``, ``/openapi.json``).

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
import uvloop
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from detectors.ensemble import Ensemble
from escalation.actions import ActionQueue, ActionRunner
from escalation.audit import AuditLog
from escalation.audit_signing import Signer
from escalation.backoff import Backoff
from escalation.changes import RecentChanges
from escalation.decision import DecisionContext
from escalation.errors import ApprovalStoreUnavailable
from escalation.executors.base import ActionRequest, ActionResult, Executor
from escalation.executors.router import Router
from escalation.fallback import FallbackPolicy
from escalation.oncall import Transition
from escalation.outbox import PageOutbox
from escalation.pagers.base import Pager
from escalation.rate_limit import RateLimit
from escalation.sender import PageSender
from escalation.spool import Spool
from escalation.storm import StormPolicy
from hotpath.api import add_api_routes
from hotpath.audit_mirror import AuditMirror, KafkaTail
from hotpath.changes_consumer import ChangesConsumer
from hotpath.checkpoint import CheckpointStore
from hotpath.config import Config
from hotpath.consumer import ConsumeLoop, PartitionStates
from hotpath.dlq import KafkaDlq
from hotpath.gc_tuning import tune_gc
from hotpath.governance import Plane, authenticator, build_plane, env_secret, executors
from hotpath.http_server import HttpServer, make_app
from hotpath.metrics import Metrics
from hotpath.oncall_api import add_oncall_routes
from hotpath.paging import Paging, build_pagers
from hotpath.partition import PartitionState, Profile
from hotpath.processor import BatchResult, Processor
from hotpath.silences_api import add_silence_routes

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# Side tasks get this long after the loop stops to finish in-flight deliveries.
_DRAIN_GRACE_S = 5.0
_SOCKET_BACKSTOP_S = 10.0
# Expired approvals are paged within this long of their expiry; approvals last minutes.
_SWEEP_INTERVAL_S = 2.0


@dataclass
class Running:
    """Handles on a running processor, for the demo and the tests."""

    metrics: Metrics
    metrics_port: int
    states: PartitionStates
    api_port: int | None = None
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
    )


def _secrets(env: str) -> tuple[bytes, ...]:
    value = env_secret(env)
    return () if value is None else (value,)


def pagers(cfg: Config, session: aiohttp.ClientSession, clock: Clock = time.time) -> list[Pager]:
    """The configured pagers whose secrets are present, as serve() sends to."""
    return build_pagers(cfg, session, clock)


@dataclass
class Governed:
    """The governed path serve() runs beside the consume loop (the tests build it alone)."""

    outbox: PageOutbox
    pagers: list[Pager]
    sender: PageSender
    queue: ActionQueue
    plane: Plane
    router: Router
    runner: ActionRunner


def build_governed(cfg: Config, redis: aioredis.Redis, session: aiohttp.ClientSession,
                   audit: AuditLog, *, clock: Clock, metrics: Metrics, backoff: Backoff,
                   consumer: str, executor: Executor | None = None) -> Governed:
    """Outbox, page sender, action queue, control plane and action runner, wired as
    configured. ``executor`` overrides the configured executors (tests)."""
    outbox = PageOutbox(redis, Spool(cfg.spool.dir), timeout_s=cfg.redis.timeout_s)

    def page_result(pager: str, outcome: str, latency: float) -> None:
        metrics.pages.labels(pager, outcome).inc()
        if outcome != "collapsed":  # folded into a storm page: no delivery of its own
            metrics.page_latency.labels(pager).observe(latency)

    running_pagers = pagers(cfg, session, clock)
    d = cfg.delivery
    sender = PageSender(outbox, running_pagers, backoff, clock,
                        on_result=page_result,
                        fallback=next((p for p in running_pagers
                                       if p.name == cfg.pagers.fallback), None),
                        fallback_policy=FallbackPolicy(d.fallback_after_failures,
                                                       d.fallback_after_s),
                        rate_limits={n: RateLimit.per_minute(r) for n, r in d.rate_per_min.items()
                                     if n in {p.name for p in running_pagers}},
                        storm=None if d.storm_max_per_min is None else StormPolicy(
                            d.storm_max_per_min, 60.0),
                        consumer=consumer)
    queue = ActionQueue(redis, timeout_s=cfg.redis.timeout_s)
    plane = build_plane(cfg, redis, audit=audit, actions=queue, pages=outbox, clock=clock,
                        metrics=metrics)

    async def on_outcome(req: ActionRequest, result: ActionResult) -> None:
        metrics.actions.labels(req.action, "succeeded" if result.ok else "failed").inc()
        await plane.followup.on_outcome(req, result)

    router = executors(cfg, session, clock)
    runner = ActionRunner(queue, executor or router, backoff, clock, on_outcome,
                          consumer=consumer, gate=plane.gate,
                          attempts_for=None if executor is not None else router.attempts_for)
    return Governed(outbox, running_pagers, sender, queue, plane, router, runner)


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
    producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all",
                                linger_ms=5, max_request_size=4 * 1024 * 1024)
    mirror = (None if cfg.audit.mirror is None else AuditMirror(
        producer, cfg.audit.path, KafkaTail(cfg.kafka.bootstrap),
        topic=cfg.audit.mirror.topic, partition=cfg.audit.mirror.partition))
    audit = AuditLog(cfg.audit.path, clock, signer=Signer.from_env(),
                     on_flush=None if mirror is None else mirror.on_flush)
    if mirror is not None:
        m = mirror  # read at scrape time: no task keeps the gauges fresh
        metrics.audit_mirror_lag.set_function(lambda: m.status().lag)
        metrics.audit_mirror_stopped.set_function(lambda: m.status().stopped is not None)
    backoff = Backoff(jitter=rng.random)
    # Stable across restarts of this host's processor, so a restarted one re-reads the
    # outbox and action entries it had claimed but not finished.
    consumer_name = f"{socket.gethostname()}:{cfg.kafka.group}"
    gov = build_governed(cfg, redis, session, audit, clock=clock, metrics=metrics,
                         backoff=backoff, consumer=consumer_name, executor=executor)
    outbox, sender, plane, runner = gov.outbox, gov.sender, gov.plane, gov.runner
    running_pagers = gov.pagers

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
    recent_changes = RecentChanges(horizon_s=cfg.changes.horizon_s if cfg.changes else 3600.0)
    changes = (None if cfg.changes is None else ChangesConsumer(
        cfg.kafka.bootstrap, cfg.changes.topic, recent_changes, clock,
        horizon_s=cfg.changes.horizon_s,
        on_outcome=lambda outcome: metrics.change_events.labels(outcome).inc()))
    paging = Paging(cfg, redis, clock=clock, metrics=metrics, changes=recent_changes,
                    started=[p.name for p in running_pagers])
    processor = Processor(
        ctx=decision_context(cfg), environment=cfg.decide.environment,
        config_version=cfg.version_hash(), dlq=KafkaDlq(producer, cfg.kafka.dlq_topic),
        control=plane.control, audit=audit, pages=outbox, metrics=metrics, clock=clock,
        kill_switch=plane.kill_switch, followup=plane.followup, paging=paging,
    )
    loop = ConsumeLoop(consumer, states, processor, metrics,
                       commit_interval_s=cfg.kafka.commit_interval_s,
                       max_records=cfg.kafka.max_batch, max_points=cfg.kafka.max_batch_points,
                       poll_timeout_ms=cfg.kafka.poll_timeout_ms, monotonic=time.monotonic,
                       tick_interval_s=cfg.detectors.tick_interval_s)
    http = HttpServer(make_app(metrics), cfg.metrics.host, cfg.metrics.port)
    api: HttpServer | None = None
    if cfg.api.enabled:
        app = web.Application()
        add_api_routes(app, plane.control, authenticator(cfg), clock=clock,
                       default_environment=cfg.decide.environment)
        async def acked(t: Transition, via: str) -> None:
            st = t.state
            if st.acked_at is not None and st.status.value == "acked":
                metrics.time_to_ack.observe(max(0.0, st.acked_at - st.started_at))
            # Tell the pagers it is acknowledged or resolved, wherever the word came from;
            # in the outbox before the caller hears 200.
            await outbox.put_many(await paging.follow_up(t, clock()))

        add_oncall_routes(app, paging.oncall, authenticator(cfg), plane.control, clock=clock,
                          pagerduty_secrets=_secrets(cfg.oncall.pagerduty_webhook_secret_env),
                          slack_secrets=_secrets(cfg.oncall.slack_signing_secret_env),
                          on_change=acked)
        add_silence_routes(app, paging.silences, authenticator(cfg), plane.control,
                           clock=clock)
        api = HttpServer(app, cfg.api.host, cfg.api.port)

    async def sweep(stop_sweep: asyncio.Event) -> None:
        while not stop_sweep.is_set():
            depth = await outbox.depth()
            if depth is not None:
                metrics.outbox_depth.set(depth)
            try:
                for ap in await plane.control.sweep_expired():
                    log.info("approval %s expired unanswered; paged", ap.approval_id)
            except ApprovalStoreUnavailable as e:
                log.warning("approval sweep: %s", e)
            except Exception:
                # Never let the sweeper die quietly: the next round tries again.
                log.exception("approval sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_sweep.wait(), _SWEEP_INTERVAL_S)

    side_stop = asyncio.Event()
    side: list[asyncio.Task[Any]] = []
    try:
        await http.start()
        if api is not None:
            await api.start()
        await producer.start()
        if mirror is not None:
            mirror.start()
        consumer.subscribe([cfg.kafka.topic], listener=states)
        await consumer.start()
        side.append(asyncio.create_task(sender.run(side_stop), name="page-sender"))
        side.append(asyncio.create_task(runner.run(side_stop), name="action-runner"))
        side.append(asyncio.create_task(sweep(side_stop), name="approval-sweeper"))
        if changes is not None:
            side.append(asyncio.create_task(changes.run(side_stop), name="changes"))
        running = Running(metrics, http.port, states, None if api is None else api.port)
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
        await http.stop()
        if api is not None:
            await api.stop()
        await session.close()
        audit.close()  # its closing checkpoint goes to the mirror too
        if mirror is not None:
            await mirror.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
        await redis.aclose()


def run_forever(cfg: Config) -> int:
    """``hotpath run``: serve until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tune_gc()

    async def main() -> None:
        stop = asyncio.Event()
        lp = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            lp.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    uvloop.run(main())
    return 0
