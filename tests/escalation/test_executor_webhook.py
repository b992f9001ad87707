"""WebhookExecutor against a real aiohttp.web receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError, SignatureError
from escalation.executors.base import ActionRequest, ActionResult
from escalation.executors.signing import sign, verify
from escalation.executors.webhook import WebhookExecutor

from .conftest import Receiver, Reply

REQ = ActionRequest(
    action="restart_pods", target="checkout-eu", service="checkout", finding_id="f1",
    idempotency_key="restart:f1", rule="restart", params={"replicas": 3, "reason": "z 12"},
)


async def test_payload_header_and_result(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    receiver.default = Reply(202, body=b'{"job": 7}')
    ticks = iter([10.0, 10.25])
    ex = WebhookExecutor(http_session, receiver.url, clock=lambda: next(ticks))
    result = await ex.execute(REQ)
    assert result == ActionResult(ok=True, status=202, detail='{"job": 7}', latency_s=0.25)
    [req] = receiver.received
    assert req.headers["Idempotency-Key"] == "restart:f1"
    assert req.headers["Content-Type"] == "application/json"
    assert req.json() == {
        "action": "restart_pods", "target": "checkout-eu", "service": "checkout",
        "finding_id": "f1", "idempotency_key": "restart:f1", "rule": "restart",
        "params": {"replicas": 3, "reason": "z 12"}, "context": {},
    }


@pytest.mark.parametrize(
    ("reply", "error"),
    [(Reply(503, {"Retry-After": "2"}), RetryableDeliveryError),
     (Reply(429), RetryableDeliveryError),
     (Reply(409, body=b"conflict"), PermanentDeliveryError)],
)
async def test_failures_raise_classified_errors(
    receiver: Receiver, http_session: aiohttp.ClientSession,
    reply: Reply, error: type[Exception],
) -> None:
    receiver.default = reply
    with pytest.raises(error) as info:
        await WebhookExecutor(http_session, receiver.url).execute(REQ)
    assert type(info.value) is error
    assert str(info.value) == f"HTTP {reply.status}: {reply.body.decode()}"


async def test_timeout_is_retryable(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    receiver.default = Reply(202, delay_s=0.3)
    with pytest.raises(RetryableDeliveryError, match=r"^timeout after 0.05 s$"):
        await WebhookExecutor(http_session, receiver.url, timeout_s=0.05).execute(REQ)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b'{"action": "x"}', "action request: missing field 'target'"),
     (b"[]", "action request: expected an object, got list"),
     (b"{", "action request: not JSON")],
)
def test_request_decoding_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ActionRequest.from_json(data)
    assert str(info.value).startswith(message)


def test_request_fields_are_type_checked() -> None:
    bad = REQ.to_dict() | {"params": [1]}
    with pytest.raises(ValueError, match=r"^action request: field 'params' must be an object$"):
        ActionRequest.from_json(orjson.dumps(bad))
    bad = REQ.to_dict() | {"target": 5}
    with pytest.raises(ValueError, match=r"^action request: field 'target' must be a string$"):
        ActionRequest.from_json(orjson.dumps(bad))


NOW = 1_764_132_000.0


class SigningReceiver:
    """A remediation API that accepts only bodies signed with one of ``secrets``."""

    def __init__(self, secrets: list[bytes], now: float = NOW) -> None:
        self.secrets = secrets
        self.now = now  # the receiver's wall clock, injected like the sender's
        self.accepted: list[bytes] = []
        self.refused: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secrets, request.headers.get("X-Hotpath-Signature", ""), body, self.now)
        except SignatureError as e:
            self.refused.append(str(e))
            return web.Response(status=401, text=str(e))
        self.accepted.append(body)
        return web.Response(status=202, text="accepted")


@pytest.fixture
async def signing_receiver() -> AsyncIterator[SigningReceiver]:
    rec = SigningReceiver([b"current", b"previous"])
    app = web.Application()
    app.router.add_post("/act", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/act"
    try:
        yield rec
    finally:
        await runner.cleanup()


async def test_signed_request_carries_signature_and_timestamp_headers(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    ticks = iter([5.0, 5.5])
    ex = WebhookExecutor(http_session, receiver.url, clock=lambda: next(ticks),
                         secret=b"current", wall_clock=lambda: NOW + 0.9)
    result = await ex.execute(REQ)
    assert result.latency_s == 0.5  # monotonic clock, not the wall clock
    [req] = receiver.received
    assert req.headers["X-Hotpath-Timestamp"] == "1764132000"
    assert req.headers["X-Hotpath-Signature"] == sign(b"current", 1764132000, req.body)
    assert req.headers["Idempotency-Key"] == "restart:f1"
    assert req.body == REQ.to_json()


async def test_unsigned_request_has_no_signature_headers(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    await WebhookExecutor(http_session, receiver.url).execute(REQ)
    [req] = receiver.received
    assert "X-Hotpath-Signature" not in req.headers
    assert "X-Hotpath-Timestamp" not in req.headers


@pytest.mark.parametrize("secret", [b"current", b"previous"])
async def test_verifying_receiver_accepts_either_rotation_secret(
    signing_receiver: SigningReceiver, http_session: aiohttp.ClientSession, secret: bytes
) -> None:
    ex = WebhookExecutor(http_session, signing_receiver.url, secret=secret,
                         wall_clock=lambda: NOW - 10)
    result = await ex.execute(REQ)
    assert (result.ok, result.status, result.detail) == (True, 202, "accepted")
    assert signing_receiver.accepted == [REQ.to_json()]


@pytest.mark.parametrize(
    ("secret", "wall", "message"),
    [(None, NOW, "signature: malformed header: '' is not key=value"),
     (b"forged", NOW, "signature: no v1 signature matches the body under any of 2 secret(s)"),
     (b"current", NOW - 301,
      "signature: timestamp 1764131699 is 301s old, beyond the 300s tolerance"),
     (b"current", NOW + 400,
      "signature: timestamp 1764132400 is 400s in the future, beyond the 300s tolerance")],
)
async def test_verifying_receiver_refuses_bad_signatures_with_401(
    signing_receiver: SigningReceiver, http_session: aiohttp.ClientSession,
    secret: bytes | None, wall: float, message: str,
) -> None:
    ex = WebhookExecutor(http_session, signing_receiver.url, secret=secret,
                         wall_clock=lambda: wall)
    with pytest.raises(PermanentDeliveryError) as info:
        await ex.execute(REQ)
    assert str(info.value) == f"HTTP 401: {message}"
    assert info.value.status == 401
    assert signing_receiver.refused == [message] and signing_receiver.accepted == []


async def test_signed_failures_are_classified_like_unsigned_ones(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    receiver.default = Reply(503, {"Retry-After": "3"}, body=b"busy")
    ex = WebhookExecutor(http_session, receiver.url, secret=b"k", wall_clock=lambda: NOW)
    with pytest.raises(RetryableDeliveryError) as info:
        await ex.execute(REQ)
    assert (str(info.value), info.value.retry_after) == ("HTTP 503: busy", 3.0)
    receiver.default = Reply(202, delay_s=0.3)
    slow = WebhookExecutor(http_session, receiver.url, timeout_s=0.05, secret=b"k",
                           wall_clock=lambda: NOW)
    with pytest.raises(RetryableDeliveryError, match=r"^timeout after 0.05 s$"):
        await slow.execute(REQ)


async def test_signed_connection_refused_is_retryable(
    http_session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    ex = WebhookExecutor(http_session, f"http://127.0.0.1:{unused_tcp_port}/act",
                         secret=b"k", wall_clock=lambda: NOW)
    with pytest.raises(RetryableDeliveryError, match=r"^connection error: ClientConnector"):
        await ex.execute(REQ)


async def test_an_empty_secret_is_refused(http_session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match=r"^webhook executor: an empty secret signs nothing"):
        WebhookExecutor(http_session, "http://127.0.0.1:9/act", secret=b"")
