"""The `hotpath` command's config and audit subcommands, as a user calls them."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from escalation.audit import AuditLog
from hotpath.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"


def test_config_check_ok() -> None:
    res = CliRunner().invoke(main, ["config", "check", str(EXAMPLE)])
    assert res.exit_code == 0
    assert res.output.startswith(f"{EXAMPLE}: ok (config version ")


def test_config_check_prints_every_error_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  bootstrap: x\n  max_batch: -4\n"
                   "decide: {page_threshold: 3}\n"
                   "detectors:\n  default:\n    ewma: {warmup: -1}\n")
    res = CliRunner().invoke(main, ["config", "check", str(bad)])
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        f"{bad}: 3 problems in the config:",
        "  kafka.max_batch (line 3): Input should be greater than 0",
        "  detectors.default.ewma.warmup (line 7): Input should be greater than or equal to 0",
        "  decide.page_threshold (line 4): Input should be less than or equal to 1",
    ]


def test_config_schema_is_json_schema() -> None:
    res = CliRunner().invoke(main, ["config", "schema"])
    assert res.exit_code == 0
    schema = orjson.loads(res.output)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "remediations" in schema["properties"]


def test_audit_verify_names_the_first_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    clock = iter(float(i) for i in range(100))
    with AuditLog(path, lambda: next(clock)) as log:
        for i in range(4):
            log.append("decision", {"n": i})
        log.flush()
    ok = CliRunner().invoke(main, ["audit", "verify", str(path)])
    assert (ok.exit_code, ok.output) == (0, f"{path}: ok, 4 records, chain intact\n")

    path.write_bytes(path.read_bytes().replace(b'{"n":2}', b'{"n":7}'))
    bad = CliRunner().invoke(main, ["audit", "verify", str(path)])
    assert bad.exit_code == 1
    assert bad.stderr == f"{path}: TAMPERED: record 3 (line 3): hash mismatch (record edited)\n"
