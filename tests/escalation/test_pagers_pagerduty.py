"""PagerDutyPager against a local Events API v2 that checks every documented rule."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.pagers.limits import shorten_key
from escalation.pagers.pagerduty import MAX_EVENT_BYTES, PagerDutyPager, pagerduty_event

from .pager_apis import (
    PagerDutyAPI,
    Scripted,
    oversized_context,
    pagerduty_problems,
    sample_page,
    serve,
)

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutyAPI]:
    api = PagerDutyAPI()
    async with serve(api):
        yield api


def pager(session: aiohttp.ClientSession, api: PagerDutyAPI) -> PagerDutyPager:
    return PagerDutyPager(session, KEY, url=f"{api.url}/v2/enqueue",
                          client_url="http://console.local")


async def test_a_trigger_passes_every_check_and_carries_the_context(
    pd: PagerDutyAPI, http_session: aiohttp.ClientSession
) -> None:
    page = sample_page()
    await pager(http_session, pd).send(page)
    [call] = pd.calls
    assert call.problems == []
    assert call.headers["Idempotency-Key"] == "hotpath-f1:trigger"
    assert call.json() == {
        "routing_key": KEY, "event_action": "trigger", "dedup_key": "hotpath-f1",
        "payload": {
            "summary": page.summary, "source": "checkout", "severity": "critical",
            "timestamp": "2025-11-26T04:40:00.250+00:00", "component": "error_ratio",
            "class": "error_ratio", "group": "eu-west-1",
            "custom_details": {
                "value": 0.21, "baseline": 0.004, "deviation": 12.3, "confidence": 0.97,
                "detectors": ["ewma", "mad"], "reasons": ["rule matched", "budget exhausted"],
                "action": None, **page.context,
            },
        },
        "links": [{"href": "http://console.local/approve/t1", "text": "approve"},
                  {"href": "http://console.local/deny/t1", "text": "deny"},
                  {"href": "http://console.local/chart/f1", "text": "chart"}],
        "images": [{"src": "http://console.local/spark/f1.png",
                    "alt": "checkout error_ratio sparkline",
                    "href": "http://console.local/chart/f1"}],
        "client": "hotpath", "client_url": "http://console.local",
    }
    assert pd.incidents == {"hotpath-f1": "trigger"}


async def test_no_image_without_an_image_url_and_the_group_falls_back_to_the_service(
    pd: PagerDutyAPI, http_session: aiohttp.ClientSession
) -> None:
    page = sample_page(labels={}, links={}, context={"sparkline": "▁▂▇"},
                       ts=math.nan, baseline=math.nan)
    await pager(http_session, pd).send(page)
    [call] = pd.calls
    event = call.json()
    assert call.problems == []
    assert "images" not in event and "links" not in event
    assert event["payload"]["group"] == "checkout"
    assert event["payload"]["timestamp"] == "2025-11-26T04:40:01.000+00:00"  # created
    assert event["payload"]["custom_details"]["baseline"] is None
    assert event["payload"]["custom_details"]["sparkline"] == "▁▂▇"


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_acknowledge_and_resolve_carry_only_the_key(
    pd: PagerDutyAPI, http_session: aiohttp.ClientSession, action: str
) -> None:
    await pager(http_session, pd).send(sample_page(incident_key="inc-checkout-eu"))
    await pager(http_session, pd).send(sample_page(incident_key="inc-checkout-eu", event=action))
    assert [c.problems for c in pd.calls] == [[], []]
    assert pd.calls[1].json() == {
        "routing_key": KEY, "event_action": action, "dedup_key": "inc-checkout-eu"}
    assert pd.calls[1].headers["Idempotency-Key"] == f"inc-checkout-eu:{action}"
    assert pd.incidents == {"inc-checkout-eu": action}


async def test_an_oversized_page_is_cut_to_fit_and_accepted(
    pd: PagerDutyAPI, http_session: aiohttp.ClientSession
) -> None:
    context = oversized_context()
    page = sample_page(summary="s" * 4990 + "0123456789", context=context,
                       incident_key="inc-" + "k" * 400)
    await pager(http_session, pd).send(page)
    [call] = pd.calls
    assert call.problems == []
    event = call.json()
    assert event["payload"]["summary"] == "s" * 1023 + "…"
    assert 400_000 < len(call.body) <= MAX_EVENT_BYTES  # used the budget, stayed under it
    assert event["dedup_key"] == shorten_key("inc-" + "k" * 400, 255)
    assert len(event["dedup_key"]) == 255
    details = event["payload"]["custom_details"]
    # largest first: the 800 KB runbook and the 1.5 MB change list are cut, small fields whole
    assert details["what"] == context["what"] and details["owner"] == "payments"
    assert details["value"] == 0.21 and details["reasons"] == ["rule matched", "budget exhausted"]
    assert details["runbook"].startswith("restart the pods") and details["runbook"].endswith("…")
    assert details["changes"][0] == context["changes"][0]
    assert details["changes"][-1].endswith(" more")
    assert pd.incidents == {event["dedup_key"]: "trigger"}


def test_the_event_is_deterministic_and_bounded_by_the_given_budget() -> None:
    page = sample_page(context=oversized_context())
    small = pagerduty_event(page, KEY, max_bytes=20_000)
    assert small == pagerduty_event(page, KEY, max_bytes=20_000)
    assert 19_000 < len(orjson.dumps(small)) <= 20_000
    assert pagerduty_problems(orjson.dumps(small)) == []


async def test_202_is_delivered_and_400_is_permanent_with_the_servers_message(
    pd: PagerDutyAPI, http_session: aiohttp.ClientSession
) -> None:
    body = b'{"status":"invalid event","message":"Event object is invalid","errors":["x"]}'
    pd.script = [Scripted(400, body=body)]
    with pytest.raises(PermanentDeliveryError) as info:
        await pager(http_session, pd).send(sample_page())
    assert str(info.value) == f"HTTP 400: {body.decode()}"
    assert info.value.status == 400
    await pager(http_session, pd).send(sample_page())  # script spent: the API's own 202
    assert pd.incidents == {"hotpath-f1": "trigger"}


@pytest.mark.parametrize(
    ("scripted", "status", "retry_after"),
    [(Scripted(429, {"Retry-After": "30"}), 429, 30.0), (Scripted(500), 500, None),
     (Scripted(503, {"Retry-After": "2"}), 503, 2.0)],
)
async def test_rate_limits_and_server_errors_are_retryable(
    pd: PagerDutyAPI, http_session: aiohttp.ClientSession,
    scripted: Scripted, status: int, retry_after: float | None,
) -> None:
    pd.script = [scripted]
    with pytest.raises(RetryableDeliveryError) as info:
        await pager(http_session, pd).send(sample_page())
    assert (info.value.status, info.value.retry_after) == (status, retry_after)
    assert pd.incidents == {}


async def test_the_fake_api_refuses_a_bad_event(
    pd: PagerDutyAPI, http_session: aiohttp.ClientSession
) -> None:
    bad = {"routing_key": "short", "event_action": "trigger", "dedup_key": "d" * 256,
           "payload": {"summary": "x" * 1025, "source": "", "severity": "fatal",
                       "timestamp": "yesterday", "colour": "red"},
           "links": [{"href": "ftp://x", "text": 3}]}
    async with http_session.post(f"{pd.url}/v2/enqueue", json=bad) as resp:
        assert resp.status == 400
        answer = await resp.json()
    assert answer == {"status": "invalid event", "message": "Event object is invalid", "errors": [
        "Length of 'routing_key' is incorrect (should be 32 characters)",
        "'dedup_key' is longer than 255 characters (256)",
        "unknown field 'payload.colour'",
        "'payload.summary' is longer than 1024 characters (1025)",
        "'payload.source' must not be empty",
        "'payload.severity' must be one of critical, error, warning, info",
        "'payload.timestamp' is not an ISO 8601 time with a zone",
        "'links[0].href' must be an http(s) URL",
        "'links[0].text' must be a string",
    ]}
    assert pd.incidents == {}


@pytest.mark.parametrize(
    ("event", "problems"),
    [
        ({"routing_key": KEY, "event_action": "resolve"}, ["'dedup_key' is missing"]),
        ({"routing_key": KEY, "event_action": "resolve", "dedup_key": "k",
          "payload": {}}, ["unknown field 'payload'"]),
        ({"routing_key": KEY, "event_action": "trigger"},
         ["'payload' is missing or not an object"]),
        ({"routing_key": KEY, "event_action": "trigger", "payload": {
            "summary": "s", "source": "x", "severity": "info", "custom_details": []}},
         ["'payload.custom_details' must be an object"]),
    ],
)
def test_the_fake_api_checks_each_rule(event: dict[str, object], problems: list[str]) -> None:
    assert pagerduty_problems(orjson.dumps(event)) == problems


def test_the_fake_api_refuses_an_event_over_512_kb() -> None:
    event = {"routing_key": KEY, "event_action": "trigger", "payload": {
        "summary": "s", "source": "x", "severity": "info", "custom_details": {"b": "x" * 530_000}}}
    body = orjson.dumps(event)
    assert pagerduty_problems(body) == [f"event is {len(body)} bytes, over 524288"]


def test_a_routing_key_of_the_wrong_length_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="must be 32 characters, got 31"):
        PagerDutyPager(None, KEY[:31])  # type: ignore[arg-type]
