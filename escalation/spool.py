"""The local on-disk spool: where pages go when the Redis outbox cannot take them.

Paging fails open: if Redis is down the page must still reach a human, so the outbox writes
it here and the sender delivers it from here. Three append-only files in ``dir``:

* ``pages.jsonl``     one page per line, appended and fsynced before :meth:`Spool.append`
  returns;
* ``delivered.txt``   one dedup key per line, appended and fsynced after delivery;
* ``dead.jsonl``      pages no pager would take, with the error (Redis down at that moment).

Crash safety: a torn last line (crash mid-write) is skipped on read and a newline is put in
front of the next append; :meth:`Spool.compact` rewrites ``pages.jsonl`` through a temp
file + ``os.replace`` and only then empties ``delivered.txt``, so a crash in between leaves
extra delivered keys, never lost pages. One process owns a spool directory; a lock makes it
safe across that process's threads.

>>> import tempfile
>>> from escalation.page import _example
>>> s = Spool(Path(tempfile.mkdtemp()))
>>> s.append([_example()])
>>> [p.dedup_key for p in s.pending()]
['hotpath-f1']
>>> s.mark_delivered("hotpath-f1")
>>> s.pending(), s.has_pending()
([], True)
>>> s.compact(); s.has_pending()
False
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from escalation.fsync import fsync_dir
from escalation.page import Page

log = logging.getLogger(__name__)


class Spool:
    """Append-only JSON Lines spool of undelivered pages (see the module docstring)."""

    def __init__(self, dir: Path) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pages_path = self.dir / "pages.jsonl"
        self.delivered_path = self.dir / "delivered.txt"
        self.dead_path = self.dir / "dead.jsonl"
        self._lock = threading.Lock()

    def append(self, pages: Sequence[Page]) -> None:
        """Append pages; they are on disk (fsynced) when this returns."""
        with self._lock:
            _append_lines(self.pages_path, (p.to_json() for p in pages))

    def has_pending(self) -> bool:
        """Cheap check (one stat) whether a drain is worth reading the files for."""
        try:
            return self.pages_path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def pending(self) -> list[Page]:
        """Spooled pages not yet delivered, once per dedup key, in spool order."""
        with self._lock:
            return self._pending()

    def mark_delivered(self, dedup_key: str) -> None:
        """Record that a spooled page was delivered (fsynced)."""
        with self._lock:
            _append_lines(self.delivered_path, [dedup_key.encode()])

    def compact(self) -> None:
        """Drop delivered pages from ``pages.jsonl`` and empty ``delivered.txt``."""
        with self._lock:
            keep = self._pending()
            _replace(self.pages_path, b"".join(p.to_json() + b"\n" for p in keep))
            _replace(self.delivered_path, b"")

    def append_dead(self, page: Page, error: str) -> None:
        """Keep a page no pager would take, with the error (fsynced)."""
        with self._lock:
            line = orjson.dumps({"page": page.to_dict(), "error": error})
            _append_lines(self.dead_path, [line])

    def dead(self) -> list[tuple[Page, str]]:
        """The dead pages with their errors, oldest first."""
        with self._lock:
            out = []
            for line in _lines(self.dead_path):
                try:
                    raw = orjson.loads(line)
                    out.append((Page.from_json(orjson.dumps(raw["page"])), str(raw["error"])))
                except (ValueError, KeyError, TypeError) as e:
                    log.warning("spool %s: skipping a torn dead line: %s", self.dead_path, e)
            return out

    def _pending(self) -> list[Page]:
        delivered = {line.decode() for line in _lines(self.delivered_path)}
        seen: set[str] = set()
        out: list[Page] = []
        for line in _lines(self.pages_path):
            try:
                page = Page.from_json(line)
            except ValueError as e:
                log.warning("spool %s: skipping a torn line: %s", self.pages_path, e)
                continue
            if page.dedup_key in delivered or page.dedup_key in seen:
                continue
            seen.add(page.dedup_key)
            out.append(page)
        return out


def _lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.split(b"\n") if line.strip()]


def _append_lines(path: Path, lines: Iterable[bytes]) -> None:
    created = not path.exists()
    with path.open("a+b") as fh:
        fh.seek(0, os.SEEK_END)
        prefix = b""
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = b"\n"  # the previous writer crashed mid-line: start clean
        fh.seek(0, os.SEEK_END)
        fh.write(prefix + b"".join(line + b"\n" for line in lines))
        fh.flush()
        os.fsync(fh.fileno())
    if created:
        fsync_dir(path.parent)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
