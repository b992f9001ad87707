"""A synthetic fleet of services publishing BATCH telemetry (wire format v1) with incidents.

Each :class:`ServiceSpec` is one service in one region; every tick yields one batch message
per spec, keyed by the service name so one service's series stay on one partition. Values
are the metric's level with gaussian noise, times the effect of any active incident. Time
and randomness are injected, so a seeded generator and a fake clock give the same bytes.

>>> import numpy as np
>>> from hotpath.demo.incidents import Incident
>>> t = [100.0]
>>> spec = ServiceSpec("checkout", "eu-west-1", {"http_latency_p99_ms": (200.0, 0.0)})
>>> fleet = Fleet([spec], [Incident("slow", "checkout", "http_latency_p99_ms", 5, 60, 6)],
...               np.random.default_rng(0), clock=lambda: t[0])
>>> [(key, orjson.loads(value)) for key, value in fleet.tick()]  # doctest: +NORMALIZE_WHITESPACE
[(b'checkout', {'service': 'checkout', 'ts': 100.0, 'labels': {'region': 'eu-west-1'},
                'metrics': {'http_latency_p99_ms': 200.0}})]
>>> t[0] = 106.0
>>> orjson.loads(fleet.tick()[0][1])["metrics"]
{'http_latency_p99_ms': 1200.0}
>>> fleet.heal("checkout", "restart_pods"), orjson.loads(fleet.tick()[0][1])["metrics"]
(True, {'http_latency_p99_ms': 200.0})
>>> [(e.at_s, e.kind.value, e.incident) for e in fleet.events]
[(5.0, 'started', 'slow'), (6.0, 'healed', 'slow')]
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from hotpath.demo.incidents import Incident

# Noise is gaussian but clipped at 2 σ: the demo must page only for the injected incidents.
# Through detectors.ensemble.default_ensemble (alert at |z| ≥ 4), pure noise alerted once per
# 9 000 points clipped at 3 σ and once per 85 000 at 2.5 σ — a false page every few demo
# runs of ~11 000 points — and once in 2 000 000 at 2 σ.
NOISE_CLIP_SIGMA = 2.0

# 0.2 s gives each series 50 points before the first incident (10 s), well above the 30
# points of detector warm-up, while keeping the demo fleet at ~40 messages per second.
DEFAULT_INTERVAL_S = 0.2


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service in one region: metric name → (level, noise as a fraction of the level).

    >>> ServiceSpec("auth", "eu-west-1", {"error_ratio": (0.001, 0.5)})
    Traceback (most recent call last):
    ...
    ValueError: service 'auth' metric 'error_ratio': noise_frac 0.5 must be in [0, 0.5)
    """

    name: str
    region: str
    metrics: Mapping[str, tuple[float, float]]

    def __post_init__(self) -> None:
        for metric, (level, noise_frac) in self.metrics.items():
            if not level > 0:
                raise ValueError(f"service {self.name!r} metric {metric!r}: level must be > 0")
            # Below 1 / NOISE_CLIP_SIGMA a value can never reach zero or go negative.
            if not 0 <= noise_frac < 1 / NOISE_CLIP_SIGMA:
                raise ValueError(
                    f"service {self.name!r} metric {metric!r}: noise_frac {noise_frac:g} "
                    f"must be in [0, {1 / NOISE_CLIP_SIGMA:g})"
                )


def default_fleet() -> tuple[ServiceSpec, ...]:
    """Six services, 4–6 metrics each; inventory and auth run in two regions.

    The services the default incidents touch run in one region, so each incident is one
    series and raises one finding (two regions would spend the payments budget twice as fast).

    >>> specs = default_fleet()
    >>> sorted({s.name for s in specs})
    ['auth', 'checkout', 'inventory', 'payments', 'search', 'shipping']
    >>> len(specs), sum(len(s.metrics) for s in specs)
    (8, 37)
    """
    eu, us = "eu-west-1", "us-east-1"
    inventory = {
        "http_latency_p99_ms": (60.0, 0.04),
        "error_ratio": (0.001, 0.05),
        "http_requests_per_s": (500.0, 0.05),
        "db_connections": (40.0, 0.03),
    }
    auth = {
        "http_latency_p99_ms": (40.0, 0.04),
        "error_ratio": (0.0005, 0.05),
        "http_requests_per_s": (2000.0, 0.05),
        "token_cache_hit_ratio": (0.97, 0.01),
        "cpu_utilization": (0.45, 0.03),
    }
    return (
        ServiceSpec("checkout", eu, {
            "http_latency_p99_ms": (230.0, 0.04),
            "error_ratio": (0.004, 0.05),
            "http_requests_per_s": (850.0, 0.05),
            "cpu_utilization": (0.55, 0.03),
            "pod_memory_mb": (740.0, 0.02),
        }),
        ServiceSpec("payments", eu, {
            "http_latency_p99_ms": (180.0, 0.04),
            "error_ratio": (0.001, 0.05),
            "http_requests_per_s": (300.0, 0.05),
            "queue_depth": (120.0, 0.05),
        }),
        ServiceSpec("search", us, {
            "http_latency_p99_ms": (95.0, 0.04),
            "error_ratio": (0.002, 0.05),
            "http_requests_per_s": (1400.0, 0.05),
            "cache_hit_ratio": (0.92, 0.02),
            "cpu_utilization": (0.6, 0.03),
            "index_lag_s": (2.5, 0.05),
        }),
        ServiceSpec("inventory", eu, inventory),
        ServiceSpec("inventory", us, inventory),
        ServiceSpec("auth", eu, auth),
        ServiceSpec("auth", us, auth),
        ServiceSpec("shipping", us, {
            "http_latency_p99_ms": (310.0, 0.04),
            "error_ratio": (0.003, 0.05),
            "http_requests_per_s": (120.0, 0.05),
            "queue_depth": (15.0, 0.05),
        }),
    )


class FleetEventKind(enum.Enum):
    STARTED = "started"          # an occurrence of an incident went on
    ENDED = "ended"              # it ran its course without a heal
    HEALED = "healed"            # an action arrived while it was on and ended it
    HEAL_IGNORED = "heal ignored"  # an action arrived but nothing healable was on


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """What happened to the fleet, for the demo summary; ``at_s`` is since the fleet start."""

    at_s: float
    kind: FleetEventKind
    incident: str          # "" for HEAL_IGNORED
    service: str
    occurrence: int        # 0-based; -1 for HEAL_IGNORED
    detail: str = ""       # the action for heals


class Fleet:
    """Synthetic telemetry for ``specs`` with ``incidents`` injected; see the module doctest.

    The fleet's time zero is ``clock()`` at construction (or ``start``); incident times are
    relative to it. ``clock`` also stamps ``ts`` in the messages, so pass wall-clock seconds
    (``time.time``) in the demo.
    """

    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        incidents: Sequence[Incident],
        rng: np.random.Generator,
        clock: Callable[[], float],
        start: float | None = None,
    ) -> None:
        known = {(s.name, m) for s in specs for m in s.metrics}
        for inc in incidents:
            if (inc.service, inc.metric) not in known:
                raise ValueError(
                    f"incident {inc.name!r}: no service {inc.service!r} "
                    f"with metric {inc.metric!r} in the fleet"
                )
        self.specs = tuple(specs)
        self.incidents = tuple(incidents)
        self.events: list[FleetEvent] = []
        self._rng = rng
        self._clock = clock
        self.start = clock() if start is None else start
        self._healed_at: dict[str, float] = {}
        # The occurrence each incident was last seen in, so transitions become events.
        self._seen: dict[str, int | None] = {inc.name: None for inc in self.incidents}

    def now_rel(self) -> float:
        """Seconds since the fleet's time zero."""
        return self._clock() - self.start

    def tick(self) -> list[tuple[bytes, bytes]]:
        """One publishing instant: a (key, value) batch message per service×region."""
        now = self._clock()
        rel = now - self.start
        self._observe(rel)
        messages: list[tuple[bytes, bytes]] = []
        for spec in self.specs:
            names = list(spec.metrics)
            levels = np.array([spec.metrics[m][0] for m in names])
            noise = np.array([spec.metrics[m][1] for m in names])
            draws = np.clip(self._rng.standard_normal(len(names)), -NOISE_CLIP_SIGMA,
                            NOISE_CLIP_SIGMA)
            values = levels * (1.0 + noise * draws) * self._effects(spec.name, names, rel)
            body = {
                "service": spec.name,
                "ts": now,
                "labels": {"region": spec.region},
                "metrics": {m: float(v) for m, v in zip(names, values, strict=True)},
            }
            messages.append((spec.name.encode(), orjson.dumps(body)))
        return messages

    def heal(self, service: str, action: str) -> bool:
        """An action arrived for ``service``: end the occurrences on now (not later ones).

        Returns whether anything was healed; either way the fleet records an event.
        """
        rel = self.now_rel()
        self._observe(rel)
        healed = False
        for inc in self.incidents:
            occurrence = self._seen[inc.name]
            if inc.service != service or not inc.healable or occurrence is None:
                continue
            self.events.append(
                FleetEvent(rel, FleetEventKind.HEALED, inc.name, service, occurrence, action)
            )
            self._seen[inc.name] = None
            healed = True
        self._healed_at[service] = rel
        if not healed:
            self.events.append(
                FleetEvent(rel, FleetEventKind.HEAL_IGNORED, "", service, -1, action)
            )
        return healed

    def on_action(self, request: Mapping[str, Any]) -> None:
        """``on_action`` for :class:`~hotpath.demo.receivers.ActionReceiver`: heal its service."""
        self.heal(str(request["service"]), str(request["action"]))

    async def publish(
        self,
        producer: Any,
        topic: str,
        stop: asyncio.Event,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> int:
        """Publish a tick every ``interval_s`` to ``topic`` until ``stop``; returns messages sent.

        ``producer`` is a started ``aiokafka.AIOKafkaProducer``. A tick's messages are all
        handed to the producer first and awaited together, so they travel in one request.
        """
        loop = asyncio.get_running_loop()
        # Pacing uses the loop's monotonic time, not the injected clock: it only spaces the
        # ticks, and a fake clock in tests must not make the loop spin or stall.
        next_at = loop.time()
        sent = 0
        while not stop.is_set():
            pending = [
                await producer.send(topic, value=value, key=key) for key, value in self.tick()
            ]
            await asyncio.gather(*pending)
            sent += len(pending)
            next_at += interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - loop.time()))
        return sent

    def _effects(self, service: str, names: list[str], rel: float) -> npt.NDArray[np.float64]:
        factors = np.ones(len(names))
        healed_at = self._healed_at.get(service)
        for inc in self.incidents:
            if inc.service == service:
                factors[names.index(inc.metric)] *= inc.effect(rel, healed_at)
        return factors

    def _observe(self, rel: float) -> None:
        for inc in self.incidents:
            current = inc.active_occurrence(rel, self._healed_at.get(inc.service))
            previous = self._seen[inc.name]
            if current == previous:
                continue
            # Stamp the scheduled times, not when a tick happened to notice the change.
            if previous is not None:
                ended = min(rel, inc.occurrence_start(previous) + inc.duration_s)
                self.events.append(
                    FleetEvent(ended, FleetEventKind.ENDED, inc.name, inc.service, previous)
                )
            if current is not None:
                began = inc.occurrence_start(current)
                self.events.append(
                    FleetEvent(began, FleetEventKind.STARTED, inc.name, inc.service, current)
                )
            self._seen[inc.name] = current
