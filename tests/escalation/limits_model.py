"""A pure model of ``escalation.limits``: the same rules, written the plain way.

The Lua script keeps counters trimmed to their windows; the model keeps every grant ever
made and counts them afresh each time, so the two share no code and little shape — a bug
in one is unlikely to be mirrored in the other. The state-machine test drives both with
the same requests and compares.

>>> from escalation.limits import LimitRequest, Limits, Window
>>> from escalation.request import Actor, Request
>>> def item(key, target):
...     return LimitRequest(Request(Actor.parse("human:a"), "restart", "shop", "prod",
...                                 target, key, 0.0), service_targets=4)
>>> m = LimitsModel(Limits(Window(5, 60.0), cooldown_s=30.0, blast_fraction=0.5))
>>> [m.claim(item(k, t), 100.0) for k, t in [("a", "t1"), ("a", "t2"), ("b", "t1"),
...                                           ("c", "t2"), ("d", "t3")]]
['claimed', 'duplicate', 'cooldown', 'claimed', 'blast_radius']
>>> m.failures(item("e", "t1"), 131.0)
[]
"""

from __future__ import annotations

from dataclasses import dataclass

from escalation.limits import LimitRequest, Limits
from escalation.request import Request


@dataclass
class Grant:
    key: str
    action: str
    service: str
    target: str
    at: float
    lease_end: float
    budgeted: bool          # an (action, service) budget applied, so it counts against one
    released: bool = False


class LimitsModel:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.grants: list[Grant] = []

    @property
    def keys(self) -> set[str]:
        return {g.key for g in self.grants}

    def in_flight(self, now: float, service: str | None = None) -> int:
        return sum(1 for g in self.grants
                   if not g.released and g.lease_end > now
                   and (service is None or g.service == service))

    def budget_room(self, item: LimitRequest, now: float) -> float:
        """How many more claims the request's own (action, service) budget has room for.

        Requests on one (action, service) may carry different budgets (a rule's own
        overrides the default), so in a burst the order matters: granting the roomiest
        first can starve one with less room that Redis happened to run earlier.
        """
        budget, req = item.budget(self.limits), item.request
        if budget is None:
            return float("inf")
        used = sum(1 for g in self.grants
                   if g.budgeted and g.at >= now - budget.window_s
                   and (g.action, g.service) == (req.action, req.service))
        return budget.limit - used

    def failures(self, item: LimitRequest, now: float) -> list[str]:
        """Every limit the request would break now, in the script's check order."""
        lim, req = self.limits, item.request

        def recent(window_s: float) -> list[Grant]:
            return [g for g in self.grants if g.at >= now - window_s]

        out = []
        budget = item.budget(lim)
        if budget is not None and sum(
            1 for g in recent(budget.window_s)
            if g.budgeted and (g.action, g.service) == (req.action, req.service)
        ) >= budget.limit:
            out.append("budget_action_service")
        if lim.per_service is not None and sum(
            1 for g in recent(lim.per_service.window_s) if g.service == req.service
        ) >= lim.per_service.limit:
            out.append("budget_service")
        if lim.global_ is not None and len(recent(lim.global_.window_s)) >= lim.global_.limit:
            out.append("budget_global")
        cc_service, cc_global = lim.concurrency_per_service, lim.concurrency_global
        if cc_service is not None and self.in_flight(now, req.service) >= cc_service:
            out.append("concurrency_service")
        if cc_global is not None and self.in_flight(now) >= cc_global:
            out.append("concurrency_global")
        on_target = [g.at for g in self.grants
                     if (g.service, g.target) == (req.service, req.target)]
        if lim.cooldown_s > 0 and on_target and now < max(on_target) + lim.cooldown_s:
            out.append("cooldown")
        touched = recent(lim.blast_window_s)
        targets = {g.target for g in touched if g.service == req.service} | {req.target}
        if lim.blast_fraction is not None and (
            len(targets) / item.service_targets > lim.blast_fraction
        ):
            out.append("blast_radius")
        services = {g.service for g in touched} | {req.service}
        if lim.max_services is not None and len(services) > lim.max_services:
            out.append("blast_services")
        return out

    def decide(self, item: LimitRequest, now: float) -> str:
        """``claimed``, ``duplicate`` or the first refusal code, changing nothing."""
        if item.request.idempotency_key in self.keys:
            return "duplicate"
        failing = self.failures(item, now)
        return failing[0] if failing else "claimed"

    def claim(self, item: LimitRequest, now: float) -> str:
        code = self.decide(item, now)
        if code == "claimed":
            req = item.request
            self.grants.append(Grant(
                req.idempotency_key, req.action, req.service, req.target, now,
                now + self.limits.lease_s, item.budget(self.limits) is not None,
            ))
        return code

    def release(self, request: Request) -> None:
        for g in self.grants:
            if g.key == request.idempotency_key and g.service == request.service:
                g.released = True
