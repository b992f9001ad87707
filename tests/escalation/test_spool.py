"""Spool: fsynced append, torn-line recovery, delivered keys, compaction, dead pages."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from escalation.spool import Spool

from .test_pagers_webhook import PAGE

A = replace(PAGE, dedup_key="hotpath-a", finding_id="a")
B = replace(PAGE, dedup_key="hotpath-b", finding_id="b")


def test_pending_is_in_order_once_per_key_and_survives_reopening(tmp_path: Path) -> None:
    Spool(tmp_path).append([A, B])
    Spool(tmp_path).append([A])  # spooled twice (e.g. a replayed batch)
    assert Spool(tmp_path).pending() == [A, B]


def test_delivered_pages_are_not_pending_and_compaction_drops_them(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    s.append([A, B])
    s.mark_delivered("hotpath-a")
    assert s.pending() == [B]
    s.compact()
    assert s.pages_path.read_bytes() == B.to_json() + b"\n"
    assert s.delivered_path.read_bytes() == b""
    assert Spool(tmp_path).pending() == [B]


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_clean(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    s.append([A])
    with s.pages_path.open("ab") as fh:
        fh.write(B.to_json()[:40])  # crash mid-write
    assert s.pending() == [A]
    s.append([B])
    assert s.pending() == [A, B]


def test_has_pending_is_false_for_a_new_or_compacted_spool(tmp_path: Path) -> None:
    s = Spool(tmp_path / "new")
    assert not s.has_pending()
    s.append([A])
    assert s.has_pending()
    s.mark_delivered("hotpath-a")
    s.compact()
    assert not s.has_pending()


def test_dead_pages_keep_their_error(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    s.append_dead(A, "webhook: HTTP 400: bad")
    assert Spool(tmp_path).dead() == [(A, "webhook: HTTP 400: bad")]
