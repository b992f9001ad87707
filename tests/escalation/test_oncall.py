"""On-call escalation decisions (pure): who is paged when, with an injected clock."""

from __future__ import annotations

import math

import pytest

from escalation.oncall import (
    EscalationPolicy,
    EscalationState,
    Level,
    Notify,
    Reason,
    Status,
    Transition,
    acknowledge,
    resolve,
    start,
    step,
)

T0 = 1764132000.0
POLICY = EscalationPolicy(
    "checkout",
    (Level(("alice",), 300.0), Level(("bob", "carol"), 600.0), Level(("sre-lead",), 900.0)),
    repeat=1,
)


def walk(state: EscalationState, times: list[float]) -> list[Transition]:
    out = []
    for t in times:
        tr = step(state, t)
        out.append(tr)
        state = tr.state
    return out


def test_start_pages_level_one_and_sets_its_deadline() -> None:
    t = start(POLICY, "inc-1", T0)
    assert t.reason is Reason.STARTED
    assert t.actions == (Notify("inc-1", 1, 0, ("alice",)),)
    assert (t.state.status, t.state.level, t.state.loop) == (Status.PAGING, 1, 0)
    assert t.state.deadline == T0 + 300.0
    assert t.state.started_at == T0
    assert t.detail == "inc-1: level 1 of policy checkout paged"


def test_no_ack_by_the_timeout_pages_the_next_level() -> None:
    s = start(POLICY, "inc-1", T0).state
    early = step(s, T0 + 299.999)
    assert (early.reason, early.actions, early.state) == (Reason.NOT_DUE, (), s)
    assert early.detail == "inc-1: level 1 has until 2025-11-26T04:45:00Z to acknowledge"
    t = step(s, T0 + 300.0)
    assert t.reason is Reason.ESCALATED
    assert t.actions == (Notify("inc-1", 2, 0, ("bob", "carol")),)
    assert t.state.deadline == T0 + 300.0 + 600.0
    assert t.detail == "inc-1: level 1 did not acknowledge; level 2 paged"


def test_a_late_sweep_gives_the_next_level_its_full_timeout() -> None:
    s = start(POLICY, "inc-1", T0).state
    t = step(s, T0 + 1000.0)  # the sweeper was down for 700 s past the deadline
    assert t.actions[0].level == 2  # one level at a time, never skipped
    assert t.state.deadline == T0 + 1000.0 + 600.0


def test_ack_stops_escalation_for_good() -> None:
    s = step(start(POLICY, "inc-1", T0).state, T0 + 300.0).state
    t = acknowledge(s, "human:bob", T0 + 420.0)
    assert t.reason is Reason.ACKED
    assert (t.state.status, t.state.acked_by, t.state.acked_at, t.state.deadline) == (
        Status.ACKED, "human:bob", T0 + 420.0, None)
    assert t.detail == "inc-1: acknowledged by human:bob"
    for later in walk(t.state, [T0 + 10_000.0, T0 + 100_000.0]):
        assert (later.reason, later.actions) == (Reason.STOPPED, ())
    assert step(t.state, T0 + 1e6).detail == "inc-1: escalation is acked; nobody more is paged"
    again = acknowledge(t.state, "human:carol", T0 + 500.0)
    assert (again.reason, again.state) == (Reason.ALREADY_ACKED, t.state)
    assert again.detail == "inc-1: already acknowledged by human:bob at 2025-11-26T04:47:00Z"


def test_repeat_loops_back_to_level_one_repeat_times_then_stops() -> None:
    s = start(POLICY, "inc-1", T0).state
    now, times = T0, []
    for _ in range(2 * 3 + 2):  # two passes of three levels, then two more sweeps
        now += 1000.0  # past every level's timeout
        times.append(now)
    steps = walk(s, times)
    assert [(t.reason, tuple((a.level, a.loop, a.receivers) for a in t.actions))
            for t in steps] == [
        (Reason.ESCALATED, ((2, 0, ("bob", "carol")),)),
        (Reason.ESCALATED, ((3, 0, ("sre-lead",)),)),
        (Reason.REPEATED, ((1, 1, ("alice",)),)),
        (Reason.ESCALATED, ((2, 1, ("bob", "carol")),)),
        (Reason.ESCALATED, ((3, 1, ("sre-lead",)),)),
        (Reason.EXHAUSTED, ()),
        (Reason.STOPPED, ()),
        (Reason.STOPPED, ()),
    ]
    assert steps[2].detail == ("inc-1: last level did not acknowledge; back to level 1 "
                               "(repeat 1 of 1)")
    assert steps[5].detail == "inc-1: 3 level(s) paged 2 time(s); nobody acknowledged"
    assert steps[5].state.status is Status.EXHAUSTED and steps[5].state.deadline is None


@pytest.mark.parametrize("repeat, pages", [(0, 3), (2, 9)])
def test_pages_sent_in_total_are_levels_times_passes(repeat: int, pages: int) -> None:
    policy = EscalationPolicy("p", POLICY.levels, repeat=repeat)
    t = start(policy, "k", T0)
    sent = len(t.actions)
    now = T0
    while t.reason is not Reason.EXHAUSTED:
        now += 1000.0
        t = step(t.state, now)
        sent += len(t.actions)
    assert sent == pages


def test_an_exhausted_escalation_can_still_be_acked() -> None:
    policy = EscalationPolicy("p", (Level(("a",), 60.0),))
    done = step(start(policy, "k", T0).state, T0 + 60.0)
    assert done.reason is Reason.EXHAUSTED
    t = acknowledge(done.state, "human:a", T0 + 3600.0)
    assert (t.reason, t.state.status) == (Reason.ACKED, Status.ACKED)


def test_resolve_ends_it_whatever_it_was_doing() -> None:
    s = start(POLICY, "inc-1", T0).state
    for before in (s, acknowledge(s, "human:a", T0 + 1.0).state):
        t = resolve(before, "automation:clear", T0 + 50.0)
        assert t.reason is Reason.RESOLVED
        assert (t.state.status, t.state.resolved_by, t.state.resolved_at, t.state.deadline) == (
            Status.RESOLVED, "automation:clear", T0 + 50.0, None)
        assert step(t.state, T0 + 1e6).actions == ()
        assert acknowledge(t.state, "human:b", T0 + 60.0).reason is Reason.ALREADY_RESOLVED
        second = resolve(t.state, "human:b", T0 + 60.0)
        assert (second.reason, second.state) == (Reason.ALREADY_RESOLVED, t.state)
        assert second.detail == (
            "inc-1: already resolved by automation:clear at 2025-11-26T04:40:50Z")


def test_state_round_trips_through_json_with_every_field() -> None:
    s = acknowledge(step(start(POLICY, "inc-1", T0 + 0.1).state, T0 + 300.7).state,
                    "human:bob", T0 + 301.3).state
    assert EscalationState.from_dict(s.to_dict()) == s
    r = resolve(s, "human:bob", T0 + 999.9).state
    assert EscalationState.from_dict(r.to_dict()) == r


@pytest.mark.parametrize("levels, repeat, message", [
    ((), 0, "escalation policy 'p': needs at least one level"),
    ((Level((), 60.0),), 0, "escalation policy 'p' level 1: needs at least one receiver"),
    ((Level(("a",), 60.0), Level(("",), 60.0)), 0,
     "escalation policy 'p' level 2: needs at least one receiver"),
    ((Level(("a",), 0.0),), 0, "escalation policy 'p' level 1: ack_timeout_s must be a "
                               "positive finite number of seconds, got 0.0"),
    ((Level(("a",), math.inf),), 0, "escalation policy 'p' level 1: ack_timeout_s must be a "
                                    "positive finite number of seconds, got inf"),
    ((Level(("a",), 60.0),), -1, "escalation policy 'p': repeat must be >= 0, got -1"),
])
def test_bad_policies_are_refused_with_what_is_wrong(levels: tuple[Level, ...], repeat: int,
                                                      message: str) -> None:
    with pytest.raises(ValueError) as e:
        EscalationPolicy("p", levels, repeat)
    assert str(e.value) == message


def test_start_needs_an_incident_key() -> None:
    with pytest.raises(ValueError) as e:
        start(POLICY, "", T0)
    assert str(e.value) == "escalation: incident_key must not be empty"
