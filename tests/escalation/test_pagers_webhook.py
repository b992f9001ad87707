"""WebhookPager against a real aiohttp.web receiver on 127.0.0.1."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.page import Page
from escalation.pagers.webhook import WebhookPager

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
        "event": "trigger", "incident_key": "", "context": {},
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
