"""The synthetic fleet: message shape, determinism, incidents, heals, and a real broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from detectors.ensemble import default_ensemble
from hotpath.demo.fleet import (
    DEFAULT_INTERVAL_S,
    NOISE_CLIP_SIGMA,
    Fleet,
    FleetEventKind,
    ServiceSpec,
    default_fleet,
)
from hotpath.demo.incidents import FIRST_INCIDENT_S, Incident, default_incidents

T0 = 1_764_132_000.0


class StepClock:
    """A fake clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bodies(messages: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in messages]


def run_ticks(seed: int, n: int) -> list[list[tuple[bytes, bytes]]]:
    clock = StepClock()
    fleet = Fleet(default_fleet(), default_incidents(), np.random.default_rng(seed), clock)
    out = []
    for _ in range(n):
        out.append(fleet.tick())
        clock.now += DEFAULT_INTERVAL_S
    return out


def test_same_seed_and_clock_give_the_same_bytes() -> None:
    assert run_ticks(7, 120) == run_ticks(7, 120)
    assert run_ticks(7, 3) != run_ticks(8, 3)


def test_one_batch_message_per_service_and_region() -> None:
    specs = default_fleet()
    fleet = Fleet(specs, (), np.random.default_rng(1), StepClock())
    messages = fleet.tick()
    assert len(messages) == len(specs)
    for (key, _), body, spec in zip(messages, bodies(messages), specs, strict=True):
        assert key == spec.name.encode()
        assert body["service"] == spec.name
        assert body["ts"] == T0
        assert body["labels"] == {"region": spec.region}
        assert list(body["metrics"]) == list(spec.metrics)
    assert {(b["service"], b["labels"]["region"]) for b in bodies(messages)} == {
        (s.name, s.region) for s in specs}


def test_baseline_is_noisy_but_stable() -> None:
    spec = ServiceSpec("svc", "r", {"m": (200.0, 0.05)})
    clock = StepClock()
    fleet = Fleet([spec], (), np.random.default_rng(3), clock)
    values = []
    for _ in range(2000):
        values.append(bodies(fleet.tick())[0]["metrics"]["m"])
        clock.now += 0.2
    v = np.array(values)
    bound = 200.0 * 0.05 * NOISE_CLIP_SIGMA
    assert np.all(np.abs(v - 200.0) <= bound + 1e-9)
    assert abs(v.mean() - 200.0) < 1.0
    # Clipping at 2 σ trims the spread to ~0.77 σ: still clearly noisy.
    assert 0.7 * 10.0 < v.std() < 10.0
    # Only the ~4.6% of draws beyond ±2 σ sit on the clip bounds.
    at_bounds = np.isclose(np.abs(v - 200.0), bound).mean()
    assert 0.02 < at_bounds < 0.08


def test_incident_multiplies_only_its_series() -> None:
    spec = ServiceSpec("svc", "r", {"a": (100.0, 0.0), "b": (10.0, 0.0)})
    other = ServiceSpec("other", "r", {"a": (100.0, 0.0)})
    clock = StepClock()
    inc = Incident("x", "svc", "a", start_s=5, duration_s=2, factor=8)
    fleet = Fleet([spec, other], [inc], np.random.default_rng(0), clock)
    seen = []
    for rel in (4.9, 5.0, 6.9, 7.0):
        clock.now = T0 + rel
        seen.append([b["metrics"] for b in bodies(fleet.tick())])
    assert seen == [
        [{"a": 100.0, "b": 10.0}, {"a": 100.0}],
        [{"a": 800.0, "b": 10.0}, {"a": 100.0}],
        [{"a": 800.0, "b": 10.0}, {"a": 100.0}],
        [{"a": 100.0, "b": 10.0}, {"a": 100.0}],
    ]
    assert [(e.at_s, e.kind, e.occurrence) for e in fleet.events] == [
        (5.0, FleetEventKind.STARTED, 0), (7.0, FleetEventKind.ENDED, 0)]


def test_heal_ends_the_current_occurrence_only() -> None:
    spec = ServiceSpec("payments", "r", {"queue_depth": (100.0, 0.0)})
    inc = Incident("spikes", "payments", "queue_depth", start_s=10, duration_s=1.5, factor=8,
                   repeat_every_s=5, repeats=3)
    clock = StepClock()
    fleet = Fleet([spec], [inc], np.random.default_rng(0), clock)

    def value_at(rel: float) -> float:
        clock.now = T0 + rel
        metric: float = bodies(fleet.tick())[0]["metrics"]["queue_depth"]
        return metric

    assert value_at(10.2) == 800.0
    clock.now = T0 + 10.4
    assert fleet.heal("payments", "scale_out") is True
    assert [value_at(t) for t in (10.4, 11.0, 14.9)] == [100.0, 100.0, 100.0]
    assert [value_at(t) for t in (15.0, 16.0, 16.5)] == [800.0, 800.0, 100.0]
    clock.now = T0 + 18.0  # between spikes: nothing to heal
    assert fleet.heal("payments", "scale_out") is False
    assert value_at(20.0) == 800.0
    # The clock is a realistic epoch, so T0 + 10.4 - T0 is 10.4 only to ~1e-7.
    assert [(round(e.at_s, 3), e.kind.value, e.occurrence, e.detail)
            for e in fleet.events] == [
        (10.0, "started", 0, ""),
        (10.4, "healed", 0, "scale_out"),
        (15.0, "started", 1, ""),
        (16.5, "ended", 1, ""),
        (18.0, "heal ignored", -1, "scale_out"),
        (20.0, "started", 2, ""),
    ]


def test_heal_leaves_unhealable_incidents_and_other_services_alone() -> None:
    specs = [ServiceSpec("search", "r", {"error_ratio": (0.002, 0.0)}),
             ServiceSpec("checkout", "r", {"lat": (200.0, 0.0)})]
    incs = [Incident("errs", "search", "error_ratio", 1, 10, 100, healable=False),
            Incident("slow", "checkout", "lat", 1, 10, 6)]
    clock = StepClock(T0 + 2)
    fleet = Fleet(specs, incs, np.random.default_rng(0), clock, start=T0)
    fleet.on_action({"service": "search", "action": "restart_pods"})
    assert [b["metrics"] for b in bodies(fleet.tick())] == [
        {"error_ratio": 0.2}, {"lat": 1200.0}]
    assert fleet.events[-1].kind is FleetEventKind.HEAL_IGNORED


def test_incident_on_an_unknown_metric_is_refused() -> None:
    spec = ServiceSpec("svc", "r", {"a": (1.0, 0.0)})
    with pytest.raises(ValueError) as err:
        Fleet([spec], [Incident("x", "svc", "nope", 1, 1, 2)], np.random.default_rng(0),
              StepClock())
    assert str(err.value) == "incident 'x': no service 'svc' with metric 'nope' in the fleet"


def test_default_scenario_through_the_real_detectors() -> None:
    """Warm-up, one alert per incident, four payments spikes, no false alerts anywhere.

    The automation is played by healing 0.4 s after the alert: checkout once, payments on
    its first two spikes (the budget limit of 2); search never; shipping once, 2 s after
    the alert (the on-call's approval comes first).
    """
    assert FIRST_INCIDENT_S / DEFAULT_INTERVAL_S >= 30 + 10  # warm-up plus margin
    single_region = Counter(s.name for s in default_fleet())
    assert all(single_region[i.service] == 1 for i in default_incidents())

    clock = StepClock()
    fleet = Fleet(default_fleet(), default_incidents(), np.random.default_rng(11), clock)
    ensemble = default_ensemble()
    rows: dict[tuple[str, str, str], int] = {}
    alerts: dict[tuple[str, str], list[float]] = {}
    confidences = []
    heals_due: list[tuple[float, str]] = []
    heals_left = {"checkout": 1, "payments": 2, "shipping": 1}
    heal_after = {"checkout": 0.4, "payments": 0.4, "shipping": 2.0}
    for tick in range(int(36.0 / DEFAULT_INTERVAL_S)):
        # From the tick index, so the incident edges (10.0 s, 14.0 s...) fall exactly on a tick.
        clock.now = T0 + round(tick * DEFAULT_INTERVAL_S, 6)
        for due, service in [h for h in heals_due if h[0] <= clock.now]:
            heals_due.remove((due, service))
            fleet.heal(service, "act")
        r, ts, v = [], [], []
        for body in bodies(fleet.tick()):
            for metric, value in body["metrics"].items():
                key = (body["service"], metric, body["labels"]["region"])
                r.append(rows.setdefault(key, len(rows)))
                ts.append(body["ts"])
                v.append(value)
        ensemble.resize(len(rows))
        out = ensemble.update(np.array(r), np.array(ts), np.array(v))
        names = {row: key for key, row in rows.items()}
        for i in np.flatnonzero(out.alert):
            service, metric, _ = names[r[i]]
            alerts.setdefault((service, metric), []).append(round(clock.now - T0, 1))
            confidences.append(float(out.confidence[i]))
            if heals_left.get(service, 0) > 0:
                heals_left[service] -= 1
                heals_due.append((clock.now + heal_after[service], service))

    assert alerts == {
        ("checkout", "http_latency_p99_ms"): [10.0],
        ("search", "error_ratio"): [12.0],
        ("payments", "queue_depth"): [14.0, 19.0, 24.0, 29.0],
        ("shipping", "queue_depth"): [16.0],
    }
    assert min(confidences) > 0.99  # above any rule's automation threshold
    healed = [(e.incident, e.occurrence) for e in fleet.events if e.kind is FleetEventKind.HEALED]
    assert healed == [("checkout-latency", 0), ("payments-queue", 0), ("shipping-queue", 0),
                      ("payments-queue", 1)]


async def test_publish_to_a_real_broker(tansu_bootstrap: str, unique_topic: str) -> None:
    fleet = Fleet(default_fleet(), default_incidents(), np.random.default_rng(5),
                  asyncio.get_running_loop().time)
    producer = AIOKafkaProducer(bootstrap_servers=tansu_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(fleet.publish(producer, unique_topic, stop, interval_s=0.05))
        await asyncio.sleep(0.5)
        stop.set()
        sent = await asyncio.wait_for(task, timeout=10)
    finally:
        await producer.stop()
    specs = len(default_fleet())
    assert sent % specs == 0 and sent >= 3 * specs

    consumer = AIOKafkaConsumer(unique_topic, bootstrap_servers=tansu_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    received: list[tuple[bytes, dict[str, Any]]] = []
    try:
        async with asyncio.timeout(20):
            while len(received) < sent:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    received.extend((rec.key, orjson.loads(rec.value)) for rec in records)
    finally:
        await consumer.stop()
    assert len(received) == sent
    assert all(key == body["service"].encode() for key, body in received)
    per_service = Counter(body["service"] for _, body in received)
    ticks = sent // specs
    regions = Counter(spec.name for spec in default_fleet())
    assert per_service == {service: ticks * n for service, n in regions.items()}
