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


def test_automation_pause_status_resume(tmp_path: Path, redis_url: str,
                                        redis_client: object) -> None:
    cfg = tmp_path / "hotpath.yaml"
    cfg.write_text(f"kafka: {{bootstrap: x}}\nredis: {{url: '{redis_url}'}}\n")
    run = CliRunner().invoke
    assert run(main, ["automation", "status", "--config", str(cfg)]).output == (
        "automation running (never paused)\n")
    paused = run(main, ["automation", "pause", "--config", str(cfg), "--actor", "alice",
                        "--reason", "bad deploy"])
    assert paused.exit_code == 0
    assert paused.output.startswith("automation PAUSED (version 1, by alice at ")
    assert paused.output.endswith(": bad deploy)\n")
    status = run(main, ["automation", "status", "--config", str(cfg)])
    assert status.output == paused.output
    resumed = run(main, ["automation", "resume", "--config", str(cfg), "--actor", "bob",
                         "--reason", "rolled back"])
    assert resumed.output.startswith("automation running (version 2, by bob at ")


def test_automation_pause_needs_a_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "hotpath.yaml"
    cfg.write_text("kafka: {bootstrap: x}\n")
    res = CliRunner().invoke(main, ["automation", "pause", "--config", str(cfg)])
    assert res.exit_code == 2
    assert "Missing option '--reason'" in res.output


def test_automation_reports_an_unreachable_redis(tmp_path: Path) -> None:
    cfg = tmp_path / "hotpath.yaml"
    cfg.write_text("kafka: {bootstrap: x}\nredis: {url: 'redis://127.0.0.1:1/0'}\n")
    res = CliRunner().invoke(main, ["automation", "pause", "--config", str(cfg),
                                    "--reason", "x"])
    assert res.exit_code == 1
    assert res.stderr.startswith(
        "hotpath automation: Redis at redis://127.0.0.1:1/0 unavailable: ")


def test_audit_verify_checks_checkpoint_signatures(tmp_path: Path) -> None:
    import base64

    from escalation.audit_signing import Signer

    signer = Signer.from_seed_b64(base64.b64encode(bytes(range(32))).decode())
    other = Signer.from_seed_b64(base64.b64encode(bytes(32)).decode())
    path = tmp_path / "audit.jsonl"
    clock = iter(float(i) for i in range(100))
    with AuditLog(path, lambda: next(clock), signer=signer, checkpoint_every=2) as log:
        for i in range(4):
            log.append("decision", {"n": i})
            log.flush()
    run = CliRunner().invoke
    ok = run(main, ["audit", "verify", str(path), "--public-key", signer.public_b64])
    assert (ok.exit_code, ok.stdout) == (
        0, f"{path}: ok, 6 records, chain intact, 2 signed checkpoints verified\n")
    wrong = run(main, ["audit", "verify", str(path), "--public-key", other.public_b64])
    assert wrong.exit_code == 1
    assert wrong.stderr == (f"{path}: TAMPERED: record 3 (line 3): checkpoint key "
                            f"{signer.key_id} unknown\n")
    bad = run(main, ["audit", "verify", str(path), "--public-key", "not base64!"])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("hotpath audit verify: --public-key 1")


def test_api_hash_token_prints_what_the_config_names_a_principal_by() -> None:
    run = CliRunner().invoke
    ok = run(main, ["api", "hash-token", "--token", "copilot-demo-token"])
    # The example config's copilot principal is exactly this digest.
    assert (ok.exit_code, ok.stdout) == (
        0, "22dcaedae6dc78b37fd41a354fadff34bb55208736f66eab3db8309fd1d4fe33\n")
    prompted = run(main, ["api", "hash-token"], input="copilot-demo-token\n")
    assert prompted.stdout.endswith(
        "22dcaedae6dc78b37fd41a354fadff34bb55208736f66eab3db8309fd1d4fe33\n")
    short = run(main, ["api", "hash-token", "--token", "short"])
    assert (short.exit_code, short.stderr) == (
        2, "hotpath api hash-token: a bearer token needs at least 16 characters\n")


def test_policy_test_with_limits_reads_the_shared_limits_without_claiming(
        tmp_path: Path, redis_url: str, redis_client: object) -> None:
    # redis_client: the database starts empty, so the counts below are this test's alone.
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        'url: "redis://127.0.0.1:6379/0"', f'url: "{redis_url}"')
    cfg = tmp_path / "hotpath.yaml"
    cfg.write_text(text, encoding="utf-8")
    req = EXAMPLE.parent / "requests" / "copilot-restart-checkout.json"
    run = CliRunner().invoke
    for _ in range(2):  # a peek claims nothing: the second run reads the same counts
        res = run(main, ["policy", "test", str(req), "--config", str(cfg), "--limits"])
        lines = res.stdout.splitlines()
        assert res.exit_code == 0 and lines[-1] == "decision: would run"
        assert lines[-2].startswith("  ok   limits  claimed: action/service 1/3 per 1h; "
                                    "service 1/5 per 1h")
