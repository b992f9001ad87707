"""Concurrent requesters against real Redis and the pure model: no limit is ever exceeded.

Four requesters, each a ``RedisLimits`` on its own connection, fire bursts of claims at
once (``asyncio.gather``); between bursts come single claims, peeks, replays of earlier
idempotency keys, releases and clock advances (injected, so windows, leases and cooldowns
roll deterministically). After every step the grants Redis made are checked against every
limit in every window, straight from the record of what was granted.

Which order Redis ran a burst's scripts in is not observable, but it need not be: every
claim of a burst sees the same clock reading and grants only ever tighten the limits. So a
request refused somewhere in the burst is refused at its end too, and a set of grants that
fits its limits fits them in any order — except that requests on one (action, service) may
carry different budgets (a rule's own overrides the default), and then the ones with the
least room must come first (earliest deadline first). Hence "the burst's grants, least
budget room first, then its refusals" is an order Redis could have used; the model replays
the burst in that order and must grant exactly what Redis granted and refuse the rest for
the reason Redis gave.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from escalation.limits import LimitOutcome, LimitRequest, Limits, LimitStatus, RedisLimits, Window
from escalation.request import Actor, Request
from hotpath.services.redis_server import RedisServer
from tests.escalation.limits_model import LimitsModel

CLAIMED, DUPLICATE, REFUSED = LimitStatus.CLAIMED, LimitStatus.DUPLICATE, LimitStatus.REFUSED
T0 = 1764132000.0
REQUESTERS = 4
SERVICES = {"a": 2, "b": 3, "c": 4}  # name -> targets, for blast radius
TARGETS = ("t1", "t2", "t3")
ACTIONS = ("restart", "scale")
# Whole seconds of tens at least: Redis expires keys on wall time, and one example runs far
# shorter than any of these, so only the injected clock ever rolls a window.
SECONDS = st.sampled_from([60.0, 120.0, 300.0])
WINDOWS = st.builds(Window, st.integers(0, 5), SECONDS)


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    """A few limits switched on at a time: with all of them on, the tightest refuses nearly
    everything and the others are never reached."""
    on = draw(st.sets(st.sampled_from(["as", "svc", "glob", "ccs", "ccg", "cooldown",
                                        "blast", "services"]), min_size=1, max_size=2))

    def window(name: str, low: int, high: int) -> Window | None:
        return draw(st.builds(Window, st.integers(low, high), SECONDS)) if name in on else None

    def count(name: str, low: int, high: int) -> int | None:
        return draw(st.integers(low, high)) if name in on else None

    return Limits(
        per_action_service=window("as", 1, 4),
        per_service=window("svc", 1, 6),
        global_=window("glob", 2, 10),
        concurrency_per_service=count("ccs", 1, 3),
        concurrency_global=count("ccg", 1, 5),
        lease_s=draw(st.sampled_from([30.0, 90.0, 400.0])),
        cooldown_s=draw(st.sampled_from([30.0, 90.0])) if "cooldown" in on else 0.0,
        blast_fraction=draw(st.sampled_from([0.34, 0.5, 0.75])) if "blast" in on else None,
        blast_window_s=draw(SECONDS),
        max_services=count("services", 1, 2),
    )


# (action, service, target, under the rule's own budget)
SPECS = st.tuples(st.sampled_from(ACTIONS), st.sampled_from(sorted(SERVICES)),
                  st.sampled_from(TARGETS), st.booleans())
STEPS = st.sampled_from([0.5, 5.0, 29.5, 30.0, 30.5, 60.0, 89.0, 120.0, 301.0])
T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Granted:
    """A grant as Redis answered it; the invariants read only these."""

    item: LimitRequest
    at: float
    lease_end: float
    step: int  # grants of one step came from one burst: their order is unknown
    released: bool = False

    @property
    def req(self) -> Request:
        return self.item.request


class LimitsMachine(RuleBasedStateMachine):
    url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        # The machine is synchronous; it drives its own loop, apart from pytest-asyncio's.
        self.loop = asyncio.new_event_loop()
        self.clients = [aioredis.Redis.from_url(self.url) for _ in range(REQUESTERS)]
        self.run(self.clients[0].flushall())
        self.clock = Clock()
        self.limits = Limits()
        self.requesters: list[RedisLimits] = []
        self.model = LimitsModel(self.limits)
        self.rule_budget: Window | None = None
        self.history: list[LimitRequest] = []
        self.ledger: list[Granted] = []
        self.counter = 0
        self.steps = 0

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        for client in self.clients:
            self.run(client.aclose())
        self.loop.close()

    @initialize(limits=limits(), rule_budget=st.none() | WINDOWS)
    def configure(self, limits: Limits, rule_budget: Window | None) -> None:
        self.limits, self.rule_budget = limits, rule_budget
        # A generous timeout: this is about atomicity, and the machine is shared with others.
        self.requesters = [RedisLimits(c, limits, self.clock, timeout_s=5.0)
                           for c in self.clients]
        self.model = LimitsModel(limits)

    def fresh(self, spec: tuple[str, str, str, bool]) -> LimitRequest:
        action, service, target, ruled = spec
        self.counter += 1
        req = Request(Actor.parse("agent:copilot"), action, service, "production", target,
                      f"k{self.counter}", self.clock.now)
        item = LimitRequest(req, SERVICES[service], self.rule_budget if ruled else None)
        self.history.append(item)
        return item

    def record(self, items: Sequence[LimitRequest], outs: Sequence[LimitOutcome]) -> None:
        self.steps += 1
        for item, out in zip(items, outs, strict=True):
            note(f"t+{self.clock.now - T0:g} {item.request.idempotency_key} "
                 f"{item.request.action}/{item.request.service}/{item.request.target}: "
                 f"{out.check}")
            assert out.status is not LimitStatus.UNAVAILABLE, out.check.detail
            if out.status is CLAIMED:
                now = self.clock.now
                self.ledger.append(Granted(item, now, now + self.limits.lease_s, self.steps))

    # --- rules ---------------------------------------------------------------------------

    @rule(specs=st.lists(SPECS, min_size=2, max_size=10),
          replays=st.lists(st.integers(0, 1000), max_size=3),
          batched=st.lists(st.booleans(), min_size=REQUESTERS, max_size=REQUESTERS))
    def burst(self, specs: list[tuple[str, str, str, bool]], replays: list[int],
              batched: list[bool]) -> None:
        """Claims from all requesters at once, some as one pipelined batch."""
        earlier = list(self.history)
        items = [self.fresh(s) for s in specs]
        items += [earlier[i % len(earlier)] for i in replays if earlier]
        keys_before = self.model.keys
        outs = self.run(self._concurrently(items, batched))
        self.record(items, outs)
        granted = [it for it, o in zip(items, outs, strict=True) if o.status is CLAIMED]
        keys = [it.request.idempotency_key for it in granted]
        assert len(keys) == len(set(keys)), "one key granted twice in a burst"
        for it, out in zip(items, outs, strict=True):
            key = it.request.idempotency_key
            if key in keys_before:
                assert out.status is DUPLICATE, f"replayed {key} was not a duplicate"
            elif out.status is DUPLICATE:
                assert key in keys, f"{key} called a duplicate but never granted"
        now = self.clock.now
        granted.sort(key=lambda it: self.model.budget_room(it, now))
        for it in granted:
            code = self.model.claim(it, now)
            assert code == "claimed", f"Redis granted {it.request.idempotency_key}; model: {code}"
        for it, out in zip(items, outs, strict=True):
            if out.status is REFUSED:
                failing = self.model.failures(it, now)
                assert out.check.code in failing, (it.request.idempotency_key, failing)

    async def _concurrently(self, items: list[LimitRequest],
                            batched: list[bool]) -> list[LimitOutcome]:
        results: dict[int, LimitOutcome] = {}

        async def requester(r: int) -> None:
            mine = list(range(r, len(items), REQUESTERS))
            limits = self.requesters[r]
            if batched[r]:
                outs = await limits.claim_many([items[i] for i in mine])
            else:
                outs = [await limits.claim(items[i]) for i in mine]
            results.update(zip(mine, outs, strict=True))

        await asyncio.gather(*(requester(r) for r in range(REQUESTERS)))
        return [results[i] for i in range(len(items))]

    @rule(spec=SPECS, r=st.integers(0, REQUESTERS - 1))
    def claim_one(self, spec: tuple[str, str, str, bool], r: int) -> None:
        item = self.fresh(spec)
        out = self.run(self.requesters[r].claim(item))
        self.record([item], [out])
        assert out.check.code == self.model.claim(item, self.clock.now)

    @precondition(lambda self: bool(self.history))
    @rule(pick=st.integers(0, 1000), r=st.integers(0, REQUESTERS - 1))
    def replay(self, pick: int, r: int) -> None:
        item = self.history[pick % len(self.history)]
        out = self.run(self.requesters[r].claim(item))
        self.record([item], [out])
        assert out.check.code == self.model.claim(item, self.clock.now)

    @rule(spec=SPECS, r=st.integers(0, REQUESTERS - 1))
    def peek(self, spec: tuple[str, str, str, bool], r: int) -> None:
        item = self.fresh(spec)
        out = self.run(self.requesters[r].peek(item))
        assert out.status is not LimitStatus.UNAVAILABLE, out.check.detail
        assert out.check.code == self.model.decide(item, self.clock.now)

    @precondition(lambda self: bool(self.ledger))
    @rule(pick=st.integers(0, 1000), r=st.integers(0, REQUESTERS - 1))
    def release(self, pick: int, r: int) -> None:
        granted = self.ledger[pick % len(self.ledger)]
        self.run(self.requesters[r].release(granted.req))
        granted.released = True
        self.model.release(granted.req)

    @rule(step=STEPS)
    def advance(self, step: float) -> None:
        self.clock.now += step

    # --- invariants, from the ledger alone -----------------------------------------------

    def before(self, g: Granted, window_s: float) -> list[Granted]:
        """Grants inside the window that ends at ``g``'s grant (``g`` included)."""
        return [h for h in self.ledger if g.at - window_s <= h.at <= g.at]

    @invariant()
    def a_key_is_granted_once(self) -> None:
        keys = [g.req.idempotency_key for g in self.ledger]
        assert len(keys) == len(set(keys))
        assert set(keys) == self.model.keys

    @invariant()
    def action_budgets_hold_in_every_window(self) -> None:
        """Each grant found its own budget with room, counting the grants before it. Inside
        one burst the order is unknown: some order must work, and if any does, least room
        first does."""
        lim = self.limits
        bursts: dict[tuple[int, str, str], list[Granted]] = defaultdict(list)
        for g in self.ledger:
            if g.item.budget(lim) is not None:
                bursts[g.step, g.req.action, g.req.service].append(g)
        for (step, action, service), grants in bursts.items():
            rooms = []
            for g in grants:
                budget = g.item.budget(lim)
                assert budget is not None
                earlier = [h for h in self.before(g, budget.window_s)
                           if h.step < step and h.item.budget(lim) is not None
                           and (h.req.action, h.req.service) == (action, service)]
                rooms.append(budget.limit - len(earlier))
            assert all(room > k for k, room in enumerate(sorted(rooms))), rooms

    @invariant()
    def shared_budgets_hold_in_every_window(self) -> None:
        lim = self.limits
        for g in self.ledger:
            if lim.per_service is not None:
                same = [h for h in self.before(g, lim.per_service.window_s)
                        if h.req.service == g.req.service]
                assert len(same) <= lim.per_service.limit
            if lim.global_ is not None:
                assert len(self.before(g, lim.global_.window_s)) <= lim.global_.limit

    @invariant()
    def concurrency_holds(self) -> None:
        live = [g for g in self.ledger if not g.released and g.lease_end > self.clock.now]
        if self.limits.concurrency_global is not None:
            assert len(live) <= self.limits.concurrency_global
        if self.limits.concurrency_per_service is not None:
            for service in SERVICES:
                on = [g for g in live if g.req.service == service]
                assert len(on) <= self.limits.concurrency_per_service

    @invariant()
    def cooldown_holds(self) -> None:
        cooldown = self.limits.cooldown_s
        for i, g in enumerate(self.ledger):
            for h in self.ledger[i + 1:]:
                if cooldown > 0 and (g.req.service, g.req.target) == (h.req.service, h.req.target):
                    assert abs(h.at - g.at) >= cooldown

    @invariant()
    def blast_radius_holds(self) -> None:
        lim = self.limits
        for g in self.ledger:
            near = self.before(g, lim.blast_window_s)
            if lim.blast_fraction is not None:
                targets = {h.req.target for h in near if h.req.service == g.req.service}
                assert len(targets) / SERVICES[g.req.service] <= lim.blast_fraction
            if lim.max_services is not None:
                assert len({h.req.service for h in near}) <= lim.max_services


# No explain phase: it traces every line under sys.settrace, and through asyncio and the
# Redis client that takes minutes and gigabytes on a failing case.
SETTINGS = settings(max_examples=50, stateful_step_count=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                    phases=[p for p in Phase if p is not Phase.explain])


@pytest.mark.redis
def test_concurrent_requesters_never_exceed_any_limit(redis_server: RedisServer) -> None:
    redis_server.start()
    LimitsMachine.url = redis_server.url
    run_state_machine_as_test(LimitsMachine, settings=SETTINGS)
