"""``hotpath page render``: the payload each adapter would send for a recorded page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
from click.testing import CliRunner

from escalation.page import Page
from hotpath.cli import main

PAGE = Page("hotpath-inc_1", "search error_ratio 0.21 vs baseline 0.002 — no remediation rule",
            "critical", "search", "error_ratio", {"region": "us-east-1"}, 0.21, 0.002, 90.0,
            0.99, ("spike",), ("no remediation rule",), (0.002, 0.21), "f1", 1764200000.0,
            1764200001.0, None, links={"console": "http://127.0.0.1:8088/chart?series=s"},
            incident_key="inc_1", context={"owner": {"team": "discovery"}, "sparkline": "▁▁█"})


def write(tmp_path: Path, *pages: Page) -> Path:
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b"".join(p.to_json() + b"\n" for p in pages))
    return path


def test_every_adapter_renders_the_matching_page(tmp_path: Path) -> None:
    other = replace(PAGE, service="checkout", dedup_key="hotpath-inc_2", incident_key="inc_2",
                    summary="checkout error_ratio 0.3 vs baseline 0.004")
    path = write(tmp_path, PAGE, other)
    run = CliRunner().invoke
    pd = run(main, ["page", "render", str(path), "--as", "pagerduty", "--match", "search"])
    event = orjson.loads(pd.stdout)
    assert (pd.exit_code, event["event_action"], event["dedup_key"], event["routing_key"]) == (
        0, "trigger", "inc_1", "R" * 32)
    assert event["payload"]["custom_details"]["owner"] == {"team": "discovery"}
    slack = orjson.loads(run(main, ["page", "render", str(path), "--as", "slack"]).stdout)
    assert slack["blocks"][0]["text"]["text"].endswith("checkout error_ratio")  # the last
    text = run(main, ["page", "render", str(path), "--as", "slack-text", "--match", "inc_1"])
    assert text.stdout.splitlines()[0] == "[CRITICAL] search error_ratio"
    og = orjson.loads(run(main, ["page", "render", str(path), "--as", "opsgenie"]).stdout)
    assert (og["alias"], og["priority"]) == ("inc_2", "P1")
    am = orjson.loads(run(main, ["page", "render", str(path), "--as", "alertmanager"]).stdout)
    assert am["labels"]["hotpath_incident"] == "inc_2"


def test_no_match_and_a_bad_line_say_so(tmp_path: Path) -> None:
    path = write(tmp_path, PAGE)
    run = CliRunner().invoke
    none = run(main, ["page", "render", str(path), "--as", "slack", "--match", "nope"])
    assert (none.exit_code, none.stderr) == (1, "hotpath page render: no page matches 'nope'\n")
    path.write_bytes(PAGE.to_json() + b"\n{\"dedup_key\": 1}\n")
    bad = run(main, ["page", "render", str(path), "--as", "slack"])
    assert (bad.exit_code, bad.stderr) == (
        1, f"hotpath page render: {path}: line 2: page: missing field 'summary'\n")
