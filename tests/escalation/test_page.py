"""Page: built purely from a decision, round-trips through JSON exactly."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from escalation.decision import Decision, DecisionKind, Reason, RemediationRule
from escalation.finding import Finding
from escalation.page import Page, page_from_decision, severity_for


def finding(**kw: object) -> Finding:
    base: dict[str, object] = dict(
        finding_id="f123", series_key="checkout|error_ratio|region=eu", service="checkout",
        metric="error_ratio", labels={"region": "eu"}, ts=1000.0, value=0.21,
        baseline=0.004, deviation=12.3, confidence=0.97, detectors=("ewma", "mad"),
        recent=tuple(float(i) for i in range(40)),
    )
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


RULE = RemediationRule("restart", action="restart_pods")


def test_page_from_a_budget_exhausted_decision() -> None:
    d = Decision(DecisionKind.PAGE, (Reason.RULE_MATCHED, Reason.BUDGET_EXHAUSTED),
                 finding(), RULE)
    p = page_from_decision(d, now=1001.5)
    assert p == Page(
        dedup_key="hotpath-f123",
        summary="checkout error_ratio{region=eu} 0.21 vs baseline 0.004 (dev 12.3)"
                " — budget exhausted",
        severity="critical", service="checkout", metric="error_ratio",
        labels={"region": "eu"}, value=0.21, baseline=0.004, deviation=12.3,
        confidence=0.97, detectors=("ewma", "mad"),
        reasons=("rule matched", "budget exhausted"),
        recent=tuple(float(i) for i in range(10, 40)),
        finding_id="f123", ts=1000.0, created=1001.5, action=None,
    )


def test_action_is_set_only_when_automation_acted() -> None:
    acted = Decision(DecisionKind.ACT, (Reason.RULE_MATCHED, Reason.LIMITS_CLAIMED),
                     finding(), RULE)
    assert page_from_decision(acted, 1.0).action == "restart_pods"
    refused = Decision(DecisionKind.PAGE, (Reason.APPROVAL_REQUIRED,), finding(), RULE)
    assert page_from_decision(refused, 1.0).action is None


def test_the_same_finding_gives_the_same_dedup_key_at_another_time() -> None:
    d = Decision(DecisionKind.PAGE, (Reason.NO_RULE,), finding())
    assert page_from_decision(d, 1.0).dedup_key == page_from_decision(d, 99.0).dedup_key


@pytest.mark.parametrize(
    ("confidence", "severity"),
    [(1.0, "critical"), (0.95, "critical"), (0.9499, "error"), (0.85, "error"),
     (0.8, "warning"), (0.7, "warning"), (0.69, "info"), (0.0, "info")],
)
def test_severity_from_confidence(confidence: float, severity: str) -> None:
    assert severity_for(confidence) == severity


def test_unknown_baseline_travels_as_null_and_comes_back_nan() -> None:
    d = Decision(DecisionKind.PAGE, (Reason.NO_RULE,), finding(baseline=math.nan, labels={}))
    p = page_from_decision(d, 2.0)
    assert p.summary == "checkout error_ratio 0.21 vs baseline ? (dev 12.3) — no remediation rule"
    assert b'"baseline":null' in p.to_json()
    back = Page.from_json(p.to_json())
    assert math.isnan(back.baseline)
    assert back.to_json() == p.to_json()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "page: not JSON: "),
        (b"[1]", "page: expected an object, got list"),
        (b'{"dedup_key": "x"}', "page: missing field 'summary'"),
    ],
)
def test_from_json_names_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Page.from_json(data)
    assert str(info.value).startswith(message)


def test_from_json_rejects_an_unknown_severity() -> None:
    d = Page.from_json(page_from_decision(
        Decision(DecisionKind.PAGE, (Reason.NO_RULE,), finding()), 1.0).to_json()).to_dict()
    d["severity"] = "sev1"
    with pytest.raises(ValueError) as info:
        Page.from_json(orjson.dumps(d))
    assert str(info.value) == (
        "page: bad field value: severity 'sev1' is not one of critical, error, warning, info"
    )


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    value=finite, baseline=finite, deviation=finite,
    confidence=st.floats(0.0, 1.0),
    labels=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    recent=st.lists(finite, max_size=40),
    now=finite,
)
def test_json_round_trip_is_exact(
    value: float, baseline: float, deviation: float, confidence: float,
    labels: dict[str, str], recent: list[float], now: float,
) -> None:
    f = finding(value=value, baseline=baseline, deviation=deviation, confidence=confidence,
                labels=labels, recent=tuple(recent))
    p = page_from_decision(Decision(DecisionKind.PAGE, (Reason.NO_RULE,), f), now)
    assert Page.from_json(p.to_json()) == p
