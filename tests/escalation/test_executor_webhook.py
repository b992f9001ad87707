"""WebhookExecutor against a real aiohttp.web receiver on 127.0.0.1."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.executors.base import ActionRequest, ActionResult
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
        "params": {"replicas": 3, "reason": "z 12"},
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
