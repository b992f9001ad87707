"""POST a JSON body and classify the answer as delivered, retryable or permanent.

Shared by the webhook pager and the webhook executor: the adapter says whether a failure is
retryable (Alertmanager's notifier contract); it never retries itself.

* 2xx → delivered (returns the status and the start of the body);
* 429, 408, 5xx, timeouts, connection errors → :class:`RetryableDeliveryError`
  (with ``retry_after`` from a ``Retry-After: <seconds>`` header);
* any other status → :class:`PermanentDeliveryError`.

>>> classify(503, "2").retry_after
2.0
>>> type(classify(400, None)).__name__
'PermanentDeliveryError'
>>> classify(202, None) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from escalation.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError

# Enough of an error body to say why in the dead letter, short enough for a log line.
_DETAIL_BYTES = 200

# 408 Request Timeout is the receiver saying "too slow this time": same as our own timeout.
_RETRYABLE_4XX = frozenset({408, 429})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header; HTTP-date form and garbage give None.

    >>> parse_retry_after("1"), parse_retry_after("2.5"), parse_retry_after("Wed, 21 Oct")
    (1.0, 2.5, None)
    >>> parse_retry_after("-3") is None
    True
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def classify(status: int, retry_after: str | None, detail: str = "") -> DeliveryError | None:
    """None for 2xx, else the error to raise for this status."""
    if 200 <= status < 300:
        return None
    message = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in _RETRYABLE_4XX or status >= 500:
        return RetryableDeliveryError(
            message, status=status, retry_after=parse_retry_after(retry_after)
        )
    return PermanentDeliveryError(message, status=status)


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    idempotency_key: str,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """POST ``body`` with an ``Idempotency-Key`` header; (status, detail) on 2xx, else raise.

    ``headers`` adds to (or overrides) the defaults, e.g. an API's ``Authorization``.
    """
    sent = {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key,
        **(headers or {}),
    }
    try:
        async with session.post(
            url, data=body, headers=sent, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            text = (await resp.content.read(_DETAIL_BYTES)).decode("utf-8", "replace")
            error = classify(resp.status, resp.headers.get("Retry-After"), text)
            if error is not None:
                raise error
            return resp.status, text
    except TimeoutError:
        raise RetryableDeliveryError(f"timeout after {timeout_s} s") from None
    except aiohttp.ClientError as e:
        raise RetryableDeliveryError(f"connection error: {type(e).__name__}: {e}") from None


@dataclass(frozen=True)
class JsonEndpoint:
    """One webhook URL, the session that reaches it and how long a POST may take.

    What a JSON webhook adapter holds; :meth:`post` is :func:`post_json` to that URL.

    >>> import asyncio
    >>> async def url() -> str:
    ...     async with aiohttp.ClientSession() as s:
    ...         return JsonEndpoint(s, "http://127.0.0.1:9/hook", 5.0).url
    >>> asyncio.run(url())
    'http://127.0.0.1:9/hook'
    """

    session: aiohttp.ClientSession
    url: str
    timeout_s: float

    async def post(
        self, body: bytes, idempotency_key: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        """POST ``body`` keyed by ``idempotency_key``; (status, detail) on 2xx, else raise."""
        return await post_json(
            self.session, self.url, body, idempotency_key=idempotency_key,
            timeout_s=self.timeout_s, headers=headers,
        )
