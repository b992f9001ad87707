"""A partition's detector state: profile routing, one path from bytes to findings, snapshots."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from hotpath.config import parse_config_text
from hotpath.errors import CheckpointError, ConfigError
from hotpath.partition import PartitionState
from hotpath.runtime import partition_factory
from hotpath.wire import RawMessage

CONFIG = """\
kafka: {bootstrap: x}
detectors:
  default:
    ewma: {warmup: 10}
  profiles:
    - name: ratios
      match: {metric: "*_ratio", labels: {region: "eu-*"}}
      detectors:
        ewma: {warmup: 10, z_threshold: 8}
        static: null
  bounds:
    - {metric: "*_ratio", upper: 0.5}
"""


def _msgs(points: list[tuple[str, str, float, float]]) -> list[RawMessage]:
    return [RawMessage(orjson.dumps({"service": s, "metric": m, "ts": ts, "value": v,
                                     "labels": {"region": "eu-west-1"}}), 0, i)
            for i, (s, m, ts, v) in enumerate(points)]


def _state(text: str = CONFIG) -> PartitionState:
    return partition_factory(parse_config_text(text))()


def _calm(t0: float, n: int, rng: np.random.Generator) -> list[tuple[str, str, float, float]]:
    out = []
    for i in range(n):
        out.append(("checkout", "error_ratio", t0 + i, 0.01 * (1 + 0.02 * rng.standard_normal())))
        out.append(("checkout", "latency_ms", t0 + i, 200 * (1 + 0.02 * rng.standard_normal())))
    return out


def test_series_are_routed_to_the_first_matching_profile() -> None:
    state = _state()
    state.ingest(_msgs(_calm(1e9, 3, np.random.default_rng(0))), now=1e9 + 3)
    by_name = {p.name: [state.index.key(r) for r in p.rows] for p in state.profiles}
    assert by_name == {"ratios": ["checkout|error_ratio|region=eu-west-1"],
                       "default": ["checkout|latency_ms|region=eu-west-1"]}
    assert [p.ensemble.detector_names for p in state.profiles] == [("ewma",), ("ewma", "static")]


def test_each_profile_uses_its_own_parameters_and_names_who_agreed() -> None:
    state = _state()
    rng = np.random.default_rng(1)
    state.ingest(_msgs(_calm(1e9, 40, rng)), now=1e9 + 40)
    # z of about 6 for both series: above the default's z_threshold 4, below the profile's 8.
    jump = [("checkout", "error_ratio", 1e9 + 40, 0.01 * 1.12),
            ("checkout", "latency_ms", 1e9 + 40, 200 * 1.12)]
    det = state.ingest(_msgs(jump), now=1e9 + 41)
    assert det.output is not None
    assert det.output.alert.tolist() == [False, True]
    assert det.output.agreed == [None, ("ewma",)]


def test_snapshot_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(2)
    warm = _msgs(_calm(1e9, 30, rng))
    later = _msgs([*_calm(1e9 + 30, 10, rng), ("checkout", "error_ratio", 1e9 + 40, 0.9)])
    a = _state()
    a.ingest(warm, now=1e9 + 30)
    b = _state()
    b.load_bytes(a.to_bytes())
    out_a, out_b = a.ingest(later, now=1e9 + 41).output, b.ingest(later, now=1e9 + 41).output
    assert out_a is not None and out_b is not None
    np.testing.assert_array_equal(out_a.confidence, out_b.confidence)
    np.testing.assert_array_equal(out_a.alert, out_b.alert)
    assert out_a.agreed == out_b.agreed
    assert a.recent.last(0) == b.recent.last(0)


def test_a_snapshot_from_another_detector_configuration_is_refused() -> None:
    a = _state()
    a.ingest(_msgs(_calm(1e9, 3, np.random.default_rng(3))), now=1e9 + 3)
    other = _state(CONFIG.replace("z_threshold: 8", "z_threshold: 9"))
    with pytest.raises(CheckpointError) as exc:
        other.load_bytes(a.to_bytes())
    assert str(exc.value) == "checkpoint was taken under another detector configuration"
    with pytest.raises(CheckpointError) as exc:
        other.load_bytes(b"not a checkpoint")
    assert str(exc.value).startswith("detector checkpoint unreadable: ")


def test_profile_errors_name_the_yaml_line() -> None:
    text = """\
kafka: {bootstrap: x}
detectors:
  profiles:
    - name: ratios
      match: {metric: "*_ratio"}
      detectors:
        ewma: {alpha: 0}
    - name: empty
      match: {service: "batch-*"}
      detectors: {ewma: null, static: null}
"""
    with pytest.raises(ConfigError) as exc:
        parse_config_text(text)
    assert exc.value.problems == [
        ("detectors.profiles.0.detectors.ewma.alpha", 7, "Input should be greater than 0"),
        ("detectors.profiles.1.detectors", 10, "a detector set needs at least one detector"),
    ]


def test_profile_names_are_unique_and_not_default() -> None:
    text = "kafka: {bootstrap: x}\ndetectors:\n  profiles:\n" + "".join(
        f"    - {{name: {n}, match: {{}}, detectors: {{}}}}\n" for n in ("a", "a", "default"))
    with pytest.raises(ConfigError) as exc:
        parse_config_text(text)
    assert exc.value.problems == [
        ("detectors", 2, "profile names must be unique and not 'default': a, default"),
    ]


def test_a_silent_series_alerts_once_at_a_tick_with_a_stable_id() -> None:
    text = CONFIG.replace("    ewma: {warmup: 10}\n",
                          "    ewma: {warmup: 10}\n    absence: {k: 5, min_silence_s: 1}\n")
    state = _state(text)
    pts = [("checkout", "latency_ms", 1e9 + i, 200.0) for i in range(10)]
    pts += [("checkout", "error_ratio", 1e9 + i, 0.01) for i in range(12)]
    state.ingest(_msgs(pts), now=1e9 + 12)
    assert state.tick(1e9 + 13) == []
    # Event time is 1e9+11 (newest point) + 4 s since it arrived at 1e9+12: latency, silent
    # since 1e9+9, has been quiet 6 intervals of 1 s, over its k=5.
    (alert,) = state.tick(1e9 + 16)
    assert state.index.key(alert.row) == "checkout|latency_ms|region=eu-west-1"
    assert alert.agreed == ("absence",)
    assert (alert.baseline, alert.deviation) == (1.0, 6.0)
    # One silence, one alert; the ratios profile has no absence detector at all.
    assert state.tick(1e9 + 30) == []


def test_ticks_follow_event_time_so_a_lagging_consumer_sees_no_false_silence() -> None:
    text = CONFIG.replace("    ewma: {warmup: 10}\n",
                          "    ewma: {warmup: 10}\n    absence: {k: 5, min_silence_s: 1}\n")
    state = _state(text)
    assert state.tick(5e9) == []  # nothing seen yet: no time base
    # Points from an hour ago, read now (the consumer is catching up).
    state.ingest(_msgs([("checkout", "latency_ms", 1e9 + i, 200.0) for i in range(10)]),
                 now=1e9 + 3600)
    assert state.event_time(1e9 + 3600) == 1e9 + 9
    assert state.tick(1e9 + 3601) == []  # an hour behind the wall clock is not a silence
    (alert,) = state.tick(1e9 + 3600 + 6)  # but 6 s of nothing after that, on an idle partition
    assert alert.agreed == ("absence",)


def test_a_detector_constructor_check_reports_at_that_detectors_line() -> None:
    text = ("kafka: {bootstrap: x}\ndetectors:\n  default:\n"
            "    level_shift:\n      k: 4\n      clip_z: 3\n")
    with pytest.raises(ConfigError) as exc:
        parse_config_text(text)
    assert exc.value.problems == [
        ("detectors.default.level_shift", 4, "clip_z must be > k (4.0), got 3.0"),
    ]
