"""On-call escalation: who is paged next when nobody acknowledges (pure decisions).

An :class:`EscalationPolicy` is a ladder of :class:`Level` s, each a set of receivers and
how long they have to acknowledge. An incident's escalation is an :class:`EscalationState`
that carries a snapshot of its policy, so a replica running another config version (or a
hot reload that drops the policy) carries an in-flight escalation on unchanged.

Every change is a pure function returning a :class:`Transition` — the new state, the
receivers to page (:class:`Notify`), and a :class:`Reason`:

==================  ===========================================================================
reason              when
==================  ===========================================================================
started             :func:`start`: level 1 is paged, its ack timeout starts
not_due             :func:`step` before the current level's ack timeout: nothing to do
escalated           the ack timeout passed: the next level is paged
repeated            the last level's timeout passed and repeats are left: level 1 again
exhausted           the last level's timeout passed on the last repeat: nobody is paged any more
stopped             :func:`step` on an escalation that is acked, resolved or exhausted
acked / resolved    :func:`acknowledge` / :func:`resolve` applied: escalation stops
already_acked       acknowledged before (the detail says by whom)
already_resolved    resolved before: an ack or a second resolve changes nothing
==================  ===========================================================================

A level's timeout counts from when it was paged (``now`` of the step that paged it), not
from the previous deadline: a sweeper that ran late still gives each level its full time.

>>> policy = EscalationPolicy("checkout", (Level(("alice",), 300.0), Level(("bob",), 600.0)),
...                           repeat=1)
>>> t = start(policy, "inc-1", now=0.0)
>>> t.reason.value, t.actions[0].receivers, t.state.deadline
('started', ('alice',), 300.0)
>>> t = step(t.state, now=300.0)
>>> t.reason.value, t.actions[0].level, t.actions[0].receivers
('escalated', 2, ('bob',))
>>> t = acknowledge(t.state, "human:bob", now=320.0)
>>> t.reason.value, t.state.status.value, step(t.state, now=5000.0).actions
('acked', 'acked', ())
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from escalation.approval_tokens import iso_utc


@dataclass(frozen=True, slots=True)
class Level:
    """One rung of the ladder: who is paged, and how long they have to acknowledge."""

    receivers: tuple[str, ...]
    ack_timeout_s: float


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Levels paged in order; after the last, back to level 1 ``repeat`` more times.

    >>> EscalationPolicy("p", (Level((), 60.0),))
    Traceback (most recent call last):
    ...
    ValueError: escalation policy 'p' level 1: needs at least one receiver
    """

    name: str
    levels: tuple[Level, ...]
    repeat: int = 0

    def __post_init__(self) -> None:
        where = f"escalation policy {self.name!r}"
        if not self.name:
            raise ValueError("escalation policy: name must not be empty")
        if not self.levels:
            raise ValueError(f"{where}: needs at least one level")
        for i, level in enumerate(self.levels, start=1):
            if not level.receivers or any(not r for r in level.receivers):
                raise ValueError(f"{where} level {i}: needs at least one receiver")
            t = level.ack_timeout_s
            if not (math.isfinite(t) and t > 0):
                raise ValueError(f"{where} level {i}: ack_timeout_s must be a positive "
                                 f"finite number of seconds, got {t}")
        if self.repeat < 0:
            raise ValueError(f"{where}: repeat must be >= 0, got {self.repeat}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "repeat": self.repeat,
                "levels": [{"receivers": list(lv.receivers), "ack_timeout_s": lv.ack_timeout_s}
                           for lv in self.levels]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EscalationPolicy:
        """Inverse of :meth:`to_dict` (validated again).

        >>> p = EscalationPolicy("p", (Level(("a", "b"), 60.0),), repeat=2)
        >>> EscalationPolicy.from_dict(p.to_dict()) == p
        True
        """
        levels = tuple(Level(tuple(str(r) for r in lv["receivers"]), float(lv["ack_timeout_s"]))
                       for lv in raw["levels"])
        return cls(str(raw["name"]), levels, int(raw["repeat"]))


class Status(enum.Enum):
    PAGING = "paging"        # a level is paged and its ack timeout runs
    ACKED = "acked"          # someone took it: no more pages
    RESOLVED = "resolved"
    EXHAUSTED = "exhausted"  # every level of every repeat paged, nobody acknowledged


class Reason(enum.Enum):
    STARTED = "started"
    ALREADY_STARTED = "already_started"  # used by the store: a replayed start finds the record
    NOT_DUE = "not_due"
    ESCALATED = "escalated"
    REPEATED = "repeated"
    EXHAUSTED = "exhausted"
    STOPPED = "stopped"
    ACKED = "acked"
    ALREADY_ACKED = "already_acked"
    RESOLVED = "resolved"
    ALREADY_RESOLVED = "already_resolved"


@dataclass(frozen=True, slots=True)
class EscalationState:
    """Where one incident's escalation stands; JSON-able (:meth:`to_dict`)."""

    incident_key: str
    policy: EscalationPolicy
    status: Status
    level: int                 # 1-based: the level paged last
    loop: int                  # how many times the ladder went back to level 1
    deadline: float | None     # when the current level's ack timeout ends; None unless PAGING
    started_at: float
    acked_by: str | None = None
    acked_at: float | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"incident_key": self.incident_key, "policy": self.policy.to_dict(),
                "status": self.status.value, "level": self.level, "loop": self.loop,
                "deadline": self.deadline, "started_at": self.started_at,
                "acked_by": self.acked_by, "acked_at": self.acked_at,
                "resolved_by": self.resolved_by, "resolved_at": self.resolved_at}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EscalationState:
        """Inverse of :meth:`to_dict`.

        >>> s = start(EscalationPolicy("p", (Level(("a",), 60.0),)), "k", 1.5).state
        >>> EscalationState.from_dict(s.to_dict()) == s
        True
        """
        def opt_float(name: str) -> float | None:
            v = raw.get(name)
            return None if v is None else float(v)

        def opt_str(name: str) -> str | None:
            v = raw.get(name)
            return None if v is None else str(v)

        return cls(str(raw["incident_key"]), EscalationPolicy.from_dict(raw["policy"]),
                   Status(raw["status"]), int(raw["level"]), int(raw["loop"]),
                   opt_float("deadline"), float(raw["started_at"]), opt_str("acked_by"),
                   opt_float("acked_at"), opt_str("resolved_by"), opt_float("resolved_at"))


@dataclass(frozen=True, slots=True)
class Notify:
    """Page these receivers about this incident (level ``level`` of pass ``loop + 1``)."""

    incident_key: str
    level: int
    loop: int
    receivers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Transition:
    """A decision: the state after it, whom to page now, and why."""

    state: EscalationState
    actions: tuple[Notify, ...]
    reason: Reason
    detail: str


def _page(state: EscalationState, level: int, loop: int, now: float) -> EscalationState:
    lv = state.policy.levels[level - 1]
    return replace(state, status=Status.PAGING, level=level, loop=loop,
                   deadline=now + lv.ack_timeout_s)


def _notify(state: EscalationState) -> tuple[Notify, ...]:
    return (Notify(state.incident_key, state.level, state.loop,
                   state.policy.levels[state.level - 1].receivers),)


def start(policy: EscalationPolicy, incident_key: str, now: float) -> Transition:
    """Open the escalation of a new incident: level 1 is paged.

    >>> t = start(EscalationPolicy("p", (Level(("a", "b"), 60.0),)), "inc-7", now=10.0)
    >>> t.actions
    (Notify(incident_key='inc-7', level=1, loop=0, receivers=('a', 'b')),)
    """
    if not incident_key:
        raise ValueError("escalation: incident_key must not be empty")
    blank = EscalationState(incident_key, policy, Status.PAGING, 1, 0, None, now)
    state = _page(blank, 1, 0, now)
    return Transition(state, _notify(state), Reason.STARTED,
                      f"{incident_key}: level 1 of policy {policy.name} paged")


def step(state: EscalationState, now: float) -> Transition:
    """What the ack timeout means at ``now``: nothing yet, the next level, or the end.

    >>> p = EscalationPolicy("p", (Level(("a",), 60.0), Level(("b",), 60.0)))
    >>> t = step(start(p, "k", 0.0).state, now=59.9)
    >>> t.reason.value, t.detail
    ('not_due', 'k: level 1 has until 1970-01-01T00:01:00Z to acknowledge')
    >>> t = step(step(t.state, now=60.0).state, now=120.0)
    >>> t.reason.value, t.actions, t.state.status.value
    ('exhausted', (), 'exhausted')
    """
    key = state.incident_key
    if state.status is not Status.PAGING or state.deadline is None:
        return Transition(state, (), Reason.STOPPED,
                          f"{key}: escalation is {state.status.value}; nobody more is paged")
    if now < state.deadline:
        return Transition(state, (), Reason.NOT_DUE,
                          f"{key}: level {state.level} has until {iso_utc(state.deadline)} "
                          "to acknowledge")
    levels = len(state.policy.levels)
    if state.level < levels:
        nxt = _page(state, state.level + 1, state.loop, now)
        return Transition(nxt, _notify(nxt), Reason.ESCALATED,
                          f"{key}: level {state.level} did not acknowledge; "
                          f"level {nxt.level} paged")
    if state.loop < state.policy.repeat:
        nxt = _page(state, 1, state.loop + 1, now)
        return Transition(nxt, _notify(nxt), Reason.REPEATED,
                          f"{key}: last level did not acknowledge; back to level 1 "
                          f"(repeat {nxt.loop} of {state.policy.repeat})")
    done = replace(state, status=Status.EXHAUSTED, deadline=None)
    return Transition(done, (), Reason.EXHAUSTED,
                      f"{key}: {levels} level(s) paged {state.loop + 1} time(s); "
                      "nobody acknowledged")


def acknowledge(state: EscalationState, actor: str, now: float) -> Transition:
    """Someone took the incident: escalation stops (an exhausted one can still be acked).

    >>> p = EscalationPolicy("p", (Level(("a",), 60.0),))
    >>> t = acknowledge(start(p, "k", 0.0).state, "human:ann", now=5.0)
    >>> print(acknowledge(t.state, "human:bo", now=6.0).detail)
    k: already acknowledged by human:ann at 1970-01-01T00:00:05Z
    """
    key = state.incident_key
    if state.status is Status.RESOLVED:
        return _already_resolved(state)
    if state.status is Status.ACKED:
        return Transition(state, (), Reason.ALREADY_ACKED,
                          f"{key}: already acknowledged by {state.acked_by} "
                          f"at {_when(state.acked_at)}")
    acked = replace(state, status=Status.ACKED, deadline=None, acked_by=actor, acked_at=now)
    return Transition(acked, (), Reason.ACKED, f"{key}: acknowledged by {actor}")


def resolve(state: EscalationState, actor: str, now: float) -> Transition:
    """The incident is over: escalation stops for good.

    >>> p = EscalationPolicy("p", (Level(("a",), 60.0),))
    >>> t = resolve(start(p, "k", 0.0).state, "automation:clear", now=9.0)
    >>> t.reason.value, acknowledge(t.state, "human:ann", 10.0).reason.value
    ('resolved', 'already_resolved')
    """
    if state.status is Status.RESOLVED:
        return _already_resolved(state)
    done = replace(state, status=Status.RESOLVED, deadline=None, resolved_by=actor,
                   resolved_at=now)
    return Transition(done, (), Reason.RESOLVED, f"{state.incident_key}: resolved by {actor}")


def _already_resolved(state: EscalationState) -> Transition:
    return Transition(state, (), Reason.ALREADY_RESOLVED,
                      f"{state.incident_key}: already resolved by {state.resolved_by} "
                      f"at {_when(state.resolved_at)}")


def _when(ts: float | None) -> str:
    return "an unknown time" if ts is None else iso_utc(ts)
