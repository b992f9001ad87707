"""`hotpath audit show`: selecting one service's or region's timeline from the audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from escalation.audit import AuditLog
from hotpath.audit_show import parse_since, render, select
from hotpath.cli import main


def _rec(seq: int, ts: float, kind: str, service: str, region: str, **body: object) -> dict:
    return {"seq": seq, "ts": ts, "kind": kind,
            "body": {"where": {"service": service, "labels": {"region": region}}, **body}}


RECORDS = [
    _rec(1, 100.0, "decision", "checkout", "eu", decision="page", reasons=["no remediation rule"]),
    _rec(2, 200.0, "decision", "payments", "us", decision="act", reasons=["rule matched"],
         rule="scale", action="scale_out", target="deployment/payments"),
    {"seq": 3, "ts": 250.0, "kind": "automation",
     "body": {"paused": True, "actor": "alice", "reason": "bad deploy"}},
    {"seq": 4, "ts": 260.0, "kind": "checkpoint", "body": {}},
    _rec(5, 300.0, "outcome", "payments", "us", outcome="succeeded", status=202,
         rule="scale", action="scale_out", target="deployment/payments"),
]


@pytest.mark.parametrize(("service", "region", "since", "seqs"), [
    (None, None, None, [1, 2, 3, 5]),
    ("payments", None, None, [2, 3, 5]),
    (None, "eu", None, [1, 3]),
    ("payments", None, 250.0, [3, 5]),
    ("checkout", "us", None, [3]),
])
def test_select(service: str | None, region: str | None, since: float | None,
                seqs: list[int]) -> None:
    got = select(RECORDS, service=service, region=region, since=since)
    assert [r["seq"] for r in got] == seqs


def test_render_lines() -> None:
    assert render(RECORDS[1]) == ("1970-01-01T00:03:20Z  #2  decision payments/us  act: rule "
                                  "matched  scale → scale_out deployment/payments")
    assert render(RECORDS[2]) == "1970-01-01T00:04:10Z  #3  automation PAUSED by alice: bad deploy"
    assert render(RECORDS[4]).endswith("outcome succeeded (202)")


def test_parse_since_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError) as exc:
        parse_since("yesterday", now=0.0)
    assert str(exc.value) == ("--since 'yesterday': expected a duration like 30m/2h/1d, epoch "
                              "seconds or an ISO 8601 time")
    with pytest.raises(ValueError) as exc:
        parse_since("2026-11-26T05:00:00", now=0.0)
    assert str(exc.value) == ("--since '2026-11-26T05:00:00': an ISO 8601 time needs a zone "
                              "(e.g. Z)")


def test_cli_prints_the_timeline_of_a_service(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    clock = iter([100.0, 200.0, 300.0])
    with AuditLog(path, lambda: next(clock)) as log:
        for rec in (RECORDS[0], RECORDS[1], RECORDS[4]):
            log.append(rec["kind"], rec["body"])
        log.flush()
    res = CliRunner().invoke(main, ["audit", "show", str(path), "--service", "payments"])
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [render({**RECORDS[1], "seq": 2}),
                                       render({**RECORDS[4], "seq": 3, "ts": 300.0})]
    assert res.stderr == "2 records\n"
    bad = CliRunner().invoke(main, ["audit", "show", str(path), "--since", "soon"])
    assert bad.exit_code == 2
    assert "--since 'soon': expected a duration" in bad.output
