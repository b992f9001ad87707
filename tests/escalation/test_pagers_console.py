"""ConsolePager: one JSON line per page in a file, a readable line on a stream."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from escalation.errors import RetryableDeliveryError
from escalation.page import Page
from escalation.pagers.console import ConsolePager

from .test_pagers_webhook import PAGE


async def test_appends_json_lines_and_prints(tmp_path: Path) -> None:
    out = io.StringIO()
    pager = ConsolePager(tmp_path / "pages.jsonl", out)
    await pager.send(PAGE)
    await pager.send(PAGE)
    lines = (tmp_path / "pages.jsonl").read_bytes().splitlines()
    assert [Page.from_json(line) for line in lines] == [PAGE, PAGE]
    assert out.getvalue().splitlines()[0] == (
        "PAGE [critical] checkout error_ratio 0.21 vs baseline 0.004 (dev 12.3) — budget "
        "exhausted (checkout error_ratio, dedup hotpath-f1)"
    )


async def test_an_unwritable_file_is_retryable(tmp_path: Path) -> None:
    (tmp_path / "pages.jsonl").mkdir()  # a directory where the file should be
    with pytest.raises(RetryableDeliveryError, match=r"^cannot append to .*pages.jsonl: "):
        await ConsolePager(tmp_path / "pages.jsonl").send(PAGE)


def test_needs_somewhere_to_write() -> None:
    with pytest.raises(ValueError, match=r"^ConsolePager needs a path, a stream, or both$"):
        ConsolePager()
