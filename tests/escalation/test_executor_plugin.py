"""load_executor through real entry points: a ``*.dist-info`` written to tmp_path points at
the ``plugin_fixture`` package, exactly as an installed plugin distribution would."""

from __future__ import annotations

from pathlib import Path

import pytest

from escalation.errors import PluginError
from escalation.executors.base import ActionRequest
from escalation.executors.plugin import available, is_executor, load_executor

HERE = Path(__file__).parent
REQ = ActionRequest("restart_pods", "checkout-eu", "checkout", "f1", "restart:f1", "restart")

ENTRY_POINTS = """\
[hotpath.executors]
journal = plugin_fixture.executors:JournalExecutor
sync = plugin_fixture.executors:SyncExecutor
number = plugin_fixture.executors:NOT_A_FACTORY
missing = plugin_fixture.not_there:Executor
typo = plugin_fixture.executors:JournalExecuter

[some.other.group]
stray = plugin_fixture.executors:JournalExecutor
"""


def install(site: Path, dist: str, entry_points: str) -> None:
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install(tmp_path, "acme_hotpath_plugins", ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(HERE))  # where the plugin package itself lives
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


async def test_loads_and_runs_a_plugin(site: Path) -> None:
    journal = site / "journal.jsonl"
    ex = load_executor("journal", path=str(journal), name="ticketing")
    assert ex.name == "ticketing" and is_executor(ex)
    result = await ex.execute(REQ)
    assert (result.ok, result.detail) == (True, "journal: line 1")
    assert journal.read_bytes() == REQ.to_json() + b"\n"


async def test_the_built_in_jsonl_plugin_loads_through_its_entry_point(tmp_path: Path) -> None:
    ex = load_executor("jsonl", path=str(tmp_path / "changes.jsonl"))
    assert ex.name == "jsonl" and is_executor(ex)
    assert (await ex.execute(REQ)).detail == f"jsonl: recorded {REQ.idempotency_key}"
    assert (await ex.execute(REQ)).detail == f"jsonl: {REQ.idempotency_key} recorded before"
    assert (tmp_path / "changes.jsonl").read_bytes() == REQ.to_json() + b"\n"


def test_available_lists_the_group_only(site: Path) -> None:
    # hotpath's own pyproject registers the built-in jsonl executor in the same group.
    assert available() == ["journal", "jsonl", "missing", "number", "sync", "typo"]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [("ticket", {},
      "executor plugin 'ticket': no entry point of that name in group 'hotpath.executors' "
      "(journal, jsonl, missing, number, sync, typo)"),
     ("stray", {},
      "executor plugin 'stray': no entry point of that name in group 'hotpath.executors' "
      "(journal, jsonl, missing, number, sync, typo)"),
     ("missing", {},
      "executor plugin 'missing': loading 'plugin_fixture.not_there:Executor' failed: "
      "ModuleNotFoundError: No module named 'plugin_fixture.not_there'"),
     ("typo", {},
      "executor plugin 'typo': loading 'plugin_fixture.executors:JournalExecuter' failed: "
      "AttributeError: module 'plugin_fixture.executors' has no attribute 'JournalExecuter'"),
     ("number", {},
      "executor plugin 'number': 'plugin_fixture.executors:NOT_A_FACTORY' is a int, "
      "not a factory"),
     ("journal", {},
      "executor plugin 'journal': building 'plugin_fixture.executors:JournalExecutor' failed: "
      "TypeError: JournalExecutor.__init__() missing 1 required positional argument: 'path'"),
     ("sync", {},
      "executor plugin 'sync': 'plugin_fixture.executors:SyncExecutor' gave a SyncExecutor, "
      "which is not an Executor (needs a str 'name' and an async 'execute(req)')")],
)
def test_errors_say_what_went_wrong(
    site: Path, name: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(PluginError) as info:
        load_executor(name, **options)
    assert str(info.value) == message


def test_a_name_claimed_by_two_distributions_is_refused(site: Path) -> None:
    install(site, "other_plugins",
            "[hotpath.executors]\njournal = other_plugins.journal:Journal\n")
    with pytest.raises(PluginError) as info:
        load_executor("journal", path="unused")
    assert str(info.value) == (
        "executor plugin 'journal': defined more than once, as "
        "other_plugins.journal:Journal, plugin_fixture.executors:JournalExecutor")


def test_nothing_installed_says_so() -> None:
    with pytest.raises(PluginError) as info:
        load_executor("journal", "hotpath.executors.none-here")
    assert str(info.value) == (
        "executor plugin 'journal': no entry point of that name in group "
        "'hotpath.executors.none-here' (none installed)")
