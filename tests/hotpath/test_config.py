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
    assert [r.name for r in cfg.remediations] == ["restart-checkout", "scale-payments",
                                                  "failover-shipping"]
    # Every governance feature is exercised by the example.
    cat = cfg.catalogue()
    assert {s.executor for s in cat.actions.values()} == {"webhook", "command", "plugin:jsonl"}
    assert {s.risk.label for s in cat.actions.values()} >= {"low", "medium", "high"}
    assert any(s.rollback for s in cat.actions.values())
    assert any(s.verify for s in cat.actions.values())
    assert any(not s.idempotent for s in cat.actions.values())
    policy = cfg.policy.policy()
    assert policy.freezes and policy.approval.rights
    assert any(r.dry_run for r in policy.rules)
    assert {r.actors[0].split(":")[0] for r in policy.rules} == {"automation", "agent", "human"}
    lim = cfg.limits.limits()
    assert None not in (lim.per_action_service, lim.per_service, lim.global_,
                        lim.concurrency_per_service, lim.concurrency_global,
                        lim.blast_fraction, lim.max_services)
    assert lim.cooldown_s > 0
    assert any(r.budget is not None for r in cfg.remediations)
    assert {p.kind for p in cfg.principals} == {"agent", "human"}


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


def test_cross_section_errors_point_at_their_line() -> None:
    text = """kafka: {bootstrap: x}
remediations:
  - {name: a, action: b}
  - {name: a, action: c}
actions:
  c: {rollback: c, executor: "plugin:ticket"}
  d:
    executor: command
    command: [/bin/rm, "{bogus}"]
executors:
  command: {allow: [/bin/echo]}
principals:
  - {name: x, kind: agent, token_sha256: "AAA"}
  - {name: x, kind: human, token_sha256: "BBB"}
""".replace("AAA", "a" * 64).replace("BBB", "b" * 64)
    with pytest.raises(ConfigError) as exc:
        parse_config_text(text)
    assert exc.value.problems == [
        ("remediations.0.action", 3, "action 'b' is not in actions"),
        ("remediations.1.name", 4, "remediation name 'a' is used twice"),
        ("actions.c.rollback", 6, "rollback 'c' must be another action in actions"),
        ("actions.c.executor", 6, "runs plugin 'ticket': add it to executors.plugins"),
        ("actions.d.command.0", 9, "program '/bin/rm' is not in executors.command.allow"),
        ("actions.d.command", 9, "unknown placeholder '{bogus}'"),
        ("principals.1.name", 14, "principal 'x' is listed twice"),
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
