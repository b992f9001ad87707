"""Injected incidents of the demo fleet: when a fault is on, and by how much it moves a metric.

An :class:`Incident` multiplies one metric of one service by ``factor`` during its
occurrences. Times are seconds since the fleet started. A repeating incident comes back
every ``repeat_every_s``; a heal (the remediation action arriving) ends only the occurrence
that is on at that moment, so a recurring fault recurs. Everything here is pure: the caller
passes the time and the last heal time.

>>> inc = Incident("spike", "payments", "queue_depth", start_s=10, duration_s=2, factor=8,
...                repeat_every_s=5, repeats=2, expect="act")
>>> [inc.effect(t, healed_at=None) for t in (9.9, 10.0, 11.9, 12.0, 15.5, 17.0)]
[1.0, 8.0, 8.0, 1.0, 8.0, 1.0]
>>> inc.effect(11.0, healed_at=10.5), inc.effect(15.5, healed_at=10.5)
(1.0, 8.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXPECT_ACT = "act"
EXPECT_PAGE_NO_RULE = "page: no remediation rule"
EXPECT_PAGE_BUDGET = "page: budget exhausted"
# The rule's action needs a person's approval: paged with approve/deny links, approved by
# the demo's on-call, then executed.
EXPECT_ACT_AFTER_APPROVAL = "act after approval"
EXPECTATIONS = (EXPECT_ACT, EXPECT_PAGE_NO_RULE, EXPECT_PAGE_BUDGET, EXPECT_ACT_AFTER_APPROVAL)

# Start of the first incident. The detectors need 30 points per series to warm up; at the
# 0.2 s publishing interval that is 6 s, so 10 s leaves 20 points of margin for a slow start
# of the consumer (it may join the group a few seconds after the fleet began publishing).
FIRST_INCIDENT_S = 10.0

# Gap between the spikes of the recurring incident: each spike must alert again, so the
# series has to clear (score < 0.3) and the EWMA spread has to shrink back in between. The
# EWMA winsorises its update at 3 σ, so a 1.5 s spike (8 points) widens the spread ~3× and
# 3.5 s of normal points undo it: with detectors.ensemble.default_ensemble, every one of the
# four spikes alerted at 4 s and at 5 s spacing over 30 seeds, healed or not.
RECURRING_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class Incident:
    """A multiplicative fault on ``service``/``metric``, possibly recurring.

    ``expect`` says what the hot path should do about it (for the demo summary): one of
    :data:`EXPECTATIONS` — ``"act"``, ``"page: no remediation rule"``, ``"page: budget
    exhausted"`` or ``"act after approval"``.

    >>> Incident("x", "s", "m", start_s=0, duration_s=3, factor=2, repeat_every_s=2,
    ...          repeats=2, expect="act")
    Traceback (most recent call last):
    ...
    ValueError: incident 'x': duration_s 3 must not exceed repeat_every_s 2
    """

    name: str
    service: str
    metric: str
    start_s: float
    duration_s: float
    factor: float
    repeat_every_s: float | None = None
    repeats: int = 1
    healable: bool = True
    expect: str = EXPECT_ACT

    def __post_init__(self) -> None:
        if self.start_s < 0 or self.duration_s <= 0:
            raise ValueError(
                f"incident {self.name!r}: start_s must be >= 0 and duration_s > 0, "
                f"got {self.start_s} and {self.duration_s}"
            )
        if self.factor <= 0:
            raise ValueError(f"incident {self.name!r}: factor must be > 0, got {self.factor}")
        if self.expect not in EXPECTATIONS:
            raise ValueError(f"incident {self.name!r}: expect {self.expect!r} is not one of "
                             f"{', '.join(EXPECTATIONS)}")
        if self.repeats < 1:
            raise ValueError(f"incident {self.name!r}: repeats must be >= 1, got {self.repeats}")
        if self.repeats > 1 and self.repeat_every_s is None:
            raise ValueError(f"incident {self.name!r}: repeats > 1 needs repeat_every_s")
        if self.repeat_every_s is not None and self.duration_s > self.repeat_every_s:
            raise ValueError(
                f"incident {self.name!r}: duration_s {self.duration_s:g} must not exceed "
                f"repeat_every_s {self.repeat_every_s:g}"
            )

    @property
    def end_s(self) -> float:
        """When the last occurrence ends if nothing heals it.

        >>> Incident("x", "s", "m", 10, 1.5, 8, repeat_every_s=9, repeats=4).end_s
        38.5
        """
        every = self.repeat_every_s or 0.0
        return self.start_s + (self.repeats - 1) * every + self.duration_s

    def occurrence_start(self, index: int) -> float:
        """Start of occurrence ``index`` (0-based).

        >>> Incident("x", "s", "m", 10, 1, 8, repeat_every_s=5, repeats=3).occurrence_start(2)
        20.0
        """
        return float(self.start_s + index * (self.repeat_every_s or 0.0))

    def occurrence_at(self, now_rel: float) -> int | None:
        """Index of the occurrence whose window holds ``now_rel``, ignoring heals.

        >>> inc = Incident("x", "s", "m", 10, 1, 8, repeat_every_s=5, repeats=2)
        >>> [inc.occurrence_at(t) for t in (9.0, 10.5, 11.0, 15.0, 20.0)]
        [None, 0, None, 1, None]
        """
        if now_rel < self.start_s:
            return None
        index = 0
        if self.repeat_every_s is not None:
            index = int((now_rel - self.start_s) // self.repeat_every_s)
        if index >= self.repeats:
            return None
        if now_rel - self.occurrence_start(index) < self.duration_s:
            return index
        return None

    def active_occurrence(self, now_rel: float, healed_at: float | None) -> int | None:
        """The occurrence that is on at ``now_rel``, or None when off or healed.

        A heal ends the occurrence it fell into; one from before that occurrence began,
        or one not yet happened at ``now_rel``, changes nothing.

        >>> inc = Incident("x", "s", "m", 10, 4, 8)
        >>> [inc.active_occurrence(12, h) for h in (None, 9.0, 11.0, 12.0, 13.0)]
        [0, 0, None, None, 0]
        """
        index = self.occurrence_at(now_rel)
        if index is None:
            return None
        if (
            self.healable
            and healed_at is not None
            and self.occurrence_start(index) <= healed_at <= now_rel
        ):
            return None
        return index

    def effect(self, now_rel: float, healed_at: float | None) -> float:
        """The multiplier on the metric at ``now_rel``: ``factor`` when on, else 1.0.

        >>> inc = Incident("x", "s", "m", 10, 4, 8, healable=False)
        >>> inc.effect(12, healed_at=11), inc.effect(14, healed_at=None)
        (8.0, 1.0)
        """
        if self.active_occurrence(now_rel, healed_at) is None:
            return 1.0
        return float(self.factor)


def default_incidents() -> tuple[Incident, ...]:
    """The four demo incidents: fixed by automation, paged (no rule), budget spent, and
    fixed by automation once the on-call approved it.

    >>> for i in default_incidents():
    ...     print(i.service, i.metric, i.expect, sep=" | ")
    checkout | http_latency_p99_ms | act
    search | error_ratio | page: no remediation rule
    payments | queue_depth | page: budget exhausted
    shipping | queue_depth | act after approval
    >>> max(i.end_s for i in default_incidents())
    30.5
    """
    return (
        # (A) restart-checkout fixes it; left alone it would last 20 s, so a missing or
        # late action shows as a long latency plateau rather than a blip.
        Incident(
            "checkout-latency",
            "checkout",
            "http_latency_p99_ms",
            start_s=FIRST_INCIDENT_S,
            duration_s=20.0,
            factor=6.0,
            expect=EXPECT_ACT,
        ),
        # (B) error ratio 0.002 → 0.2; no rule covers it and no action could heal it.
        Incident(
            "search-errors",
            "search",
            "error_ratio",
            start_s=FIRST_INCIDENT_S + 2.0,
            duration_s=8.0,
            factor=100.0,
            healable=False,
            expect=EXPECT_PAGE_NO_RULE,
        ),
        # (C) four spikes; scale-payments (limit 2 per window) acts on two, then pages.
        Incident(
            "payments-queue",
            "payments",
            "queue_depth",
            start_s=FIRST_INCIDENT_S + 4.0,
            duration_s=1.5,
            factor=8.0,
            repeat_every_s=RECURRING_EVERY_S,
            repeats=4,
            expect=EXPECT_PAGE_BUDGET,
        ),
        # (D) failover-shipping asks for failover_region, a high-risk action: the control
        # plane makes it a pending approval, the page carries approve/deny links, the demo's
        # on-call approves and the failover heals it. Left alone it lasts 14 s (ending with
        # the payments spikes, so the demo's minimum duration stays the same): an approval
        # that never came shows as a plateau, not a blip.
        Incident(
            "shipping-queue",
            "shipping",
            "queue_depth",
            start_s=FIRST_INCIDENT_S + 6.0,
            duration_s=14.0,
            factor=8.0,
            expect=EXPECT_ACT_AFTER_APPROVAL,
        ),
    )


def last_end_s(incidents: Sequence[Incident]) -> float:
    """When the last incident is over if nothing heals it (0 for none): the demo's minimum.

    >>> last_end_s(default_incidents()), last_end_s(())
    (30.5, 0.0)
    """
    return max((i.end_s for i in incidents), default=0.0)
