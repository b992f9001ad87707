"""AlertmanagerPager against a fake ``POST /api/v2/alerts`` that checks alerts as Alertmanager
does (labels, annotation names, RFC 3339 times, endsAt after startsAt)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.pagers.alertmanager import (
    DESCRIPTION_CHARS,
    AlertmanagerPager,
    postable_alert,
)

from .chat_apis import (
    APPROVE,
    CHART,
    CONSOLE,
    CONTEXT,
    DENY,
    PAGE,
    AlertmanagerApi,
    Invalid,
    Refusal,
    check_alerts,
    serve,
)
from .conftest import Reply

NOW = 1764131890.0  # ten seconds after the finding (PAGE.ts = 1764131880.0)

LABELS = {"alertname": "hotpath_error_ratio", "service": "checkout", "metric": "error_ratio",
          "severity": "critical", "hotpath_incident": "inc-checkout-eu", "region": "eu"}
DESCRIPTION = "\n".join([
    "value 0.21 vs baseline 0.004 (deviation 12.3), confidence 97% (ewma, mad)",
    "since: 2025-11-26T04:38:00Z",
    "recent: ▁▁▂▁▃█",
    "owner: payments-core",
    "runbook: https://runbooks.example/checkout",
    "automation why not: budget exhausted",
    "automation rule: restart-checkout",
    "automation action: restart_pods",
    "automation target: deployment/checkout",
    "recent changes:",
    "- kind: deploy, service: checkout, ts: 2025-11-26 04:35:00 UTC, actor: ci, "
    "version: v1.4.2, description: new retry policy, before_s: 180",
    "suggested next steps:",
    "- a deploy of checkout v1.4.2 went out 3 min before the anomaly: consider rolling it back",
    "- check the runbook: https://runbooks.example/checkout",
    "correlated findings:",
    "- service: payments, metric: latency_p99_ms, region: eu, value: 950, baseline: 210, "
    "since: 2025-11-26T04:37:30Z",
])


@pytest.fixture
async def am() -> AsyncIterator[AlertmanagerApi]:
    async with serve(AlertmanagerApi()) as api:
        yield api


def pager(session: aiohttp.ClientSession, api: AlertmanagerApi,
          now: float = NOW) -> AlertmanagerPager:
    return AlertmanagerPager(session, api.base, clock=lambda: now, firing_for_s=3600.0)


async def test_a_trigger_is_one_firing_alert(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    await pager(http_session, am).send(PAGE)
    assert am.accepted == [[{
        "labels": LABELS,
        "annotations": {"summary": PAGE.summary, "description": DESCRIPTION,
                        "runbook_url": "https://runbooks.example/checkout", "dashboard": CHART},
        "startsAt": "2025-11-26T04:38:00.000Z",
        "endsAt": "2025-11-26T05:38:10.000Z",  # now + firing_for_s
        "generatorURL": CHART,
    }]]


async def test_an_approval_page_carries_the_exact_urls(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    automation = {**CONTEXT["automation"], "status": "pending_approval",
                  "approval": {"approve": APPROVE, "deny": DENY,
                               "expires": "2025-11-26T05:38:00Z"}}
    page = replace(PAGE, links={"approve": APPROVE, "deny": DENY, "console": CONSOLE},
                   context={**CONTEXT, "automation": automation})
    await pager(http_session, am).send(page)
    [[alert]] = am.accepted
    assert alert["labels"] == LABELS  # the same alert as the trigger's, in Alertmanager's eyes
    annotations = alert["annotations"]
    assert (annotations["approve_url"], annotations["deny_url"],
            annotations["console_url"]) == (APPROVE, DENY, CONSOLE)
    assert alert["generatorURL"] == CONSOLE
    assert annotations["description"].splitlines()[9:11] == [
        "automation status: pending_approval",
        "approval pending (expires 2025-11-26T05:38:00Z): see approve_url and deny_url",
    ]


async def test_a_resolve_ends_the_same_alert_now(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    await pager(http_session, am, now=NOW + 600).send(replace(PAGE, event="resolve"))
    [[alert]] = am.accepted
    assert alert["labels"] == LABELS
    assert (alert["startsAt"], alert["endsAt"]) == ("2025-11-26T04:38:00.000Z",
                                                    "2025-11-26T04:48:10.000Z")


async def test_a_finding_ahead_of_our_clock_never_ends_before_it_starts(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    await pager(http_session, am, now=PAGE.ts - 30).send(replace(PAGE, event="resolve"))
    [[alert]] = am.accepted
    assert alert["startsAt"] == alert["endsAt"] == "2025-11-26T04:38:00.000Z"


async def test_an_acknowledge_refreshes_the_firing_alert(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    await pager(http_session, am).send(replace(PAGE, event="acknowledge"))
    [[alert]] = am.accepted
    assert (alert["labels"], alert["endsAt"]) == (LABELS, "2025-11-26T05:38:10.000Z")
    assert alert["annotations"]["status"] == "acknowledged"


async def test_a_page_without_a_time_lets_alertmanager_stamp_it(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    await pager(http_session, am).send(replace(PAGE, ts=float("nan"), context={}))
    [[alert]] = am.accepted
    assert "startsAt" not in alert and "generatorURL" not in alert
    assert alert["endsAt"] == "2025-11-26T05:38:10.000Z"


async def test_label_names_are_made_valid_and_ours_are_not_overwritten(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    page = replace(PAGE, metric="http.latency-p99", labels={
        "k8s.pod": "api-7f9", "2xx": "yes", "severity": "sev1", "k8s_pod": "other", "": "e"})
    await pager(http_session, am).send(page)
    [[alert]] = am.accepted
    assert alert["labels"] == {
        "alertname": "hotpath_http_latency_p99", "service": "checkout",
        "metric": "http.latency-p99", "severity": "critical",
        "hotpath_incident": "inc-checkout-eu", "_": "e", "_2xx": "yes", "k8s_pod": "api-7f9",
        "label_severity": "sev1",
    }


async def test_an_oversized_page_is_cut_and_passes(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession
) -> None:
    correlated = [{"service": f"svc{i}", "metric": "latency", "value": i} for i in range(200)]
    context = {**CONTEXT, "correlated": correlated, "correlated_more": 40,
               "changes": [{"description": "c" * 10_000}], "dump": "y" * 2_000_000}
    page = replace(PAGE, summary="x" * 5000, context=context)
    await pager(http_session, am).send(page)
    [[alert]] = am.accepted
    annotations = alert["annotations"]
    assert annotations["summary"] == "x" * 1023 + "…"
    description = annotations["description"].splitlines()
    assert description[10] == "- description: " + "c" * 286 + "…"  # the entry cut to 300
    assert description[14:26] == [
        "correlated findings:",
        *[f"- service: svc{i}, metric: latency, value: {i}" for i in range(10)],
        "- … and 230 more in the console",
    ]
    assert description[26] == "dump: " + "y" * 293 + "…"
    assert len(annotations["description"]) < DESCRIPTION_CHARS


def test_a_description_is_cut_to_its_limit() -> None:
    context = {f"note_{i:03}": "n" * 400 for i in range(100)}
    description = postable_alert(replace(PAGE, context=context), NOW)["annotations"]["description"]
    assert len(description) == DESCRIPTION_CHARS
    assert description.endswith("n…")


@pytest.mark.parametrize(("alerts", "detail"), [
    ({"labels": {"alertname": "a"}}, "body: must be a JSON array of alerts"),
    ([{"annotations": {}}], "alerts[0].labels in body is required"),
    ([{"labels": {}}], "alerts[0]: at least one label pair required"),
    ([{"labels": {"alertname": ""}}], "alerts[0]: at least one label pair required"),
    ([{"labels": {"service": "s"}}], "alerts[0].labels: alertname is required"),
    ([{"labels": {"alertname": "a", "1x": "v"}}], "invalid label set: invalid name '1x'"),
    ([{"labels": {"alertname": "a", "x": 1}}], "alerts[0].labels.x: must be a string"),
    ([{"labels": {"alertname": "a"}, "annotations": {"a-b": "v"}}],
     "invalid annotations: invalid name 'a-b'"),
    ([{"labels": {"alertname": "a"}, "startsAt": "yesterday"}],
     "alerts[0].startsAt: 'yesterday' is not an RFC3339 date-time"),
    ([{"labels": {"alertname": "a"}, "startsAt": 1764131880}],
     "alerts[0].startsAt: 1764131880 is not an RFC3339 date-time"),
    ([{"labels": {"alertname": "a"}, "startsAt": "2025-11-26T04:38:00Z",
       "endsAt": "2025-11-26T04:37:59.999999999Z"}],
     "alerts[0]: start time must be before end time"),
    ([{"labels": {"alertname": "a"}, "generatorURL": "console"}],
     "alerts[0].generatorURL: 'console' is not a URI"),
    ([{"labels": {"alertname": "a"}, "fingerprint": "x"}],
     "alerts[0]: unknown field(s) fingerprint"),
])
async def test_alertmanager_refuses_invalid_alerts(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession, alerts: Any, detail: str,
) -> None:
    async with http_session.post(am.url, data=orjson.dumps(alerts),
                                 headers={"Content-Type": "application/json"}) as resp:
        assert (resp.status, await resp.json()) == (400, detail)
    assert am.refused == [Refusal(400, "bad_request", detail)]
    assert am.accepted == []


@pytest.mark.parametrize(("reply", "error", "message", "retry_after"), [
    (Reply(400, body=b'"invalid label set"'), PermanentDeliveryError,
     'HTTP 400: "invalid label set"', None),
    (Reply(429, {"Retry-After": "12"}, body=b""), RetryableDeliveryError, "HTTP 429", 12.0),
    (Reply(500, body=b'"failed to put alerts"'), RetryableDeliveryError,
     'HTTP 500: "failed to put alerts"', None),
    (Reply(503, {"Retry-After": "2"}, body=b""), RetryableDeliveryError, "HTTP 503", 2.0),
])
async def test_answers_are_classified(
    am: AlertmanagerApi, http_session: aiohttp.ClientSession,
    reply: Reply, error: type[Exception], message: str, retry_after: float | None,
) -> None:
    am.script.append(reply)
    p = pager(http_session, am)
    with pytest.raises(error) as info:
        await p.send(PAGE)
    assert type(info.value) is error
    assert str(info.value) == message
    assert info.value.retry_after == retry_after  # type: ignore[attr-defined]
    await p.send(PAGE)
    assert len(am.accepted) == 1


def test_firing_for_must_be_positive(http_session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="firing_for_s must be > 0, got 0"):
        AlertmanagerPager(http_session, "http://127.0.0.1:9093", firing_for_s=0)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
# The keys adapters render specially, so each shape reaches each renderer; and any others.
context_keys = st.sampled_from(sorted(CONTEXT)) | st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    metric=st.text(max_size=100), service=st.text(max_size=50),
    labels=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=8),
    context=st.dictionaries(context_keys, json_values, max_size=20),
    links=st.dictionaries(st.text(max_size=30), st.text(max_size=40), max_size=8),
    ts=st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 4e9),
    now=st.floats(0, 4e9),
    event=st.sampled_from(["trigger", "acknowledge", "resolve"]),
)
def test_any_page_makes_an_alert_alertmanager_accepts(
    metric: str, service: str, labels: dict[str, str], context: dict[str, Any],
    links: dict[str, str], ts: float, now: float, event: Any,
) -> None:
    page = replace(PAGE, metric=metric, service=service, labels=labels, context=context,
                   links=links, ts=ts, event=event)
    try:
        check_alerts(orjson.loads(orjson.dumps([postable_alert(page, now)])))
    except Invalid as e:  # pragma: no cover - the failure report
        raise AssertionError(e.detail) from None
