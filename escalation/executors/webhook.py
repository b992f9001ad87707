"""A generic JSON webhook executor: POST the action request, keyed by its idempotency key,
and — given a secret — signed so the receiver can tell it came from us (see ``signing``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import aiohttp

from escalation.errors import RetryableDeliveryError
from escalation.executors.base import ActionRequest, ActionResult
from escalation.executors.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from escalation.http_delivery import JsonEndpoint, classify

# As http_delivery: enough of an error body to say why, short enough for a log line.
_DETAIL_BYTES = 200


class WebhookExecutor:
    """POSTs :meth:`ActionRequest.to_dict` (``action``, ``target``, ``service``,
    ``finding_id``, ``idempotency_key``, ``rule``, ``params``, ``context``) with header
    ``Idempotency-Key: <idempotency_key>``; a 2xx is an ``ok`` result, anything else raises
    (see :class:`~escalation.executors.base.Executor`).

    With ``secret`` it also sends ``X-Hotpath-Signature: t=<ts>,v1=<hmac>`` and
    ``X-Hotpath-Timestamp: <ts>``, ``ts`` read from ``wall_clock`` (Unix seconds: the
    receiver compares it with its own clock); latency is measured on ``clock`` (monotonic).

    >>> import asyncio
    >>> async def name() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return WebhookExecutor(s, "http://127.0.0.1:9/act").name
    >>> asyncio.run(name())
    'webhook'
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        timeout_s: float = 5.0,  # a remediation hook should only enqueue the work and answer
        clock: Callable[[], float] = time.monotonic,
        name: str = "webhook",
        *,
        secret: bytes | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("webhook executor: an empty secret signs nothing; pass None")
        self._endpoint = JsonEndpoint(session, url, timeout_s)
        self._clock = clock
        self._name = name
        self._secret = secret
        self._wall_clock = wall_clock

    @property
    def name(self) -> str:
        return self._name

    async def execute(self, req: ActionRequest) -> ActionResult:
        t0 = self._clock()
        body = req.to_json()
        if self._secret is None:
            status, detail = await self._endpoint.post(body, req.idempotency_key)
        else:
            ts = int(self._wall_clock())
            status, detail = await self._post(body, req.idempotency_key, {
                SIGNATURE_HEADER: sign(self._secret, ts, body),
                TIMESTAMP_HEADER: str(ts),
            })
        return ActionResult(True, status, detail, self._clock() - t0)

    async def _post(
        self, body: bytes, idempotency_key: str, extra: Mapping[str, str]
    ) -> tuple[int, str]:
        # http_delivery.post_json plus the signature headers; post_json takes no extra
        # headers yet — when it does, this becomes one JsonEndpoint.post call.
        ep = self._endpoint
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key,
                   **extra}
        try:
            async with ep.session.post(
                ep.url, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=ep.timeout_s),
            ) as resp:
                text = (await resp.content.read(_DETAIL_BYTES)).decode("utf-8", "replace")
                error = classify(resp.status, resp.headers.get("Retry-After"), text)
                if error is not None:
                    raise error
                return resp.status, text
        except TimeoutError:
            raise RetryableDeliveryError(f"timeout after {ep.timeout_s} s") from None
        except aiohttp.ClientError as e:
            raise RetryableDeliveryError(f"connection error: {type(e).__name__}: {e}") from None
