"""The stand-in receivers, over real HTTP on loopback; the action receiver is also fed by
the real signing webhook executor, so it checks what the executors send."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from escalation.errors import PermanentDeliveryError
from escalation.executors.base import ActionRequest
from escalation.executors.signing import SIGNATURE_HEADER, sign
from escalation.executors.webhook import WebhookExecutor
from hotpath.demo.receivers import ActionReceiver, PageReceiver

ACTION: dict[str, Any] = {
    "action": "scale_out",
    "target": "payments",
    "service": "payments",
    "finding_id": "f-123",
    "idempotency_key": "scale-payments:f-123",
    "rule": "scale-payments",
    "params": {"replicas": 2},
    "context": {},
}

SECRET = b"demo-webhook-secret-for-this-test"

PAGE: dict[str, Any] = {
    "dedup_key": "hotpath-f-9", "summary": "search error_ratio 0.2 vs baseline 0.002",
    "severity": "critical", "service": "search", "metric": "error_ratio",
    "labels": {"region": "us-east-1"}, "value": 0.2, "baseline": 0.002, "deviation": 41.5,
    "confidence": 1.0, "detectors": ["ewma"], "reasons": ["no remediation rule"],
    "recent": [0.002, 0.0021, 0.2], "finding_id": "f-9", "ts": 1764132012.0,
    "created": 1764132012.1, "action": None, "links": {},
}


MISSING = object()  # in a page change: leave the field out


async def post(url: str, body: object, key: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with aiohttp.ClientSession() as session, session.post(
        url, data=orjson.dumps(body), headers=headers
    ) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_action_accepted_then_duplicate_runs_once() -> None:
    calls: list[dict[str, Any]] = []
    async with ActionReceiver(calls.append) as receiver:
        assert receiver.url == f"http://127.0.0.1:{receiver.port}/actions"
        key = ACTION["idempotency_key"]
        first = await post(receiver.url, ACTION, key)
        again = await post(receiver.url, ACTION, key)
    assert first == (202, {"status": "accepted", "idempotency_key": key})
    assert again == (200, {"status": "duplicate", "idempotency_key": key})
    assert calls == [ACTION]
    assert receiver.executed == {key: 1}
    assert [(r.status, r.outcome) for r in receiver.received] == [
        (202, "accepted"), (200, "duplicate")]
    assert receiver.accepted == [ACTION]


async def test_concurrent_retries_of_one_key_run_once() -> None:
    calls: list[dict[str, Any]] = []
    async with ActionReceiver(calls.append) as receiver:
        key = ACTION["idempotency_key"]
        answers = await asyncio.gather(*(post(receiver.url, ACTION, key) for _ in range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [202]
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("body", "key", "error"),
    [
        ({k: v for k, v in ACTION.items() if k != "rule"}, "scale-payments:f-123",
         {"error": "missing field", "field": "rule"}),
        ({**ACTION, "service": 3}, "scale-payments:f-123",
         {"error": "wrong type: expected string", "field": "service"}),
        ({**ACTION, "params": "x"}, "scale-payments:f-123",
         {"error": "wrong type: expected object", "field": "params"}),
        ({k: v for k, v in ACTION.items() if k != "context"}, "scale-payments:f-123",
         {"error": "missing field", "field": "context"}),
        (ACTION, None, {"error": "missing header", "field": "Idempotency-Key"}),
        (ACTION, "other-key",
         {"error": "Idempotency-Key header does not match the body",
          "field": "idempotency_key"}),
        ([ACTION], "k", {"error": "body is not a JSON object", "field": None}),
    ],
)
async def test_bad_action_is_400_and_not_run(body: object, key: str | None,
                                             error: dict[str, Any]) -> None:
    calls: list[dict[str, Any]] = []
    async with ActionReceiver(calls.append) as receiver:
        answer = await post(receiver.url, body, key)
    assert answer == (400, error)
    assert calls == []
    assert receiver.executed == {}
    assert [(r.status, r.outcome) for r in receiver.received] == [(400, error["error"])]


async def test_action_body_that_is_not_json() -> None:
    async with ActionReceiver() as receiver, aiohttp.ClientSession() as session, session.post(
        receiver.url, data=b"{not json", headers={"Idempotency-Key": "k"}
    ) as resp:
        assert resp.status == 400
        assert await resp.json() == {"error": "body is not a JSON object", "field": None}


async def test_pages_kept_deduplicated_and_written(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    second = {**PAGE, "dedup_key": "hotpath-f-10", "finding_id": "f-10", "baseline": None}
    async with PageReceiver(path) as receiver:
        assert receiver.url == f"http://127.0.0.1:{receiver.port}/pages"
        answers = [
            await post(receiver.url, PAGE, PAGE["dedup_key"]),
            await post(receiver.url, PAGE),  # the header is optional for pages
            await post(receiver.url, second, second["dedup_key"]),
        ]
    assert answers == [
        (202, {"status": "accepted", "dedup_key": "hotpath-f-9"}),
        (202, {"status": "duplicate", "dedup_key": "hotpath-f-9"}),
        (202, {"status": "accepted", "dedup_key": "hotpath-f-10"}),
    ]
    assert receiver.pages == [PAGE, PAGE, second]
    assert receiver.unique_pages == [PAGE, second]
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [PAGE, PAGE, second]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"summary": MISSING}, {"error": "missing field", "field": "summary"}),
        ({"severity": "sev1"},
         {"error": "wrong value: expected critical, error, warning or info",
          "field": "severity"}),
        ({"labels": {"region": 1}},
         {"error": "wrong type: expected object of strings", "field": "labels"}),
        ({"value": "0.2"}, {"error": "wrong type: expected number or null", "field": "value"}),
        ({"confidence": None}, {"error": "wrong type: expected number", "field": "confidence"}),
        ({"confidence": True}, {"error": "wrong type: expected number", "field": "confidence"}),
        ({"reasons": "no rule"},
         {"error": "wrong type: expected array of strings", "field": "reasons"}),
        ({"recent": [1, "2"]},
         {"error": "wrong type: expected array of numbers", "field": "recent"}),
        ({"action": 5}, {"error": "wrong type: expected string or null", "field": "action"}),
        ({"links": {"approve": 5}},
         {"error": "wrong type: expected object of strings", "field": "links"}),
        ({"links": MISSING}, {"error": "missing field", "field": "links"}),
    ],
)
async def test_bad_page_is_400_and_not_kept(tmp_path: Path, change: dict[str, Any],
                                            error: dict[str, Any]) -> None:
    body = {k: v for k, v in {**PAGE, **change}.items() if v is not MISSING}
    path = tmp_path / "pages.jsonl"
    async with PageReceiver(path) as receiver:
        answer = await post(receiver.url, body)
    assert answer == (400, error)
    assert receiver.pages == []
    assert not path.exists()


async def test_page_header_must_match_dedup_key() -> None:
    async with PageReceiver() as receiver:
        answer = await post(receiver.url, PAGE, "hotpath-other")
    assert answer == (400, {"error": "Idempotency-Key header does not match the body",
                            "field": "dedup_key"})


async def test_receivers_release_their_port() -> None:
    receiver = ActionReceiver()
    async with receiver:
        url = receiver.url
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(url, json=ACTION)


def _request() -> ActionRequest:
    body = {k: v for k, v in ACTION.items() if k != "context"}
    return ActionRequest(**body, context={"request": {"request_id": "req_1"}})


async def test_signed_action_from_the_webhook_executor_is_accepted() -> None:
    calls: list[dict[str, Any]] = []
    async with ActionReceiver(calls.append, secret=SECRET) as receiver, \
            aiohttp.ClientSession() as session:
        result = await WebhookExecutor(session, receiver.url, secret=SECRET).execute(_request())
    assert (result.ok, result.status) == (True, 202)
    assert calls == [_request().to_dict()]
    assert receiver.problems == []


async def test_action_signed_with_another_secret_is_401_recorded_and_not_run() -> None:
    calls: list[dict[str, Any]] = []
    async with ActionReceiver(calls.append, secret=SECRET) as receiver, \
            aiohttp.ClientSession() as session:
        executor = WebhookExecutor(session, receiver.url, secret=b"not-the-receivers-secret")
        with pytest.raises(PermanentDeliveryError) as err:
            await executor.execute(_request())
    assert err.value.status == 401
    detail = "signature: no v1 signature matches the body under any of 1 secret(s)"
    assert orjson.loads(str(err.value).removeprefix("HTTP 401: ")) == {
        "error": "bad signature", "field": SIGNATURE_HEADER, "detail": detail}
    assert calls == []
    assert receiver.executed == {}
    (problem,) = receiver.problems
    assert (problem.status, problem.outcome, problem.idempotency_key) == (
        401, f"bad signature: {detail}", ACTION["idempotency_key"])


async def test_unsigned_action_is_401_when_a_secret_is_set() -> None:
    async with ActionReceiver(secret=SECRET) as receiver:
        answer = await post(receiver.url, ACTION, ACTION["idempotency_key"])
    assert answer == (401, {"error": "missing header", "field": SIGNATURE_HEADER})
    assert [(r.status, r.outcome) for r in receiver.problems] == [(401, "missing header")]


async def test_signature_older_than_the_tolerance_is_401() -> None:
    signed_at = 1_764_132_000
    body = orjson.dumps(ACTION)
    headers = {"Content-Type": "application/json",
               "Idempotency-Key": ACTION["idempotency_key"],
               SIGNATURE_HEADER: sign(SECRET, signed_at, body)}
    # The receiver's clock is ten minutes on: a captured request replayed that late.
    async with ActionReceiver(secret=SECRET, wall_clock=lambda: signed_at + 600.0) as receiver, \
            aiohttp.ClientSession() as session, \
            session.post(receiver.url, data=body, headers=headers) as resp:
        assert resp.status == 401
        assert await resp.json() == {
            "error": "bad signature", "field": SIGNATURE_HEADER,
            "detail": f"signature: timestamp {signed_at} is 600s old, beyond the 300s tolerance"}
    assert receiver.executed == {}


async def test_bad_signature_is_checked_before_the_body() -> None:
    # An unsigned stranger learns nothing about which fields the receiver wants.
    async with ActionReceiver(secret=SECRET) as receiver:
        answer = await post(receiver.url, {"action": "x"}, "k")
    assert answer == (401, {"error": "missing header", "field": SIGNATURE_HEADER})


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError) as err:
        ActionReceiver(secret=b"")
    assert str(err.value) == "action receiver: an empty secret verifies nothing; pass None"


async def test_on_page_runs_once_per_dedup_key() -> None:
    seen: list[dict[str, Any]] = []
    links = {"approve": "http://127.0.0.1:1/v1/approvals/apr_1/approve?token=t",
             "deny": "http://127.0.0.1:1/v1/approvals/apr_1/deny?token=u"}
    asking = {**PAGE, "dedup_key": "hotpath-f-11", "finding_id": "f-11", "links": links}
    async with PageReceiver(on_page=seen.append) as receiver:
        for body in (PAGE, PAGE, asking, asking):
            status, _ = await post(receiver.url, body)
            assert status == 202
    assert seen == [PAGE, asking]
    assert len(receiver.pages) == 4

