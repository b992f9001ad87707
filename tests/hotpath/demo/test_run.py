"""`hotpath demo` as a user runs it: embedded broker, real redis-server, the summary, and an
audit log that verifies — and stops verifying when one byte of one record changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from hotpath.demo.incidents import default_incidents, last_end_s

DURATION = last_end_s(default_incidents()) + 6  # the shortest run the demo accepts, plus 1s


def _hotpath(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotpath.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_demo_acts_pages_and_leaves_a_verifiable_audit_log(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = _hotpath("demo", "--duration", str(DURATION), "--out", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "=== hotpath demo summary ===" in run.stdout

    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["expectations_missing"] == []
    acted = [a for a in summary["actions"] if a["outcome"] == "succeeded"]
    assert {a["rule"] for a in acted} == {"restart-checkout", "scale-payments"}
    assert len([a for a in acted if a["rule"] == "scale-payments"]) == 2  # its budget
    last_reasons = {p["reasons"][-1] for p in summary["pages"]}
    assert {"no remediation rule", "budget exhausted"} <= last_reasons
    assert summary["dlq"] == {"not json": 1, "not an object": 1, "missing field": 1}
    pages = [orjson.loads(line) for line in (out / "pages.jsonl").read_bytes().splitlines()]
    assert [p["dedup_key"] for p in pages] == [p["dedup_key"] for p in summary["pages"]]

    audit = out / "audit.jsonl"
    ok = _hotpath("audit", "verify", str(audit))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{audit}: ok, ")

    # One byte of the third record changed: verify fails and names that record.
    lines = audit.read_bytes().splitlines(keepends=True)
    third = bytearray(lines[2])
    i = third.index(b'"seq":') + len(b'"seq":')
    third[i] = ord("9") if third[i] != ord("9") else ord("8")
    audit.write_bytes(b"".join([*lines[:2], bytes(third), *lines[3:]]))
    bad = _hotpath("audit", "verify", str(audit))
    assert bad.returncode == 1
    assert "line 3" in bad.stderr and "TAMPERED" in bad.stderr, bad.stderr


def test_demo_refuses_a_duration_too_short_for_its_incidents(tmp_path: Path) -> None:
    run = _hotpath("demo", "--duration", "20", "--out", str(tmp_path / "o"))
    assert run.returncode == 2
    assert f"--duration must be at least {last_end_s(default_incidents()) + 5:.0f}s" in run.stderr
