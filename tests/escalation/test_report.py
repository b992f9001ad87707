"""The scorecard over hand-built audit records: every metric, exact numbers."""

from __future__ import annotations

import orjson
import pytest

from escalation.report import Durations, actor_kind, scorecard
from tests.escalation.report_records import LOG, decision, outcome, request, verification


def test_every_metric_of_a_full_log() -> None:
    card = scorecard(LOG)
    assert card.records == len(LOG)
    assert card.unknown_kinds == {"mystery": 2}
    assert card.by_kind["outcome"] == 9 and card.by_kind["checkpoint"] == 1

    a = card.actions
    assert a.by_result == {"success": 4, "failed": 1, "not_executed": 1}
    assert a.executed == 5
    assert a.by_action == {
        "drain_node": {"success": 1, "failed": 0, "not_executed": 0},
        "restart_pods": {"success": 3, "failed": 0, "not_executed": 1},
        "scale_out": {"success": 0, "failed": 1, "not_executed": 0},
    }
    assert (a.automation_executed, a.automation_failed) == (4, 1)
    assert card.automation_error_rate == 0.25

    rb = card.rollbacks
    assert (rb.count, rb.succeeded, rb.restored, rb.not_restored, rb.unverified) == (3, 2, 1, 1, 1)
    assert card.rollback_rate == 3 / 5

    ap = card.approvals
    assert ap.by_event == {"requested": 3, "approved": 1, "denied": 1, "expired": 1,
                           "refused": 1}
    assert ap.latency == Durations(2, 30.0, 90.0, 90.0)
    assert ap.denials_by_code == {"denied": 1, "self_approval": 1}

    assert card.requests.by_result == {"dry_run": 1, "pending_approval": 3, "queued": 5,
                                       "refused": 2}
    assert card.requests.refused_by_stage == {"limits": {"budget_exhausted": 1},
                                              "policy": {"freeze": 1}}

    # 5 "page" records, and 2 findings the processor paged (decision "page")
    assert card.pages.total == 7
    assert card.pages.by_cause == {"no_recovery": 2, "action_failed": 1,
                                   "approval_expired": 1, "finding": 2, "other": 1}
    assert card.pages.automation_failures == 4

    im = card.impact
    assert im.findings == 5
    assert im.detect == Durations(5, 4.0, 10.0, 10.0)    # 1, 2, 4, 6, 10
    assert im.act == Durations(4, 5.0, 10.0, 10.0)       # 3, 5, 8, 10
    assert im.recover == Durations(2, 60.0, 300.0, 300.0)


def test_since_keeps_records_written_at_or_after_it() -> None:
    card = scorecard(LOG, since=7600.0)
    # the expiry and its page, r8-r10, r11's outcome, the other page, 4 bookkeeping/unknown
    assert card.records == 11
    assert card.approvals.by_event == {"requested": 0, "approved": 0, "denied": 0,
                                       "expired": 1, "refused": 0}
    assert card.requests.by_result == {"dry_run": 1, "refused": 2}
    assert card.actions.by_result == {"success": 0, "failed": 0, "not_executed": 1}
    # r7's page still has its cause: the expiry is inside the window too.
    assert card.pages.by_cause == {"no_recovery": 0, "action_failed": 0,
                                   "approval_expired": 1, "finding": 0, "other": 1}
    assert card.since == 7600.0


def test_empty_log_is_all_zeros_and_rates_are_none() -> None:
    card = scorecard([])
    none = {"count": 0, "p50": None, "p90": None, "max": None}
    assert card.to_dict() == {
        "since": None, "records": 0, "by_kind": {}, "unknown_kinds": {},
        "actions": {"executed": 0, "by_result": {"success": 0, "failed": 0, "not_executed": 0},
                    "by_action": {}, "automation_executed": 0, "automation_failed": 0},
        "rollbacks": {"count": 0, "succeeded": 0, "restored": 0, "not_restored": 0,
                      "unverified": 0},
        "approvals": {"by_event": {"requested": 0, "approved": 0, "denied": 0, "expired": 0,
                                   "refused": 0},
                      "latency": none, "denials_by_code": {}},
        "requests": {"by_result": {}, "refused_by_stage": {}},
        "pages": {"total": 0, "by_cause": {"no_recovery": 0, "action_failed": 0,
                                           "approval_expired": 0, "finding": 0, "other": 0},
                  "automation_failures": 0},
        "impact": {"findings": 0, "detect": none, "act": none, "recover": none},
        "api_calls": {},
        "automation_error_rate": None, "rollback_rate": None,
    }


def test_api_calls_are_counted_accepted_or_refused_by_code() -> None:
    calls = [{"kind": "api", "ts": 1.0, "body": {"status": s, "code": c}}
             for s, c in ((202, "queued"), (200, "duplicate"), (403, "no_rule"),
                          (401, "unknown_token"), (403, "no_rule"))]
    card = scorecard(calls)
    assert card.api_calls == {"accepted": 2, "refused no_rule": 2,
                              "refused unknown_token": 1}
    assert card.unknown_kinds == {}


def test_to_dict_is_json_and_carries_the_rates() -> None:
    out = orjson.loads(orjson.dumps(scorecard(LOG).to_dict()))
    assert out["automation_error_rate"] == 0.25
    assert out["rollback_rate"] == 0.6
    assert out["pages"]["automation_failures"] == 4
    assert out["impact"]["recover"] == {"count": 2, "p50": 60.0, "p90": 300.0, "max": 300.0}


def test_recovery_without_event_ts_uses_the_findings_time() -> None:
    card = scorecard([decision("f1", 100.0, 101.0),
                      request("r1", "queued", finding="f1", event_ts=100.0),
                      verification("r1", "recovered", 130.0)])
    assert card.impact.recover == Durations(1, 30.0, 30.0, 30.0)


def test_a_rollback_verified_only_before_it_is_unverified() -> None:
    card = scorecard([outcome("r1", "restart_pods", "success"),
                      verification("r1", "recovered", 10.0, 0.0),
                      outcome("r1-rb", "undo", "success", rollback_of="r1")])
    assert (card.rollbacks.restored, card.rollbacks.unverified) == (0, 1)


def test_a_rollback_that_did_not_run_is_not_a_rollback() -> None:
    card = scorecard([outcome("r1", "restart_pods", "success"),
                      outcome("r1-rb", "undo", "not_executed", rollback_of="r1")])
    assert card.rollbacks.count == 0
    assert card.actions.by_result == {"success": 1, "failed": 0, "not_executed": 0}


@pytest.mark.parametrize(("values", "expected"), [
    ([], Durations(0, None, None, None)),
    ([5.0], Durations(1, 5.0, 5.0, 5.0)),
    ([float(v) for v in range(10, 0, -1)], Durations(10, 5.0, 9.0, 10.0)),
    ([1.0, 2.0], Durations(2, 1.0, 2.0, 2.0)),
])
def test_durations_nearest_rank(values: list[float], expected: Durations) -> None:
    assert Durations.of(values) == expected


@pytest.mark.parametrize(("actor", "kind"), [
    ("automation:rule-a", "automation"), ("automation", "automation"),
    ({"kind": "human", "name": "alice"}, "human"), ({"name": "x"}, None), (7, None),
])
def test_actor_kind(actor: object, kind: str | None) -> None:
    assert actor_kind(actor) == kind


def test_malformed_bodies_count_but_do_not_break_the_card() -> None:
    # Only reachable with --no-verify: the writer never produces these.
    card = scorecard([{"kind": "outcome", "ts": 1.0, "body": ["not", "an", "object"]},
                      {"kind": "decision", "ts": 2.0, "body": {"evidence": "junk"}},
                      {"kind": "request", "ts": 3.0, "body": {"request": 7, "result": "queued"}}])
    assert card.records == 3
    assert card.actions.by_result == {"success": 0, "failed": 0, "not_executed": 0, "missing": 1}
    assert card.requests.by_result == {"queued": 1}
