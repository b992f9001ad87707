"""The built-in ``jsonl`` plugin: record each action request as one fsynced JSON line.

For actions whose effect is the record itself (a change log a person or another system
applies), for staging, and as the reference plugin: hotpath's own ``pyproject.toml``
registers it in the ``hotpath.executors`` entry-point group, so the catalogue names it
``plugin:jsonl`` exactly as it would a third-party executor.

>>> import asyncio, tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "changes.jsonl"
>>> ex = JsonlExecutor(path=str(path))
>>> asyncio.run(ex.execute(ActionRequest("record_change", "t", "s", "f", "k1", "r"))).detail
'jsonl: recorded k1'
>>> asyncio.run(ex.execute(ActionRequest("record_change", "t", "s", "f", "k1", "r"))).detail
'jsonl: k1 recorded before'
>>> len(path.read_bytes().splitlines())
1
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

from escalation.executors.base import ActionRequest, ActionResult


class JsonlExecutor:
    """Appends ``request`` lines to ``path``; an idempotency key already there is not
    written again, so a retried or replayed request leaves one line."""

    def __init__(self, path: str, name: str = "jsonl") -> None:
        self._path = Path(path)
        self._name = name
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self._name

    def _seen(self, key: str) -> bool:
        if not self._path.exists():
            return False
        with self._path.open("rb") as f:
            return any(orjson.loads(line).get("idempotency_key") == key
                       for line in f if line.strip())

    def _append(self, req: ActionRequest) -> str:
        if self._seen(req.idempotency_key):
            return f"{self._name}: {req.idempotency_key} recorded before"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("ab") as f:
            f.write(req.to_json() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return f"{self._name}: recorded {req.idempotency_key}"

    async def execute(self, req: ActionRequest) -> ActionResult:
        async with self._lock:  # one writer per file within the process
            detail = await asyncio.to_thread(self._append, req)
        return ActionResult(True, None, detail, 0.0)
