"""OpsgeniePager against a local Alert API that checks every documented rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.page import Severity
from escalation.pagers.opsgenie import OpsgeniePager, opsgenie_alert

from .pager_apis import (
    OpsgenieAPI,
    Scripted,
    opsgenie_alert_problems,
    oversized_context,
    sample_page,
    serve,
)

API_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"
RESPONDERS = ({"type": "team", "name": "payments"},)


@pytest.fixture
async def og() -> AsyncIterator[OpsgenieAPI]:
    api = OpsgenieAPI(API_KEY)
    async with serve(api):
        yield api


def pager(session: aiohttp.ClientSession, api: OpsgenieAPI, key: str = API_KEY) -> OpsgeniePager:
    return OpsgeniePager(session, key, api_url=api.url, responders=RESPONDERS)


async def test_an_alert_passes_every_check_and_carries_the_context(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession
) -> None:
    page = sample_page()
    await pager(http_session, og).send(page)
    [call] = og.calls
    assert call.problems == []
    assert call.path == "/v2/alerts"
    assert call.headers["Authorization"] == f"GenieKey {API_KEY}"
    assert call.json() == {
        "message": "checkout error_ratio{region=eu-west-1} 0.21 vs baseline 0.004 (dev 12.3) "
                   "— budget exhausted",
        "alias": "hotpath-f1",
        "description": "\n".join([
            page.summary, "",
            "value 0.21 vs baseline 0.004 (deviation 12.3), confidence 0.97, "
            "detectors: ewma, mad",
            "why a human: rule matched; budget exhausted",
            "approve: http://console.local/approve/t1",
            "deny: http://console.local/deny/t1",
            "what: checkout error_ratio eu-west-1",
            "since: 2025-11-26T04:39:00Z",
            "sparkline: ▁▁▂▇█",
            "chart_url: http://console.local/chart/f1",
            "sparkline_url: http://console.local/spark/f1.png",
            'changes: [{"kind":"deploy","version":"v1.4.2"}]',
            "owner: payments",
        ]),
        "responders": [{"type": "team", "name": "payments"}],
        "tags": ["hotpath", "critical", "service:checkout", "metric:error_ratio",
                 "region:eu-west-1"],
        "details": {
            "value": "0.21", "baseline": "0.004", "deviation": "12.3", "confidence": "0.97",
            "detectors": '["ewma","mad"]', "reasons": '["rule matched","budget exhausted"]',
            "action": "null", "what": "checkout error_ratio eu-west-1",
            "since": "2025-11-26T04:39:00Z", "sparkline": "▁▁▂▇█",
            "chart_url": "http://console.local/chart/f1",
            "sparkline_url": "http://console.local/spark/f1.png",
            "changes": '[{"kind":"deploy","version":"v1.4.2"}]', "owner": "payments",
        },
        "entity": "checkout", "source": "hotpath", "priority": "P1",
    }
    assert og.alerts == {"hotpath-f1": "open"}


@pytest.mark.parametrize(("severity", "priority"),
                         [("critical", "P1"), ("error", "P2"), ("warning", "P3"), ("info", "P5")])
def test_severity_maps_to_priority(severity: Severity, priority: str) -> None:
    alert = opsgenie_alert(sample_page(severity=severity))
    assert alert["priority"] == priority
    assert opsgenie_alert_problems(alert) == {}


@pytest.mark.parametrize(("event", "verb", "state"),
                         [("acknowledge", "acknowledge", "acknowledged"),
                          ("resolve", "close", "closed")])
async def test_acknowledge_and_resolve_go_to_the_alias_endpoints(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession, event: str, verb: str, state: str
) -> None:
    incident = "inc:checkout/eu-west-1"  # a "/" in the alias must not split the path
    await pager(http_session, og).send(sample_page(incident_key=incident))
    await pager(http_session, og).send(sample_page(incident_key=incident, event=event))
    assert [c.problems for c in og.calls] == [[], []]
    follow = og.calls[1]
    assert follow.path == f"/v2/alerts/inc:checkout%2Feu-west-1/{verb}?identifierType=alias"
    assert follow.json() == {"source": "hotpath", "note": sample_page().summary}
    assert follow.headers["Idempotency-Key"] == f"{incident}:{event}"
    assert og.alerts == {incident: state}


async def test_an_oversized_page_is_cut_to_fit_and_accepted(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession
) -> None:
    summary = "checkout is failing " * 250  # 5000 chars
    page = sample_page(summary=summary, context=oversized_context(),
                       labels={f"label{i}": "v" * 80 for i in range(30)})
    await pager(http_session, og).send(page)
    [call] = og.calls
    assert call.problems == []
    alert = call.json()
    assert alert["message"] == summary[:129] + "…"
    assert len(alert["description"]) == 15_000 and alert["description"].endswith("…")
    assert alert["description"].startswith(summary)
    assert len(alert["tags"]) == 20 and all(len(t) <= 50 for t in alert["tags"])
    assert alert["tags"][4] == "label0:" + "v" * 42 + "…"
    details: dict[str, str] = alert["details"]
    assert 7_000 < sum(len(k) + len(v) for k, v in details.items()) <= 8_000
    assert details["what"] == "checkout error_ratio eu-west-1" and details["value"] == "0.21"
    assert details["runbook"].endswith("…")
    assert orjson.loads(details["changes"])[-1].endswith(" more")  # still valid JSON


async def test_a_wrong_api_key_is_a_permanent_401(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession
) -> None:
    with pytest.raises(PermanentDeliveryError) as info:
        await pager(http_session, og, key="not-the-key").send(sample_page())
    assert str(info.value) == ('HTTP 401: {"message":"Could not authenticate","took":0.001,'
                               '"requestId":"req-1"}')
    assert og.alerts == {}


async def test_400_is_permanent_with_the_servers_message(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession
) -> None:
    body = b'{"message":"Request body is not processable.","took":0.0,"requestId":"r"}'
    og.script = [Scripted(422, body=body)]
    with pytest.raises(PermanentDeliveryError) as info:
        await pager(http_session, og).send(sample_page())
    assert str(info.value) == f"HTTP 422: {body.decode()}"
    assert info.value.status == 422


@pytest.mark.parametrize(
    ("scripted", "status", "retry_after"),
    [(Scripted(429, {"Retry-After": "12"}), 429, 12.0), (Scripted(500), 500, None),
     (Scripted(502), 502, None)],
)
async def test_rate_limits_and_server_errors_are_retryable_then_delivered(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession,
    scripted: Scripted, status: int, retry_after: float | None,
) -> None:
    og.script = [scripted]
    with pytest.raises(RetryableDeliveryError) as info:
        await pager(http_session, og).send(sample_page())
    assert (info.value.status, info.value.retry_after) == (status, retry_after)
    assert og.alerts == {}
    await pager(http_session, og).send(sample_page())
    assert og.alerts == {"hotpath-f1": "open"}


async def test_the_fake_api_refuses_a_bad_alert(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession
) -> None:
    bad: dict[str, Any] = {
        "message": "m" * 131, "alias": "a" * 513, "priority": "P0", "tags": ["t" * 51],
        "actions": [str(i) for i in range(11)], "details": {"k": "v" * 8000},
        "responders": [{"type": "squad", "name": "x"}], "source": "s" * 101, "colour": "red",
    }
    async with http_session.post(f"{og.url}/v2/alerts", json=bad,
                                 headers={"Authorization": f"GenieKey {API_KEY}"}) as resp:
        assert resp.status == 422
        answer = await resp.json()
    assert answer["message"] == "Request body is not processable. Please check the errors."
    assert answer["errors"] == {
        "colour": "unknown field 'colour'",
        "message": "'message' is longer than 130 characters (131)",
        "alias": "'alias' is longer than 512 characters (513)",
        "source": "'source' is longer than 100 characters (101)",
        "responders[0].type": "'responders[0].type' must be one of team, user, escalation, "
                              "schedule",
        "actions": "'actions' must be a list of at most 10",
        "tags": "'tags' items must be strings of at most 50 characters",
        "details": "'details' hold 8001 characters, over 8000",
        "priority": "'priority' must be one of P1, P2, P3, P4, P5",
    }
    assert og.alerts == {}


@pytest.mark.parametrize(
    ("alert", "errors"),
    [
        ({}, {"message": "'message' is missing"}),
        ({"message": ""}, {"message": "'message' must not be empty"}),
        ({"message": "m", "details": {"n": 1}}, {"details": "'details' must map strings to "
                                                            "strings"}),
        ({"message": "m", "visibleTo": [{"type": "team"}]},
         {"visibleTo[0]": "'visibleTo[0]' needs an id, name or username"}),
    ],
)
def test_the_fake_api_checks_each_rule(alert: dict[str, Any], errors: dict[str, str]) -> None:
    assert opsgenie_alert_problems(alert) == errors


async def test_the_fake_api_refuses_a_bad_close(
    og: OpsgenieAPI, http_session: aiohttp.ClientSession
) -> None:
    async with http_session.post(
        f"{og.url}/v2/alerts/a1/close?identifierType=name", json={"note": "n" * 25_001},
        headers={"Authorization": f"GenieKey {API_KEY}"},
    ) as resp:
        assert resp.status == 422
        answer = await resp.json()
    assert answer["errors"] == {
        "note": "'note' is longer than 25000 characters (25001)",
        "identifierType": "'identifierType' must be one of id, tiny, alias",
    }


def test_an_empty_api_key_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match=r"^Opsgenie API key is empty$"):
        OpsgeniePager(None, "")  # type: ignore[arg-type]
