"""``hotpath report``: a real audit file written by AuditLog, read back through the CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from escalation.audit import AuditLog
from hotpath.cli import main

WHERE = {"service": "checkout", "environment": "prod", "region": "eu-west-1",
         "target": "deployment/checkout"}


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """Two findings: one acted on and recovered, one whose action failed and was paged."""
    path = tmp_path / "audit.jsonl"
    ticks = itertools.count(1000)
    with AuditLog(path, clock=lambda: float(next(ticks))) as log:
        for fid, rid, ts, result in (("f1", "r1", 900.0, "success"),
                                     ("f2", "r2", 950.0, "failed")):
            log.append("decision", {"decision": "act", "decided_at": ts + 2, "where": WHERE,
                                    "evidence": {"finding_id": fid, "ts": ts}})
            log.append("request", {"result": "queued", "decided_at": ts + 2, "where": WHERE,
                                   "checks": [], "request": {
                                       "request_id": rid, "finding_id": fid, "event_ts": ts,
                                       "actor": {"kind": "automation", "name": "restart"}}})
            log.append("intent", {"request_id": rid, "action": "restart_pods", "at": ts + 4,
                                  "actor": "automation:restart", "where": WHERE})
            log.append("outcome", {"request_id": rid, "action": "restart_pods",
                                   "actor": "automation:restart", "result": result,
                                   "at": ts + 10, "where": WHERE})
        log.append("verification", {"request_id": "r1", "result": "recovered",
                                    "recovered_at": 960.0, "event_ts": 900.0, "where": WHERE})
        log.append("page", {"request_id": "r2", "reason": "remediation failed",
                            "dedup_key": "hotpath-r2", "where": WHERE})
        log.flush()
    return path


def test_text_scorecard(log_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(log_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "hotpath scorecard: 10 records"
    assert "  restart_pods                         2        1       1             0" in lines
    assert "  automation error rate         50.0% (1/2)" in lines
    assert "  caused by automation failing  1" in lines
    assert "  time to detect                2  2.0s  2.0s  2.0s" in lines
    assert "  time to act                   2  4.0s  4.0s  4.0s" in lines
    assert "  time to recover               1  1.0m  1.0m  1.0m" in lines


def test_json_scorecard(log_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(log_path), "--json"])
    assert result.exit_code == 0, result.output
    card = orjson.loads(result.output)
    assert card["records"] == 10
    assert card["actions"]["by_action"] == {
        "restart_pods": {"success": 1, "failed": 1, "not_executed": 0}}
    assert card["automation_error_rate"] == 0.5
    assert card["rollback_rate"] == 0.0
    assert card["pages"]["by_cause"]["action_failed"] == 1
    assert card["impact"]["recover"] == {"count": 1, "p50": 60.0, "p90": 60.0, "max": 60.0}


def test_since_counts_only_later_records(log_path: Path) -> None:
    # The clock wrote seq n at 999 + n: from 1005 on, f2's request onwards (seq 6..10).
    result = CliRunner().invoke(main, ["report", str(log_path), "--json", "--since", "1005"])
    assert result.exit_code == 0, result.output
    card = orjson.loads(result.output)
    assert card["records"] == 5
    assert card["by_kind"] == {"intent": 1, "outcome": 1, "page": 1, "request": 1,
                               "verification": 1}


def test_bad_since_is_a_usage_error(log_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(log_path), "--since", "yesterday"])
    assert result.exit_code == 2
    assert ("Invalid value for --since: --since 'yesterday': expected a duration like "
            "30m/2h/1d, epoch seconds or an ISO 8601 time") in result.output


def test_tampered_log_is_refused_with_the_verify_error(log_path: Path) -> None:
    lines = log_path.read_bytes().splitlines(keepends=True)
    # Turn the failed outcome (seq 8) into a success: the scorecard would look better.
    assert b'"result":"failed"' in lines[7]
    lines[7] = lines[7].replace(b'"result":"failed"', b'"result":"success"')
    log_path.write_bytes(b"".join(lines))
    result = CliRunner().invoke(main, ["report", str(log_path)])
    assert result.exit_code == 1
    assert result.output == (f"{log_path}: TAMPERED: record 8 (line 8): hash mismatch "
                             "(record edited)\n")
    skipped = CliRunner().invoke(main, ["report", str(log_path), "--json", "--no-verify"])
    assert skipped.exit_code == 0, skipped.output
    assert orjson.loads(skipped.output)["automation_error_rate"] == 0.0


def test_truncated_log_is_refused_with_the_verify_error(log_path: Path) -> None:
    lines = log_path.read_bytes().splitlines(keepends=True)
    log_path.write_bytes(b"".join(lines[:-1]))  # the head file still names seq 10
    result = CliRunner().invoke(main, ["report", str(log_path)])
    assert result.exit_code == 1
    assert result.output == (f"{log_path}: TAMPERED: file ends at seq 9 but head says 10 "
                             "(truncated)\n")


def test_unparseable_line_without_verify_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq": 1, "kind": "page", "ts": 1.0, "body": {}}\nnot json\n')
    result = CliRunner().invoke(main, ["report", str(path), "--no-verify"])
    assert result.exit_code == 1
    assert result.output == f"{path}: line 2: not a JSON object\n"
