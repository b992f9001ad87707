"""The README's `hotpath policy test` examples print exactly what the README shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotpath.cli import main

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"```console\n\$ (hotpath policy test [^\n]+)\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    return _BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_examples_of_every_outcome() -> None:
    outcomes = {out.strip().splitlines()[-1] for _, out in examples()}
    assert outcomes == {"decision: would run", "decision: would wait for approval",
                        "decision: refused", "decision: dry run: recorded, not run"}


@pytest.mark.parametrize(("command", "expected"), examples(),
                         ids=[shlex.split(c)[3] for c, _ in examples()])
def test_readme_example(command: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    args = shlex.split(command)[1:]
    result = CliRunner().invoke(main, args)
    assert result.output == expected
    refused = expected.strip().endswith("decision: refused")
    assert result.exit_code == (1 if refused else 0)
