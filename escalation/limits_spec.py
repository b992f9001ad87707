"""What the limits are: the config's windows and caps, one request's claim, and the answer.

Plain frozen values, shared by the Redis claim (:mod:`escalation.limits`) and the reading of
its reply (:mod:`escalation.limits_reply`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from escalation.request import Request
from escalation.verdict import Check

REFUSAL_CODES = (
    "budget_action_service", "budget_service", "budget_global", "concurrency_service",
    "concurrency_global", "cooldown", "blast_radius", "blast_services",
)  # fmt: skip


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value}")


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` claims per rolling ``window_s`` seconds.

    >>> Window(3, 0)
    Traceback (most recent call last):
    ...
    ValueError: window_s must be a positive finite number of seconds, got 0
    """

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"window limit must be >= 0, got {self.limit}")
        _positive("window_s", self.window_s)


@dataclass(frozen=True, slots=True)
class Limits:
    """The config's ``limits:`` section; ``None`` switches a limit off.

    >>> Limits(blast_fraction=1.5)
    Traceback (most recent call last):
    ...
    ValueError: blast_fraction must be within [0, 1], got 1.5
    """

    per_action_service: Window | None = Window(3, 3600.0)
    per_service: Window | None = None
    global_: Window | None = None
    concurrency_per_service: int | None = None
    concurrency_global: int | None = None
    # An in-flight slot frees itself after this if never released (its runner died).
    lease_s: float = 600.0
    # No new action on one (service, target) this soon after the last one.
    cooldown_s: float = 0.0
    # Max fraction of a service's targets touched within blast_window_s.
    blast_fraction: float | None = None
    blast_window_s: float = 3600.0
    # Max distinct services acted on within blast_window_s.
    max_services: int | None = None

    def __post_init__(self) -> None:
        for name in ("concurrency_per_service", "concurrency_global", "max_services"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        _positive("lease_s", self.lease_s)
        _positive("blast_window_s", self.blast_window_s)
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise ValueError(f"cooldown_s must be a finite number >= 0, got {self.cooldown_s}")
        if self.blast_fraction is not None and not 0 <= self.blast_fraction <= 1:
            raise ValueError(f"blast_fraction must be within [0, 1], got {self.blast_fraction}")


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """A request plus what the limits need beyond it.

    ``service_targets`` is the service's size (``ServiceSpec.targets``); ``action_budget``
    is a rule's own (action, service) budget, overriding ``Limits.per_action_service``.

    >>> from escalation.request import Actor
    >>> r = Request(Actor.parse("human:alice"), "restart_pods", "checkout", "prod", "pod-1",
    ...             "k", 0.0)
    >>> LimitRequest(r, service_targets=0)
    Traceback (most recent call last):
    ...
    ValueError: service_targets must be >= 1, got 0
    """

    request: Request
    service_targets: int = 1
    action_budget: Window | None = None

    def __post_init__(self) -> None:
        if self.service_targets < 1:
            raise ValueError(f"service_targets must be >= 1, got {self.service_targets}")

    def budget(self, limits: Limits) -> Window | None:
        return self.action_budget if self.action_budget is not None else limits.per_action_service


class LimitStatus(enum.Enum):
    CLAIMED = "claimed"          # every limit had room; the key and the slots are ours
    DUPLICATE = "duplicate"      # the idempotency key was claimed before: a replay
    REFUSED = "refused"          # a limit is reached; check.code says which
    UNAVAILABLE = "unavailable"  # Redis unreachable, too slow or garbled: fail closed


@dataclass(frozen=True, slots=True)
class LimitOutcome:
    """``check`` is the ``Stage.LIMITS`` answer; ``check.state`` holds the counts read."""

    status: LimitStatus
    check: Check

    @property
    def ok(self) -> bool:
        return self.check.ok
