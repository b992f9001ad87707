"""WebhookPager against a real aiohttp.web receiver on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import orjson
import pytest

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.executors.signing import sign
from escalation.page import Page
from escalation.pagers.webhook import WebhookPager

from .chat_apis import PAGE as FULL_PAGE
from .chat_apis import Refusal, SignedHookApi, serve
from .conftest import Receiver, Reply

PAGE = Page(
    dedup_key="hotpath-f1", summary="checkout error_ratio 0.21 vs baseline 0.004 (dev 12.3)"
    " — budget exhausted", severity="critical", service="checkout", metric="error_ratio",
    labels={"region": "eu"}, value=0.21, baseline=0.004, deviation=12.3, confidence=0.97,
    detectors=("ewma",), reasons=("rule matched", "budget exhausted"), recent=(0.003, 0.21),
    finding_id="f1", ts=1000.0, created=1001.0, action=None,
)


async def test_payload_and_headers_are_exact(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    await WebhookPager(http_session, receiver.url).send(PAGE)
    [req] = receiver.received
    assert req.method == "POST"
    assert req.headers["Idempotency-Key"] == "hotpath-f1"
    assert req.headers["Content-Type"] == "application/json"
    assert req.json() == {
        "dedup_key": "hotpath-f1",
        "summary": "checkout error_ratio 0.21 vs baseline 0.004 (dev 12.3) — budget exhausted",
        "severity": "critical", "service": "checkout", "metric": "error_ratio",
        "labels": {"region": "eu"}, "value": 0.21, "baseline": 0.004, "deviation": 12.3,
        "confidence": 0.97, "detectors": ["ewma"],
        "reasons": ["rule matched", "budget exhausted"], "recent": [0.003, 0.21],
        "finding_id": "f1", "ts": 1000.0, "created": 1001.0, "action": None, "links": {},
        "event": "trigger", "incident_key": "", "context": {}, "receivers": [],
    }


@pytest.mark.parametrize(
    ("reply", "error", "status", "retry_after"),
    [
        (Reply(500, body=b"boom"), RetryableDeliveryError, 500, None),
        (Reply(503, {"Retry-After": "7"}), RetryableDeliveryError, 503, 7.0),
        (Reply(429, {"Retry-After": "1"}), RetryableDeliveryError, 429, 1.0),
        (Reply(408), RetryableDeliveryError, 408, None),
        (Reply(400, body=b"bad severity"), PermanentDeliveryError, 400, None),
        (Reply(404), PermanentDeliveryError, 404, None),
    ],
)
async def test_status_classification(
    receiver: Receiver, http_session: aiohttp.ClientSession,
    reply: Reply, error: type[Exception], status: int, retry_after: float | None,
) -> None:
    receiver.default = reply
    with pytest.raises(error) as info:
        await WebhookPager(http_session, receiver.url).send(PAGE)
    assert type(info.value) is error
    assert info.value.status == status  # type: ignore[attr-defined]
    assert info.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert str(info.value) == f"HTTP {status}" + (f": {reply.body.decode()}" if reply.body else "")


async def test_a_slow_receiver_is_a_retryable_timeout(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    receiver.default = Reply(202, delay_s=0.5)
    with pytest.raises(RetryableDeliveryError) as info:
        await WebhookPager(http_session, receiver.url, timeout_s=0.1).send(PAGE)
    assert str(info.value) == "timeout after 0.1 s"
    assert info.value.status is None


async def test_a_refused_connection_is_retryable(http_session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:  # bind then close: a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pager = WebhookPager(http_session, f"http://127.0.0.1:{port}/hook")
    with pytest.raises(RetryableDeliveryError) as info:
        await pager.send(PAGE)
    assert str(info.value).startswith("connection error: ClientConnectorError")


SENT_AT = 1764132000.0  # the sender's wall clock
SECRET = b"whsec_4f1c2e"


@pytest.fixture
async def signed_hook() -> AsyncIterator[SignedHookApi]:
    # The receiver's own clock runs 10 s ahead of the sender's: inside the 300 s tolerance.
    async with serve(SignedHookApi(secrets=(SECRET,), clock=lambda: SENT_AT + 10)) as api:
        yield api


async def test_a_signed_page_carries_the_exact_signature_headers(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    await WebhookPager(http_session, receiver.url, secret=SECRET,
                       wall_clock=lambda: SENT_AT + 0.9).send(PAGE)
    [req] = receiver.received
    assert req.body == PAGE.to_json()
    assert req.headers["X-Hotpath-Timestamp"] == "1764132000"
    assert req.headers["X-Hotpath-Signature"] == sign(SECRET, 1764132000, PAGE.to_json())
    assert req.headers["Idempotency-Key"] == "hotpath-f1"


async def test_unsigned_pages_carry_no_signature(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    await WebhookPager(http_session, receiver.url).send(PAGE)
    [req] = receiver.received
    assert "X-Hotpath-Signature" not in req.headers
    assert "X-Hotpath-Timestamp" not in req.headers


async def test_a_verifying_receiver_accepts_a_signed_page(
    signed_hook: SignedHookApi, http_session: aiohttp.ClientSession
) -> None:
    page = replace(FULL_PAGE, links={"approve": "https://hotpath.example/approve?t=x"})
    await WebhookPager(http_session, signed_hook.url, secret=SECRET,
                       wall_clock=lambda: SENT_AT).send(page)
    assert signed_hook.accepted == [orjson.loads(page.to_json())]
    assert signed_hook.refused == []


async def test_an_oversized_page_goes_whole_and_its_signature_verifies(
    signed_hook: SignedHookApi, http_session: aiohttp.ClientSession
) -> None:
    # The generic webhook's contract is the whole page: nothing is cut, and the HMAC covers
    # every byte of a 2 MB body.
    page = replace(FULL_PAGE, summary="x" * 5000,
                   context={**FULL_PAGE.context, "dump": "y" * 2_000_000})
    await WebhookPager(http_session, signed_hook.url, secret=SECRET,
                       wall_clock=lambda: SENT_AT).send(page)
    [body] = signed_hook.accepted
    assert body["summary"] == "x" * 5000 and body["context"]["dump"] == "y" * 2_000_000


async def test_a_receiver_mid_rotation_accepts_the_new_secret(
    http_session: aiohttp.ClientSession
) -> None:
    api = SignedHookApi(secrets=(b"old", SECRET), clock=lambda: SENT_AT)
    async with serve(api):
        await WebhookPager(http_session, api.url, secret=SECRET,
                           wall_clock=lambda: SENT_AT).send(PAGE)
    assert api.accepted == [orjson.loads(PAGE.to_json())]


@pytest.mark.parametrize(("secret", "sent_at", "detail"), [
    (b"not-the-secret", SENT_AT,
     "signature: no v1 signature matches the body under any of 1 secret(s)"),
    (SECRET, SENT_AT - 400, "signature: timestamp 1764131600 is 410s old, beyond the 300s "
     "tolerance"),
    (None, SENT_AT, "no X-Hotpath-Signature header"),
])
async def test_a_verifying_receiver_rejects_what_it_cannot_trust(
    signed_hook: SignedHookApi, http_session: aiohttp.ClientSession,
    secret: bytes | None, sent_at: float, detail: str,
) -> None:
    pager = WebhookPager(http_session, signed_hook.url, secret=secret,
                         wall_clock=lambda: sent_at)
    with pytest.raises(PermanentDeliveryError) as info:
        await pager.send(PAGE)
    assert str(info.value) == f"HTTP 401: {detail}"
    assert signed_hook.refused == [Refusal(401, "unauthorized", detail)]
    assert signed_hook.accepted == []


def test_an_empty_secret_is_refused(http_session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="an empty secret signs nothing; pass None"):
        WebhookPager(http_session, "http://127.0.0.1:9/hook", secret=b"")
