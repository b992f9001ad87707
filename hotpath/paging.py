"""Escalation to humans, wired: pager adapters from the config, and the paging stage the
processor runs on every batch's pages and on every clock tick.

Per batch (:meth:`Paging.prepare`): each finding page gets its packed context (what, since
when, baseline, sparkline, correlated findings, recent changes, automation, owner, runbook,
suggested actions); then incidents group them (one trigger per incident; inhibited and
silenced pages are tracked, not sent) and an on-call escalation starts for every trigger.
Per tick (:meth:`Paging.tick`): incidents clear for long enough resolve (a resolve page goes
to the pagers) and due escalations page their next level.

Everything here fails open towards the human: if the incident or on-call store cannot be
reached, the pages go out ungrouped rather than not at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace

import aiohttp
import redis.asyncio as aioredis

from escalation.changes import RecentChanges
from escalation.context import automation_of, build_context
from escalation.decision import Decision
from escalation.errors import StoreUnavailable
from escalation.finding import Finding
from escalation.incident_store import IncidentStore
from escalation.incidents import EventKind, alert_labels
from escalation.oncall import Notify, Transition
from escalation.oncall_store import OnCallStore
from escalation.page import Page
from escalation.pagers.alertmanager import AlertmanagerPager
from escalation.pagers.base import Pager
from escalation.pagers.console import ConsolePager
from escalation.pagers.opsgenie import OpsgeniePager
from escalation.pagers.pagerduty import PagerDutyPager
from escalation.pagers.slack import SlackPager
from escalation.pagers.webhook import WebhookPager
from escalation.silences import SilenceStore, silenced_by
from hotpath.config import Config
from hotpath.governance import env_secret
from hotpath.metrics import Metrics

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _env(name: str | None, what: str) -> str | None:
    value = os.environ.get(name) if name else None
    if not value:
        log.warning("$%s is not set: the %s pager is not started", name, what)
        return None
    return value


def build_pagers(cfg: Config, session: aiohttp.ClientSession, clock: Clock,
                 console_stream: object = None) -> list[Pager]:
    """Every configured adapter whose secret is present (a missing secret is warned about)."""
    import sys

    p = cfg.pagers
    out: list[Pager] = []
    if p.webhook is not None:
        secret = env_secret(p.webhook.secret_env)
        if secret is None:
            log.warning("$%s is not set: pages to the webhook are sent unsigned",
                        p.webhook.secret_env)
        out.append(WebhookPager(session, p.webhook.url, timeout_s=p.webhook.timeout_s,
                                secret=secret))
    if p.console is not None:
        out.append(ConsolePager(p.console.path, sys.stdout if p.console.echo else None))
    if p.pagerduty is not None:
        key = _env(p.pagerduty.routing_key_env, "PagerDuty")
        if key is not None:
            out.append(PagerDutyPager(session, key, url=p.pagerduty.url,
                                      timeout_s=p.pagerduty.timeout_s,
                                      client_url=cfg.console.url))
    if p.slack is not None:
        url = _env(p.slack.webhook_url_env, "Slack")
        if url is not None:
            out.append(SlackPager(session, url, timeout_s=p.slack.timeout_s))
    if p.opsgenie is not None:
        key = _env(p.opsgenie.api_key_env, "Opsgenie")
        if key is not None:
            out.append(OpsgeniePager(session, key, api_url=p.opsgenie.api_url,
                                     timeout_s=p.opsgenie.timeout_s,
                                     responders=p.opsgenie.responders))
    if p.alertmanager is not None:
        out.append(AlertmanagerPager(session, p.alertmanager.url,
                                     timeout_s=p.alertmanager.timeout_s, clock=clock))
    return out


def _notify_page(trigger: Page, n: Notify, receivers: tuple[str, ...]) -> Page:
    """The page of one escalation step: the incident's page, to this level's receivers,
    under its own dedup key (a later level is a new delivery, not a duplicate)."""
    return replace(trigger, receivers=receivers,
                   dedup_key=f"{trigger.dedup_key}:l{n.level}r{n.loop}")


class Paging:
    """The paging stage of one processor (see the module docstring)."""

    def __init__(self, cfg: Config, redis: aioredis.Redis, *, clock: Clock, metrics: Metrics,
                 changes: RecentChanges | None = None,
                 started: Sequence[str] | None = None) -> None:
        timeout, prefix = cfg.redis.timeout_s, cfg.redis.key_prefix
        self.cfg = cfg
        self.clock = clock
        self.metrics = metrics
        self.catalogue = cfg.catalogue()
        self.changes = changes
        self.incidents = IncidentStore(redis, cfg.incidents.spec(), cfg.incidents.rules(),
                                       prefix=prefix, timeout_s=timeout)
        self.silences = SilenceStore(redis, prefix=prefix, timeout_s=timeout)
        self.oncall = OnCallStore(redis, timeout_s=timeout, prefix=prefix)
        self._windows = cfg.incidents.windows()
        self._policy = (cfg.oncall.policy(cfg.oncall.default_policy)
                        if cfg.oncall.default_policy in cfg.oncall.policies else None)
        # The latest trigger page of each incident, for the escalation steps' pages.
        self._triggers: dict[str, Page] = {}
        # Pagers actually running (a secret may be missing): a level naming none of them
        # pages everyone rather than no one.
        self._started = None if started is None else tuple(started)

    def _receivers(self, wanted: Sequence[str]) -> tuple[str, ...]:
        if self._started is None:
            return tuple(wanted)
        running = tuple(r for r in wanted if r in self._started)
        if wanted and not running:
            log.warning("on-call receivers %s are not running; paging every pager instead",
                        ", ".join(wanted))
        return running

    def with_context(self, d: Decision, page: Page, links: dict[str, str],
                     batch: Sequence[Finding], now: float) -> Page:
        f = d.finding
        recent = ([] if self.changes is None else
                  self.changes.for_service(f.service, f.ts, self.cfg.changes.horizon_s
                                           if self.cfg.changes else 3600.0))
        ctx = build_context(f, automation_of(d, links), now=now,
                            owner=self.catalogue.service(f.service),
                            console_url=self.cfg.console.url, candidates=batch,
                            changes=recent)
        return replace(page, context=ctx.to_dict())

    async def prepare(self, pages: Sequence[Page], now: float,
                      decorate: Callable[[Page, Page], Page] | None = None) -> list[Page]:
        """Group a batch's finding pages into incidents; the pages to put in the outbox.

        ``decorate(observed, outgoing)`` packs the context into a page that will be sent
        (only those: a page grouped into an open incident is not worth the work). A page
        asking for an approval is never grouped away: its approve/deny links must reach a
        person whatever incident it belongs to.
        """
        if not pages:
            return []
        dress = decorate or (lambda observed, out: out)
        asks = [p for p in pages if "approve" in p.links]
        grouped = [p for p in pages if "approve" not in p.links]
        direct = [dress(p, p) for p in asks]
        if not grouped:
            return direct
        try:
            silences = [*self._windows, *await self.silences.active(now)]
            events = await self.incidents.observe(grouped, now, silences)
        except StoreUnavailable as err:
            log.warning("incidents unavailable, paging ungrouped: %s", err)
            # The config's maintenance windows still hold (they need no Redis).
            spec = self.cfg.incidents.spec()
            held = [p for p in grouped
                    if silenced_by(alert_labels(p, spec), self._windows, now) is None]
            return direct + [dress(p, p) for p in held]
        out: list[Page] = direct
        for ev in events:
            self.metrics.incident_events.labels(ev.kind.value).inc()
            if ev.page is None:
                continue
            page = ev.page if ev.observed is None else dress(ev.observed, ev.page)
            if ev.kind is EventKind.TRIGGER:
                if self.cfg.api.enabled and self._policy is not None:
                    # One click from the page (a Slack button, a PagerDuty link) to ack it.
                    ack = f"{self.cfg.api.public_url.rstrip('/')}/incidents/{ev.incident.key}/ack"
                    page = replace(page, links={**page.links, "ack": ack})
                self._triggers[ev.incident.key] = page
                first = await self._start_escalation(ev.incident.key, now)
                if first:  # the trigger goes to the policy's first level only
                    page = replace(page, receivers=first)
            out.append(page)
        return out

    async def _start_escalation(self, key: str, now: float) -> tuple[str, ...]:
        """Start the incident's escalation; the first level's receivers (() = everyone)."""
        if self._policy is None:
            return ()
        try:
            t = await self.oncall.start(self._policy, key, now)
        except StoreUnavailable as e:
            log.warning("on-call store unavailable; incident %s paged to every pager: %s",
                        key, e)
            return ()
        receivers: list[str] = []
        for n in t.actions:
            self.metrics.escalations.labels(str(n.level)).inc()
            receivers.extend(r for r in n.receivers if r not in receivers)
        return self._receivers(receivers)

    async def follow_up(self, t: Transition, now: float) -> list[Page]:
        """What the pagers must hear when a person acknowledges or resolves an incident (API
        or inbound webhook), on whichever replica the word arrives.

        A resolve also closes the incident, so later findings open a new one instead of
        being grouped into the resolved one. Alertmanager has no "acknowledged": an
        acknowledge would re-fire the alert there, so it is not told.
        """
        key = t.state.incident_key
        status = t.state.status.value
        if status not in ("acked", "resolved"):
            return []
        trigger = self._triggers.get(key)
        if trigger is None:
            try:
                inc = await self.incidents.get(key)
            except StoreUnavailable as e:
                log.warning("follow-up of %s: %s", key, e)
                inc = None
            if inc is None:
                return []
            trigger = replace(inc.page, incident_key=inc.key, dedup_key=f"hotpath-{inc.key}")
        if status == "resolved":
            self._triggers.pop(key, None)
            by = t.state.resolved_by or "someone"
            try:
                closed = await self.incidents.close(key, now, by)
            except StoreUnavailable as e:
                log.warning("closing incident %s: %s", key, e)
                closed = None
            if closed is not None and closed.page is not None:
                return [closed.page]
            return [replace(trigger, event="resolve", receivers=(), created=now,
                            dedup_key=f"{trigger.dedup_key}:resolve")]
        told = tuple(n for n in (self._started or ()) if n != "alertmanager")
        return [replace(trigger, event="acknowledge", receivers=told, created=now,
                        dedup_key=f"{trigger.dedup_key}:acknowledge")]

    async def tick(self, now: float) -> list[Page]:
        """Resolves and due escalation steps (each handed to exactly one replica)."""
        out: list[Page] = []
        try:
            resolved = await self.incidents.tick(now)
        except StoreUnavailable as err:
            log.warning("incident tick: %s", err)
            resolved = []
        for ev in resolved:
            self.metrics.incident_events.labels(ev.kind.value).inc()
            if ev.page is None:
                continue
            out.append(ev.page)
            self._triggers.pop(ev.incident.key, None)
            try:
                await self.oncall.resolve(ev.incident.key, "hotpath:clear", now)
            except StoreUnavailable as err:
                log.warning("on-call resolve of %s failed: %s", ev.incident.key, err)
        try:
            for t in await self.oncall.due(now):
                for n in t.actions:
                    trigger = self._triggers.get(n.incident_key)
                    if trigger is None:
                        # Opened by another replica or before a restart: the shared store
                        # keeps the incident's latest page (its context dropped).
                        inc = await self.incidents.get(n.incident_key)
                        if inc is None:
                            continue  # resolved meanwhile
                        trigger = replace(inc.page, incident_key=inc.key, event="trigger",
                                          dedup_key=f"hotpath-{inc.key}")
                    self.metrics.escalations.labels(str(n.level)).inc()
                    out.append(_notify_page(trigger, n, self._receivers(n.receivers)))
        except StoreUnavailable as err:
            log.warning("escalation sweep: %s", err)
        return out
