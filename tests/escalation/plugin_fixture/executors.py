"""Executors a plugin package might ship — and things that only look like one."""

from __future__ import annotations

from pathlib import Path

from escalation.executors.base import ActionRequest, ActionResult


class JournalExecutor:
    """Appends each action request as a JSON line to ``path``: a real, observable effect.

    >>> import asyncio, tempfile
    >>> path = Path(tempfile.mkdtemp()) / "journal.jsonl"
    >>> ex = JournalExecutor(path=str(path))
    >>> asyncio.run(ex.execute(ActionRequest("a", "t", "s", "f", "k", "r"))).detail
    'journal: line 1'
    """

    def __init__(self, path: str, name: str = "journal") -> None:
        self._path = Path(path)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def execute(self, req: ActionRequest) -> ActionResult:
        with self._path.open("ab") as f:
            f.write(req.to_json() + b"\n")
        lines = self._path.read_bytes().count(b"\n")
        return ActionResult(True, None, f"journal: line {lines}", 0.0)


class SyncExecutor:
    """Has ``name`` and ``execute`` but ``execute`` is not async: not an Executor."""

    name = "sync"

    def execute(self, req: ActionRequest) -> ActionResult:
        return ActionResult(True, None, "sync", 0.0)


NOT_A_FACTORY = 42
