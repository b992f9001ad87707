"""Incident timing: the effect table, heals, repeats and validation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hotpath.demo.incidents import (
    EXPECT_ACT,
    EXPECT_ACT_AFTER_APPROVAL,
    EXPECT_PAGE_BUDGET,
    EXPECT_PAGE_NO_RULE,
    FIRST_INCIDENT_S,
    Incident,
    default_incidents,
    last_end_s,
)

ONCE = Incident("once", "checkout", "http_latency_p99_ms", start_s=10, duration_s=5, factor=6)
REPEAT = Incident("rep", "payments", "queue_depth", start_s=10, duration_s=1.5, factor=8,
                  repeat_every_s=5, repeats=3)
STUBBORN = Incident("stub", "search", "error_ratio", start_s=10, duration_s=5, factor=100,
                    healable=False)


@pytest.mark.parametrize(
    ("incident", "now", "healed_at", "expected"),
    [
        (ONCE, 9.99, None, 1.0),       # before
        (ONCE, 10.0, None, 6.0),       # first instant is on
        (ONCE, 14.99, None, 6.0),      # during
        (ONCE, 15.0, None, 1.0),       # the end is exclusive
        (ONCE, 12.0, 11.0, 1.0),       # healed during the occurrence
        (ONCE, 12.0, 10.0, 1.0),       # healed at its first instant
        (ONCE, 12.0, 9.0, 6.0),        # a heal before the incident began does nothing
        (ONCE, 12.0, 13.0, 6.0),       # a heal not yet happened does nothing
        (REPEAT, 11.0, None, 8.0),     # occurrence 0
        (REPEAT, 11.5, None, 1.0),     # between occurrences
        (REPEAT, 15.0, None, 8.0),     # occurrence 1
        (REPEAT, 20.5, None, 8.0),     # occurrence 2
        (REPEAT, 25.0, None, 1.0),     # only three repeats
        (REPEAT, 10.5, 10.2, 1.0),     # heal ends occurrence 0 ...
        (REPEAT, 15.5, 10.2, 8.0),     # ... but not occurrence 1
        (REPEAT, 15.5, 15.2, 1.0),     # a heal inside occurrence 1 ends it
        (REPEAT, 20.5, 15.2, 8.0),     # and occurrence 2 comes back
        (STUBBORN, 12.0, 11.0, 100.0),  # not healable: a heal changes nothing
    ],
)
def test_effect_table(incident: Incident, now: float, healed_at: float | None,
                      expected: float) -> None:
    assert incident.effect(now, healed_at) == expected


def test_occurrences_and_end() -> None:
    assert [REPEAT.occurrence_at(t) for t in (9.0, 10.0, 12.0, 15.1, 20.0, 21.6)] == [
        None, 0, None, 1, 2, None]
    assert REPEAT.end_s == 21.5
    assert ONCE.end_s == 15.0
    assert last_end_s([ONCE, REPEAT]) == 21.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_s": 0}, "incident 'x': start_s must be >= 0 and duration_s > 0, got 0 and 0"),
        ({"start_s": -1}, "incident 'x': start_s must be >= 0 and duration_s > 0, got -1 and 1"),
        ({"factor": 0}, "incident 'x': factor must be > 0, got 0"),
        ({"repeats": 0}, "incident 'x': repeats must be >= 1, got 0"),
        ({"repeats": 2}, "incident 'x': repeats > 1 needs repeat_every_s"),
        ({"repeats": 2, "repeat_every_s": 0.5},
         "incident 'x': duration_s 1 must not exceed repeat_every_s 0.5"),
        ({"expect": "fix"},
         "incident 'x': expect 'fix' is not one of act, page: no remediation rule, "
         "page: budget exhausted, act after approval"),
    ],
)
def test_invalid_incidents(kwargs: dict[str, Any], message: str) -> None:
    valid = Incident("x", "s", "m", start_s=0, duration_s=1, factor=2)
    with pytest.raises(ValueError) as err:
        replace(valid, **kwargs)
    assert str(err.value) == message


def test_default_incidents_cover_the_four_outcomes() -> None:
    a, b, c, d = default_incidents()
    assert (a.service, a.metric, a.factor, a.expect) == (
        "checkout", "http_latency_p99_ms", 6.0, EXPECT_ACT)
    assert (b.service, b.metric, b.factor, b.healable, b.expect) == (
        "search", "error_ratio", 100.0, False, EXPECT_PAGE_NO_RULE)
    assert (c.service, c.metric, c.factor, c.duration_s, c.expect) == (
        "payments", "queue_depth", 8.0, 1.5, EXPECT_PAGE_BUDGET)
    # Two acts use the budget (limit 2), the third spike is the one paged; four for margin.
    assert c.repeats >= 4
    # Stays up until the approved failover heals it, and ends no later than the others, so
    # the new incident does not lengthen the shortest demo.
    assert (d.service, d.metric, d.repeats, d.healable, d.expect) == (
        "shipping", "queue_depth", 1, True, EXPECT_ACT_AFTER_APPROVAL)
    assert d.duration_s >= 10 and d.end_s <= max(a.end_s, b.end_s, c.end_s)
    assert min(i.start_s for i in default_incidents()) == FIRST_INCIDENT_S
