"""Producing wire-format telemetry into a real broker, for the integration tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer


def _noise(rng: np.random.Generator) -> float:
    # Clipped at 2 sigma, as the demo fleet does: unclipped gaussian noise crosses the
    # detectors' threshold about once per 9,000 points, and these tests count exact pages.
    return float(np.clip(rng.standard_normal(), -2.0, 2.0))


def batch_msg(service: str, ts: float, metrics: dict[str, float],
              labels: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    body = {"service": service, "ts": ts, "labels": labels or {"region": "eu-west-1"},
            "metrics": metrics}
    return service.encode(), orjson.dumps(body)


def steady(service: str, metrics: dict[str, float], start: float, n: int, step: float,
           rng: np.random.Generator, noise: float = 0.02) -> list[tuple[bytes, bytes]]:
    """n batch messages of noisy-but-stable metrics, one every ``step`` seconds."""
    out = []
    for i in range(n):
        vals = {m: v * (1 + noise * _noise(rng)) for m, v in metrics.items()}
        out.append(batch_msg(service, start + i * step, vals))
    return out


async def produce(bootstrap: str, topic: str, msgs: Iterable[tuple[bytes | None, bytes]],
                  headers: Sequence[tuple[str, bytes]] = ()) -> None:
    # max_request_size: the bad-input tests send a message over 1 MiB on purpose.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                                max_request_size=4 << 20)
    await producer.start()
    try:
        futs = [await producer.send(topic, value=v, key=k, headers=list(headers) or None)
                for k, v in msgs]
        for f in futs:
            await f
    finally:
        await producer.stop()


# The three services of the example config: checkout and payments have remediation rules,
# search has none.
BASELINES: dict[str, dict[str, float]] = {
    "checkout": {"http_latency_p99_ms": 200.0, "error_ratio": 0.004},
    "search": {"error_ratio": 0.002, "http_latency_p99_ms": 80.0},
    "payments": {"queue_depth": 50.0, "http_latency_p99_ms": 120.0},
}
WARMUP = 60          # points per series before the first incident (detector warm-up is 30)
PAYMENT_SPIKES = (0, 20, 40, 60)  # starts of the repeated payments incident, after warm-up


def incident_stream(t0: float, n: int, rng: np.random.Generator,
                    services: Sequence[str] = ("checkout", "search", "payments"),
                    first: int = 0) -> list[tuple[bytes, bytes]]:
    """Points ``first`` .. ``n-1`` of the standard scenario, interleaved by time.

    After WARMUP points: checkout latency ×6 for 5 points (rule: act), search error ratio
    ×100 for 5 points (no rule: page), payments queue depth ×8 for 3 points at each of
    PAYMENT_SPIKES (rule with a budget of 2: act, act, then page "budget exhausted").
    """
    out = []
    for i in range(first, n):
        k = i - WARMUP
        for svc in services:
            vals = {m: v * (1 + 0.02 * _noise(rng)) for m, v in BASELINES[svc].items()}
            if svc == "checkout" and 0 <= k < 5:
                vals["http_latency_p99_ms"] *= 6
            if svc == "search" and 0 <= k < 5:
                vals["error_ratio"] *= 100
            if svc == "payments" and any(0 <= k - s < 3 for s in PAYMENT_SPIKES):
                vals["queue_depth"] *= 8
            out.append(batch_msg(svc, t0 + i, vals))
    return out
