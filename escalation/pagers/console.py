"""A pager for the demo and for operators without a paging service: a file and/or a terminal.

>>> import io, tempfile
>>> from pathlib import Path
>>> from escalation.page import _example
>>> out = io.StringIO()
>>> path = Path(tempfile.mkdtemp()) / "pages.jsonl"
>>> import asyncio
>>> asyncio.run(ConsolePager(path, out).send(_example()))
>>> out.getvalue()
'PAGE [info] s (svc m, dedup hotpath-f1)\\n'
>>> path.read_bytes() == _example().to_json() + b"\\n"
True
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from escalation.errors import RetryableDeliveryError
from escalation.page import Page


class ConsolePager:
    """Appends one JSON line per page to ``path`` and/or prints a readable line to ``stream``.

    A full or unwritable disk raises :class:`RetryableDeliveryError`: the condition is
    usually transient (log rotation, space freed) and the page must not be dropped.
    """

    def __init__(
        self, path: Path | None = None, stream: TextIO | None = None, name: str = "console"
    ) -> None:
        if path is None and stream is None:
            raise ValueError("ConsolePager needs a path, a stream, or both")
        self._path = path
        self._stream = stream
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, page: Page) -> None:
        if self._path is not None:
            try:
                with self._path.open("ab") as fh:
                    fh.write(page.to_json() + b"\n")
            except OSError as e:
                raise RetryableDeliveryError(f"cannot append to {self._path}: {e}") from None
        if self._stream is not None:
            print(
                f"PAGE [{page.severity}] {page.summary} "
                f"({page.service} {page.metric}, dedup {page.dedup_key})",
                file=self._stream,
                flush=True,
            )
