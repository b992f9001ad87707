"""Build the governed-action control plane from the config: stores, executors, API.

Secrets come from the environment, named by the config: the approval-token key
(``policy.approval.secret_env``, at least 32 bytes) and the webhook signing key
(``executors.webhook.secret_env``). Without an approval key a random one is made for this
process and a warning says so: links still work, but only on this replica and only until it
restarts.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from escalation.approval_tokens import system_nonce
from escalation.approvals import ApprovalStore
from escalation.control import ActionSink, AuditSink, ControlPlane, Governance, PageSink
from escalation.errors import StoreUnavailable
from escalation.executors.base import ActionRequest, Executor
from escalation.executors.command import CommandExecutor
from escalation.executors.plugin import load_executor
from escalation.executors.router import Router
from escalation.executors.webhook import WebhookExecutor
from escalation.followup import FollowUp
from escalation.kill_switch import KillSwitch
from escalation.limits import RedisLimits, Window
from escalation.request import ActorKind
from escalation.request_store import RequestStore
from escalation.verify_store import VerifyStore
from hotpath.api_auth import Authenticator, Principal
from hotpath.config import Config
from hotpath.metrics import Metrics

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def governance(cfg: Config) -> Governance:
    budgets: dict[str, Window] = {}
    for r in cfg.remediations:
        w = r.budget_window()
        if w is not None:
            budgets[r.name] = w
    return Governance(cfg.catalogue(), cfg.policy.policy(), cfg.version_hash(), budgets,
                      cfg.api.public_url)


def env_secret(env: str | None) -> bytes | None:
    """The secret held by the environment variable the config names (None: unset)."""
    value = os.environ.get(env) if env else None
    return value.encode() if value else None


def approval_secret(cfg: Config) -> bytes:
    key = env_secret(cfg.policy.approval.secret_env)
    if key is None:
        log.warning("$%s is not set: approve/deny links are signed with a key made for this "
                    "process; they stop working when it restarts and on other replicas",
                    cfg.policy.approval.secret_env)
        return secrets.token_bytes(32)
    return key


def authenticator(cfg: Config) -> Authenticator:
    return Authenticator(Principal(p.name, p.actor_kind, p.roles, p.token_sha256)
                         for p in cfg.principals)


def executors(cfg: Config, session: aiohttp.ClientSession, clock: Clock) -> Router:
    """The configured executors behind one router that picks per catalogue action."""
    catalogue = cfg.catalogue()
    ex: dict[str, Executor] = {}
    wh = cfg.executors.webhook
    if wh is not None:
        secret = env_secret(wh.secret_env)
        if secret is None:
            log.warning("$%s is not set: webhook actions are sent unsigned; receivers cannot "
                        "tell them from forgeries", wh.secret_env)
        ex["webhook"] = WebhookExecutor(session, wh.url, timeout_s=wh.timeout_s,
                                        secret=secret)
    cmd = cfg.executors.command
    if cmd is not None:
        templates: Mapping[str, tuple[str, ...]] = {
            name: spec.command for name, spec in catalogue.actions.items() if spec.command}
        ex["command"] = CommandExecutor(templates, cmd.allow, clock=clock,
                                        timeout_s=cmd.timeout_s)
    for name, options in cfg.executors.plugins.items():
        ex[f"plugin:{name}"] = load_executor(name, **options)
    return Router(ex, catalogue.actions)


@dataclass
class Plane:
    control: ControlPlane
    followup: FollowUp
    kill_switch: KillSwitch
    gate: Callable[[ActionRequest], Awaitable[str | None]]


def build_plane(cfg: Config, redis: aioredis.Redis, *, audit: AuditSink, actions: ActionSink,
                pages: PageSink, clock: Clock, metrics: Metrics) -> Plane:
    gov = governance(cfg)
    timeout, prefix = cfg.redis.timeout_s, cfg.redis.key_prefix
    limits = RedisLimits(redis, cfg.limits.limits(), clock, timeout_s=timeout, prefix=prefix)
    store = RequestStore(redis, timeout_s=timeout, prefix=prefix)
    kill = KillSwitch(redis, prefix, timeout_s=timeout)
    verify_store = VerifyStore(redis, timeout_s=timeout, prefix=prefix)

    async def paused() -> tuple[bool, str]:
        state = await kill.read()
        if state is None:
            # Fail closed: machines do not act on a switch nobody can read (people may).
            raise StoreUnavailable("the kill switch cannot be read (Redis unavailable or "
                                   "slow); failing closed")
        if not state.paused:
            return False, ""
        return True, f"automation paused by {state.actor}: {state.reason}"

    async def gate(ex: ActionRequest) -> str | None:
        """The action runner's last check: machines' actions do not run while paused, even
        those queued before the pause, approved during it, or rollbacks."""
        raw = ex.context.get("request")
        actor = raw.get("actor") if isinstance(raw, dict) else None
        if isinstance(actor, dict) and actor.get("kind") == ActorKind.HUMAN.value:
            return None
        try:
            stop, why = await paused()
        except StoreUnavailable as e:
            return str(e)
        return why if stop else None

    control = ControlPlane(
        gov, limits=limits,
        approvals=ApprovalStore(redis, secrets=[approval_secret(cfg)], clock=clock,
                                nonce=system_nonce, timeout_s=timeout, prefix=prefix),
        store=store, audit=audit, actions=actions, pages=pages, clock=clock, paused=paused,
        on_submission=lambda sub: metrics.requests.labels(
            sub.request.actor.kind.value, sub.status.value,
            sub.checks[-1].code if sub.checks else "").inc(),
        on_approval=lambda event: metrics.approvals.labels(event).inc(),
        verify_store=verify_store)
    followup = FollowUp(gov, limits=limits, verify_store=verify_store,
                        store=store, audit=audit, actions=actions, pages=pages, clock=clock)
    return Plane(control, followup, kill, gate)
