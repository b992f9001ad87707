from pathlib import Path

import pytest

from hotpath.config import json_schema, load_config, parse_config_text
from hotpath.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"

BROKEN = """\
version: 1
kafka:
  bootstrap: "127.0.0.1:9092"
  max_batch: zero
detectors:
  default:
    ewma:
      alpha: 1.5
  bounds:
    - {service: checkout, metric: error_ratio}
decide:
  page_threshold: 2
remediations:
  - name: r1
    action: restart_pods
    budget: {limit: -1}
  - name: r2
    colour: blue
    action: x
executors:
  webhook: {url: "http://127.0.0.1:1/actions"}
"""


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.kafka.dlq_topic == "telemetry.dlq"
    assert [r.name for r in cfg.remediations] == ["restart-checkout", "scale-payments"]


def test_every_error_names_its_yaml_path_and_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config_text(BROKEN)
    assert exc.value.problems == [
        ("kafka.max_batch", 4,
         "Input should be a valid integer, unable to parse string as an integer"),
        ("detectors.default.ewma.alpha", 8, "Input should be less than or equal to 1"),
        ("detectors.bounds.0", 10, "a bound needs lower, upper or both"),
        ("decide.page_threshold", 12, "Input should be less than or equal to 1"),
        ("remediations.0.budget.limit", 16, "Input should be greater than or equal to 0"),
        ("remediations.1.colour", 18, "Extra inputs are not permitted"),
    ]


def test_model_level_errors_point_at_the_document() -> None:
    text = "kafka: {bootstrap: x}\nremediations:\n  - {name: a, action: b}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config_text(text)
    assert exc.value.problems == [
        ("(root)", 1, "remediations need an executor: set executors.webhook"),
    ]


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config_text("kafka:\n  bootstrap: [unclosed\n")
    (path, line, msg), = exc.value.problems
    assert (path, line) == ("(yaml)", 3)
    assert msg.startswith("invalid YAML:")


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(Path("/nonexistent/hotpath.yaml"))
    assert exc.value.problems == [
        ("/nonexistent/hotpath.yaml", None, "cannot read: No such file or directory")
    ]


def test_config_is_frozen() -> None:
    cfg = load_config(EXAMPLE)
    with pytest.raises(Exception, match="frozen"):
        cfg.kafka.topic = "other"  # type: ignore[misc]


def test_schema_describes_the_sections() -> None:
    schema = json_schema()
    assert schema["title"] == "hotpath configuration"
    assert {"kafka", "redis", "detectors", "remediations", "policy"} <= set(schema["properties"])
    assert schema["required"] == ["kafka"]
