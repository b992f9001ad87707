"""The Prometheus + Alertmanager driver: generated configs, exporter, receiver, one real run."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from benchmarks.promstack import (
    DEFAULT,
    FAST,
    AlertReceiver,
    Exporter,
    Setting,
    alertmanager_config,
    exposition,
    firing_series,
    measure_setting,
    missing_binaries,
    prometheus_config,
    rules_config,
)


def test_the_issue_settings_and_their_worst_case() -> None:
    assert (DEFAULT.scrape_s, DEFAULT.eval_s, DEFAULT.group_wait_s) == (15, 15, 30)
    assert (FAST.scrape_s, FAST.eval_s, FAST.group_wait_s) == (1, 1, 0)
    assert DEFAULT.worst_case_s == 60.0
    assert DEFAULT.cycle_s == 15.0
    assert Setting("x", scrape_s=2, eval_s=5, group_wait_s=1).cycle_s == 5.0


def test_prometheus_config_scrapes_the_exporter_and_alerts_to_alertmanager() -> None:
    c = prometheus_config(DEFAULT, "127.0.0.1:10", "127.0.0.1:20", Path("/w/rules.yml"))
    assert c == {
        "global": {"scrape_interval": "15000ms", "scrape_timeout": "15000ms",
                   "evaluation_interval": "15000ms"},
        "rule_files": ["/w/rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:20"]}]}]},
        "scrape_configs": [{"job_name": "page_latency",
                            "static_configs": [{"targets": ["127.0.0.1:10"]}]}],
    }


def test_the_rule_is_a_threshold_without_a_pending_period() -> None:
    [rule] = rules_config(250.5)["groups"][0]["rules"]
    assert rule == {"alert": "PageLatencyStep", "expr": "page_latency_value > 250.5",
                    "for": "0s", "labels": {"severity": "page"}}


def test_alertmanager_groups_by_series_and_posts_to_the_receiver() -> None:
    c = alertmanager_config(DEFAULT, "http://127.0.0.1:5/alerts")
    assert c["route"] | {"group_by": ["series"], "group_wait": "30000ms",
                         "receiver": "bench"} == c["route"]
    assert c["receivers"] == [{"name": "bench", "webhook_configs": [
        {"url": "http://127.0.0.1:5/alerts", "send_resolved": False}]}]


def test_exposition_is_one_gauge_sample_per_series() -> None:
    assert exposition([("s00", 100.0), ("s01", 2.5e3)]).splitlines() == [
        "# TYPE page_latency_value gauge",
        'page_latency_value{series="s00"} 100.0',
        'page_latency_value{series="s01"} 2500.0',
    ]


@pytest.mark.parametrize(("body", "series"), [
    ({"alerts": [{"status": "firing", "labels": {"series": "s03", "alertname": "A"}}]},
     ["s03"]),
    ({"alerts": [{"status": "resolved", "labels": {"series": "s03"}}]}, []),
    ({"alerts": [{"status": "firing", "labels": {"alertname": "A"}}]}, []),
    ({"alerts": "nope"}, []),
    (None, []),
])
def test_firing_series_reads_only_firing_alerts_with_a_series(
        body: object, series: list[str]) -> None:
    assert firing_series(body) == series


def test_missing_binaries_names_each_missing_path() -> None:
    assert missing_binaries(["/bin/sh"]) == []
    assert missing_binaries(["/nope/a", "/bin/sh", "/nope/b"]) == ["/nope/a", "/nope/b"]


async def test_receiver_stamps_the_first_arrival_per_series() -> None:
    ticks = iter([10.0, 20.0])
    async with AlertReceiver(clock=lambda: next(ticks)) as receiver, \
            aiohttp.ClientSession() as session:
        for series in ("s00", "s00"):
            body = {"alerts": [{"status": "firing", "labels": {"series": series}}]}
            async with session.post(receiver.url, data=json.dumps(body)) as resp:
                assert resp.status == 200
    assert receiver.first == {"s00": 10.0}
    assert receiver.notifications == 2


async def test_exporter_serves_each_series_at_the_scrape_instant() -> None:
    seen: list[tuple[str, float]] = []

    def value_at(series: str, now: float) -> float:
        seen.append((series, now))
        return 300.0 if series == "s01" else 100.0

    async with Exporter(["s00", "s01"], value_at, clock=lambda: 5.0) as exporter, \
            aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{exporter.port}/metrics") as resp:
        text = await resp.text()
    assert text == exposition([("s00", 100.0), ("s01", 300.0)])
    assert seen == [("s00", 5.0), ("s01", 5.0)]
    assert exporter.scrapes == 1


@pytest.mark.skipif(bool(missing_binaries()), reason="prometheus/alertmanager not installed")
async def test_fast_setting_pages_every_stepped_series(tmp_path: Path) -> None:
    """The one real run (about 10 s): both servers start, every step is notified once."""
    run = await measure_setting(FAST, tmp_path, [0.0, 0.5],
                                lambda s, stepped: 300.0 if stepped else 100.0, 200.0)
    assert run.missed == 0
    assert sorted(run.arrivals) == ["s00", "s01"]
    # A step cannot be seen before the next scrape, nor later than the worst case + margin.
    assert all(0.0 < x < FAST.worst_case_s + 5.0 for x in run.latencies_s())
    assert (tmp_path / "prometheus.log").exists() and (tmp_path / "alertmanager.log").exists()
