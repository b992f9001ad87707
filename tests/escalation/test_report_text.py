"""The scorecard's text: the whole rendering of a known log, n/a rates, 80 columns."""

from __future__ import annotations

from escalation.report import scorecard
from escalation.report_text import WIDTH, render
from tests.escalation.report_records import LOG, outcome

FULL = """\
hotpath scorecard: 52 records since 1970-01-01T00:16:40Z
  not read (unknown kinds)      mystery 2

Actions                         executed  success  failed  not_executed
  all                                  5        4       1             1
  drain_node                           1        1       0             0
  restart_pods                         3        3       0             1
  scale_out                            1        0       1             0
  automation error rate         25.0% (1/4)
  rollback rate                 60.0% (3/5)
  rollbacks restored health     1 of 3 (not restored 1, unverified 1)
  rollback actions succeeded    2 of 3

Approvals                       requested  approved  denied  expired  refused
                                        3         1       1        1        1
  decision latency              n 2, p50 30.0s, p90 1.5m, max 1.5m
  denials by code               denied 1, self_approval 1

Requests
  by result                     dry_run 1, pending_approval 3, queued 5,
                                refused 2
  refused at stage/code         limits/budget_exhausted 1, policy/freeze 1

Pages
  total                         7
  caused by automation failing  4
  by cause                      no_recovery 2, action_failed 1,
                                approval_expired 1, finding 2, other 1

Incident impact (5 findings)    n   p50    p90    max
  time to detect                5  4.0s  10.0s  10.0s
  time to act                   4  5.0s  10.0s  10.0s
  time to recover               2  1.0m   5.0m   5.0m"""


def test_full_log_renders_exactly() -> None:
    assert render(scorecard(LOG, since=1000.0)) == FULL


def test_empty_log_says_n_a_not_a_division_error() -> None:
    lines = render(scorecard([])).splitlines()
    assert lines[0] == "hotpath scorecard: 0 records"
    assert "  automation error rate         n/a (0/0)" in lines
    assert "  rollback rate                 n/a (0/0)" in lines
    assert "  decision latency              n 0, p50 -, p90 -, max -" in lines
    assert "  time to recover               0    -    -    -" in lines


def test_long_action_names_are_cut_to_keep_80_columns() -> None:
    name = "restart_every_pod_of_the_checkout_service_in_every_region"
    text = render(scorecard([outcome("r1", name, "success")]))
    assert "  restart_every_pod_of_the_ch…         1        1       0             0" in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH


def test_results_outside_the_three_columns_are_listed() -> None:
    text = render(scorecard([outcome("r1", "restart_pods", "timed_out")]))
    assert "  other results                 timed_out 1" in text.splitlines()
