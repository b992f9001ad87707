"""`hotpath demo` as a user runs it: embedded broker, real redis-server, the on-call
approving the failover a page asks for, the summary, and an audit log that verifies — and
stops verifying when one byte of one record changes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from hotpath.config import load_config
from hotpath.demo.incidents import EXPECT_ACT_AFTER_APPROVAL, default_incidents, last_end_s
from hotpath.demo.run import (
    EXAMPLE_CONFIG,
    REMEDIABLE_PROFILE,
    acting_services,
    demo_config,
    secret_names,
)

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
    assert summary["problems"] == []  # no bad signature, no refused page or approval
    assert [(i["incident"], i["met"]) for i in summary["incidents"]] == [
        (i.name, True) for i in default_incidents()]
    acted = [a for a in summary["actions"] if a["outcome"] == "succeeded"]
    assert {a["rule"] for a in acted} == {"restart-checkout", "scale-payments",
                                         "failover-shipping"}
    (budget,) = [r.budget for r in load_config(EXAMPLE_CONFIG).remediations
                 if r.name == "scale-payments"]
    assert budget is not None
    assert len([a for a in acted if a["rule"] == "scale-payments"]) == budget.limit
    last_reasons = {p["reasons"][-1] for p in summary["pages"]}
    assert {"no remediation rule", "budget exhausted", "approval required"} <= last_reasons

    # The failover: asked by automation, paged with links, approved by alice, then run.
    (approval,) = summary["approvals"]
    aid = approval["approval_id"]
    assert (approval["action"], approval["target"], approval["requested_by"],
            approval["state"], approval["decided_by"], approval["refusals"]) == (
        "failover_region", "service/shipping", "automation:failover-shipping", "approved",
        "human:alice", [])
    assert approval["latency_s"] >= 1.5  # the on-call's human moment comes first
    (asking,) = [p for p in summary["pages"] if "approve" in p["links"]]
    # Every incident's first page carries a one-click ack link (the approval ask goes out
    # as it is, outside the grouping, with its approve/deny links).
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/v1/incidents/inc_[0-9a-f]{16}/ack",
                            p["links"]["ack"])
               for p in summary["pages"] if "approve" not in p["links"])
    assert asking["service"] == "shipping"
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/v1/approvals/{aid}/approve\?token=\S+",
                        asking["links"]["approve"])
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/v1/approvals/{aid}/deny\?token=\S+",
                        asking["links"]["deny"])
    (failover,) = [a for a in acted if a["rule"] == "failover-shipping"]
    assert (failover["approval_id"], failover["approver"]) == (aid, "human:alice")
    assert [e["kind"] for e in summary["fleet_events"] if e["incident"] == "shipping-queue"] == [
        "started", "healed"]
    assert [(a["approval_id"], a["status"], a["approver"]) for a in summary["on_call"]] == [
        (aid, 200, "human:alice")]
    assert re.search(rf"^on-call human:alice approved {aid} \(failover_region "
                     rf"service/shipping\) after \d+\.\d s$", run.stdout, re.M), run.stdout
    assert f"  shipping-queue    {EXPECT_ACT_AFTER_APPROVAL}: yes" in run.stdout
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


def test_demo_config_covers_shipping_and_mints_links_for_its_api(tmp_path: Path) -> None:
    base = load_config(EXAMPLE_CONFIG)
    cfg = demo_config(base, bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0",
                      action_url="http://127.0.0.1:3/actions",
                      page_url="http://127.0.0.1:4/pages", out_dir=tmp_path, api_port=5,
                      remediable=acting_services(default_incidents()))
    (before,) = [p for p in base.detectors.profiles if p.name == REMEDIABLE_PROFILE]
    (after,) = [p for p in cfg.detectors.profiles if p.name == REMEDIABLE_PROFILE]
    assert after.match.matches("shipping", "queue_depth", {"region": "us-east-1"})
    assert after.match.service == ("checkout", "payments", "shipping")
    assert after.detectors == before.detectors
    assert [p.name for p in cfg.detectors.profiles] == [p.name for p in base.detectors.profiles]
    assert (cfg.api.enabled, cfg.api.port, cfg.api.public_url) == (
        True, 5, "http://127.0.0.1:5/v1")
    assert secret_names(cfg) == ["HOTPATH_APPROVAL_SECRET", "HOTPATH_WEBHOOK_SECRET"]


def test_demo_refuses_a_duration_too_short_for_its_incidents(tmp_path: Path) -> None:
    run = _hotpath("demo", "--duration", "20", "--out", str(tmp_path / "o"))
    assert run.returncode == 2
    assert f"--duration must be at least {last_end_s(default_incidents()) + 5:.0f}s" in run.stderr
