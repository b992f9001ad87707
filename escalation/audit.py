"""Tamper-evident audit log: append-only JSON Lines, each record hash-chained to the last.

One record per line, serialised canonically (orjson, sorted keys)::

    {"body": {...}, "hash": H, "kind": "decision", "prev": P, "seq": 7, "ts": 1764132000.25}

- ``hash`` is the sha256 of the canonical JSON of the record without ``hash``: an edited
  record no longer matches it;
- ``prev`` is the sha256 of the previous line's bytes (newline excluded; 64 zeros for the
  first): a deleted or moved record breaks the link after it;
- ``seq`` counts from 1 with no gaps, so deletions and reorderings name themselves;
- a line must equal the canonical serialisation of what it parses to, so even a byte that
  JSON ignores (whitespace, an escape) cannot change unnoticed.

Dropping the last records leaves a valid chain, so the writer also keeps ``<path>.head``
(atomically replaced on every flush) holding the last seq and hash; :func:`verify` checks
the file reaches it. The head may lag the file by one flush after a crash (the log is
fsynced first), never lead it.

Whoever can write the file can also rewrite the whole chain and its head. Given a
:class:`~escalation.audit_signing.Signer`, the writer therefore adds a signed ``checkpoint``
record every ``checkpoint_every`` records (at the next flush) and on close: an ordinary
chained record whose body names the record before it (``covers_seq``, and ``covers_hash``,
the line hash the next ``prev`` uses), the ``key_id`` and an Ed25519 ``sig`` over the
canonical JSON of those three. ``verify(path, public_keys)`` checks every checkpoint; a
rewritten chain cannot carry valid checkpoints without the private key.

An ``on_flush`` listener hears of each record once it is durable (after the fsync and the
head file), with the exact line bytes, so a mirror (``hotpath.audit_mirror``) can copy the
chain elsewhere without re-serialising it.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl"
>>> with AuditLog(path, clock=lambda: 1764132000.25) as log:
...     log.append("decision", {"finding": "f1", "kind": "page"}).seq
1
>>> verify(path)
VerifyReport(ok=True, records=1, first_bad=None, seq=1, reason=None, checkpoints=0)
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson

from escalation.audit_signing import Signer, Verifier, checkpoint_message, checkpoint_problem
from escalation.errors import AuditError, AuditVerifyError
from escalation.fsync import fsync_dir

ZERO_HASH = "0" * 64
_OPTS = orjson.OPT_SORT_KEYS
_FIELDS = ("body", "hash", "kind", "prev", "seq", "ts")
_HEX = frozenset("0123456789abcdef")
# Reading the last line backwards: one chunk holds any realistic record, so opening a log of
# any size costs one small read.
_TAIL_CHUNK = 64 * 1024
CHECKPOINT = "checkpoint"
# One signature per thousand records keeps signing far below the cost of the fsync it rides
# on, while a rewrite must still forge a checkpoint within every thousand records.
DEFAULT_CHECKPOINT_EVERY = 1000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One record; ``line`` is its exact bytes in the file, newline included."""

    seq: int
    ts: float
    kind: str
    body: dict[str, Any]
    prev: str
    hash: str
    line: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Head:
    """The anchor kept beside the log: where the file must at least reach."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """``seq``: the last record's seq when ok, else the offending record's seq if readable.

    ``first_bad`` is the 1-based line number of the first bad line (for a truncated file,
    the first missing line); ``records`` counts the lines that verified before it, and
    ``checkpoints`` the checkpoint records among them (signature-checked when keys were
    given).
    """

    ok: bool
    records: int
    first_bad: int | None = None
    seq: int | None = None
    reason: str | None = None
    checkpoints: int = 0


class _BadLine(Exception):
    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seq = seq


def head_path(path: Path) -> Path:
    """``audit.jsonl`` → ``audit.jsonl.head``.

    >>> head_path(Path("/var/log/audit.jsonl")).name
    'audit.jsonl.head'
    """
    return path.with_name(path.name + ".head")


def _is_hash(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and _HEX.issuperset(v)


def _parse(content: bytes) -> AuditRecord:
    """One line without its newline → the record, or _BadLine saying what is wrong."""
    try:
        obj = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise _BadLine("not valid JSON") from None
    if not isinstance(obj, dict):
        raise _BadLine("not a JSON object")
    seq = obj.get("seq")
    known = seq if type(seq) is int else None
    for name in _FIELDS:
        if name not in obj:
            raise _BadLine(f"missing field {name!r}", known)
    extra = sorted(set(obj) - set(_FIELDS))
    if extra:
        raise _BadLine(f"unexpected field {extra[0]!r}", known)
    ts = obj["ts"]
    if known is None:
        raise _BadLine("field 'seq' is not an integer")
    if type(ts) not in (int, float):
        raise _BadLine("field 'ts' is not a number", known)
    if not isinstance(obj["kind"], str):
        raise _BadLine("field 'kind' is not a string", known)
    if not isinstance(obj["body"], dict):
        raise _BadLine("field 'body' is not an object", known)
    for name in ("prev", "hash"):
        if not _is_hash(obj[name]):
            raise _BadLine(f"field {name!r} is not a sha256 hex digest", known)
    if orjson.dumps(obj, option=_OPTS) != content:
        raise _BadLine("line is not in canonical form (edited)", known)
    digest = obj.pop("hash")
    if hashlib.sha256(orjson.dumps(obj, option=_OPTS)).hexdigest() != digest:
        raise _BadLine("hash mismatch (record edited)", known)
    return AuditRecord(known, ts, obj["kind"], obj["body"], obj["prev"], digest, content + b"\n")


def _where(line: int, seq: int | None) -> str:
    return f"line {line}" if seq is None else f"record {seq} (line {line})"


def verify_lines(
    lines: Iterable[bytes],
    head: Head | None = None,
    verifiers: Mapping[str, Verifier] | None = None,
) -> VerifyReport:
    """Check a chain given as lines that keep their newline (as iterating a binary file does).

    With ``verifiers`` (by key id) every checkpoint's signature and coverage is checked too;
    without, checkpoints are only counted.

    >>> verify_lines([b'{"seq": 1}\\n']).reason
    "record 1 (line 1): missing field 'body'"
    """
    prev_line_hash, last_seq, line_no, cps = ZERO_HASH, 0, 0, 0
    for line_no, line in enumerate(lines, start=1):
        good = line_no - 1
        if not line.endswith(b"\n"):
            reason = "last line has no newline (truncated)"
            return VerifyReport(False, good, line_no, None, reason, cps)
        content = line[:-1]
        try:
            rec = _parse(content)
        except _BadLine as bad:
            reason = f"{_where(line_no, bad.seq)}: {bad.reason}"
            return VerifyReport(False, good, line_no, bad.seq, reason, cps)
        problem = None
        if rec.seq != last_seq + 1:
            problem = f"seq {rec.seq} follows {last_seq} (deleted or reordered)"
        elif rec.prev != prev_line_hash:
            problem = "prev does not match the previous record (deleted or reordered)"
        elif head is not None and rec.seq == head.seq and rec.hash != head.hash:
            problem = "hash differs from the head file (rewritten)"
        elif rec.kind == CHECKPOINT and verifiers is not None:
            problem = checkpoint_problem(rec.body, last_seq, prev_line_hash, verifiers)
        if problem is not None:
            reason = f"{_where(line_no, rec.seq)}: {problem}"
            return VerifyReport(False, good, line_no, rec.seq, reason, cps)
        cps += rec.kind == CHECKPOINT
        prev_line_hash, last_seq = hashlib.sha256(content).hexdigest(), rec.seq
    if head is not None and last_seq < head.seq:
        reason = f"file ends at seq {last_seq} but head says {head.seq} (truncated)"
        return VerifyReport(False, line_no, line_no + 1, None, reason, cps)
    return VerifyReport(True, line_no, None, last_seq or None, None, cps)


def read_head(path: Path) -> Head | None:
    """The head file beside ``path``; None when there is none; AuditError when unreadable."""
    try:
        raw = head_path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AuditError(f"{head_path(path)}: head file is not valid JSON") from None
    if (
        not isinstance(obj, dict)
        or type(obj.get("seq")) is not int
        or not _is_hash(obj.get("hash"))
    ):
        raise AuditError(f"{head_path(path)}: head file needs an integer 'seq' and a 'hash'")
    return Head(obj["seq"], obj["hash"])


def verify(path: Path, public_keys: Mapping[str, str] | None = None) -> VerifyReport:
    """Read ``path`` (and its head file if any) and report the first break in the chain.

    ``public_keys`` maps key id → base64 public key; when given, every checkpoint must be
    signed by one of them. A malformed key, or one filed under another key's id, is
    reported like an unreadable head file: nothing was checked.
    """
    verifiers: dict[str, Verifier] | None = None
    try:
        head = read_head(path)
        if public_keys is not None:
            verifiers = {}
            for key_id, public_b64 in public_keys.items():
                v = Verifier(public_b64, f"public key {key_id}")
                if v.key_id != key_id:
                    raise AuditError(f"public key {key_id}: its key id is {v.key_id}")
                verifiers[key_id] = v
    except AuditError as e:
        return VerifyReport(False, 0, None, None, str(e))
    try:
        with path.open("rb") as f:
            return verify_lines(f, head, verifiers)
    except FileNotFoundError:
        return verify_lines((), head, verifiers)


def _last_line(path: Path) -> bytes | None:
    """The file's last line with its newline (if it has one); None for an empty file."""
    with path.open("rb") as f:
        pos = f.seek(0, os.SEEK_END)
        tail = b""
        while pos > 0:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0:
                return tail[cut + 1 :]
        return tail or None


def _count_lines(path: Path) -> int:
    """Only on the error path: naming the broken line is worth one full read."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count if last == b"\n" else count + 1


def _cut_torn_tail(path: Path) -> int:
    """Drop a final line that lacks its newline, if the head file allows; bytes dropped.

    Lines are written whole (record + newline in one write) and the head file is updated
    only after the fsync, so a line without its newline that the head does not cover is a
    write a crash interrupted: its batch was never durable, its offsets never committed, and
    it will be decided again on replay. Keeping it would refuse every later start; dropping
    it loses nothing that was acknowledged. The caller records the cut in the chain itself.
    When the head covers it, the file was cut by someone else: it is left for ``_resume`` to
    refuse, untouched.
    """
    with path.open("r+b") as f:
        data_end = f.seek(0, os.SEEK_END)
        if data_end == 0:
            return 0
        f.seek(data_end - 1)
        if f.read(1) == b"\n":
            return 0
        pos, tail, keep = data_end, b"", 0
        while pos > 0:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            cut = tail.rfind(b"\n")
            if cut >= 0:
                keep = pos + cut + 1
                break
        head = read_head(path)
        if head is not None:
            before = _last_line_before(f, keep)
            try:
                kept_seq = _parse(before[:-1]).seq if before else 0
            except _BadLine:
                return 0  # a broken record before the torn one: not ours to repair
            if head.seq > kept_seq:
                return 0
        f.truncate(keep)
        os.fsync(f.fileno())
        return data_end - keep


def _last_line_before(f: BinaryIO, end: int) -> bytes:
    """The complete line (with newline) that ends at byte ``end``; b"" when none."""
    pos, tail = end, b""
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        f.seek(pos)
        tail = f.read(step) + tail
        cut = tail.rfind(b"\n", 0, len(tail) - 1)
        if cut >= 0:
            return tail[cut + 1 :]
    return tail


def _resume(path: Path) -> tuple[int, str, str | None]:
    """(last seq, sha256 of the last line, its kind) to continue from; refuses a broken end."""
    head = read_head(path)
    last = _last_line(path)
    seq, line_hash, kind = 0, ZERO_HASH, None
    if last is not None:
        if not last.endswith(b"\n"):
            raise AuditVerifyError(_count_lines(path), "last line has no newline (truncated)")
        try:
            rec = _parse(last[:-1])
        except _BadLine as bad:
            raise AuditVerifyError(_count_lines(path), bad.reason) from None
        if head is not None and rec.seq == head.seq and rec.hash != head.hash:
            raise AuditVerifyError(
                _count_lines(path), "hash differs from the head file (rewritten)"
            )
        seq, line_hash, kind = rec.seq, hashlib.sha256(last[:-1]).hexdigest(), rec.kind
    if head is not None and seq < head.seq:
        lines = _count_lines(path) if last is not None else 0
        raise AuditVerifyError(
            lines + 1, f"file ends at seq {seq} but head says {head.seq} (truncated)"
        )
    return seq, line_hash, kind


class AuditLog:
    """The single writer of one audit file: ``append`` buffers, ``flush`` makes it durable.

    The runtime flushes once per batch, before committing Kafka offsets. A failed flush
    closes the log to further writes: what reached the disk is unknown, and guessing could
    fork the chain.

    With a ``signer``, ``flush`` first appends a signed checkpoint once ``checkpoint_every``
    records have been appended since the last one, and ``close`` covers any records left.
    The count lives in memory: after a reopen it restarts, except that an uncovered tail
    left by the previous writer (a crash before its close) is covered at the next flush.

    ``on_flush`` is called at the end of every flush that wrote records, with those records
    in order (checkpoints included). They are durable by then, so the listener must not
    raise: an exception would reach the flush's caller though nothing failed to persist.
    """

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float],
        signer: Signer | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        on_flush: Callable[[Sequence[AuditRecord]], None] | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise AuditError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self._path = path
        self._clock = clock
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._on_flush = on_flush
        created = not path.exists()
        self._file = path.open("ab")
        try:
            # A second writer would fork the chain; the lock is released with the file.
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise AuditError(f"{path}: already open by another writer") from None
        try:
            torn = _cut_torn_tail(path)
            self._seq, self._prev, last_kind = _resume(path)
            if created:
                fsync_dir(path.parent)
        except BaseException:
            self._file.close()
            raise
        self._buf: list[bytes] = []
        self._recs: list[AuditRecord] = []  # the buffered records, kept only for on_flush
        self._last_hash = ""  # set by append; the head only changes after one
        self._broken: str | None = None
        # Records since the last checkpoint; a previous writer's uncovered tail counts as
        # "due" so it gets covered, however short it is.
        self._uncovered = 0
        self._inherited = last_kind not in (None, CHECKPOINT)
        if torn:
            self.append("recovery", {"torn_tail_bytes": torn,
                                     "detail": "a write interrupted by a crash was dropped"})
            self.flush()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def seq(self) -> int:
        """The seq of the last appended record (durable or not); 0 for an empty log."""
        return self._seq

    def append(self, kind: str, body: dict[str, Any]) -> AuditRecord:
        """Buffer one record; ``kind`` ``"checkpoint"`` is reserved for the writer itself."""
        if kind == CHECKPOINT:
            raise AuditError(f"kind {CHECKPOINT!r} is reserved for signed checkpoints")
        rec = self._append(kind, body)
        self._uncovered += 1
        return rec

    def _append(self, kind: str, body: dict[str, Any]) -> AuditRecord:
        self._usable()
        ts = self._clock()
        if not math.isfinite(ts):
            raise AuditError(f"clock returned {ts!r}; an audit timestamp must be finite")
        seq, prev = self._seq + 1, self._prev
        record: dict[str, Any] = {"body": body, "kind": kind, "prev": prev, "seq": seq, "ts": ts}
        try:
            digest = hashlib.sha256(orjson.dumps(record, option=_OPTS)).hexdigest()
        except orjson.JSONEncodeError as e:
            raise AuditError(f"audit {kind!r} record cannot be serialised: {e}") from None
        record["hash"] = digest
        line = orjson.dumps(record, option=_OPTS)
        self._buf.append(line + b"\n")
        self._seq, self._prev = seq, hashlib.sha256(line).hexdigest()
        self._last_hash = digest
        rec = AuditRecord(seq, ts, kind, body, prev, digest, self._buf[-1])
        if self._on_flush is not None:
            self._recs.append(rec)
        return rec

    def flush(self) -> None:
        """One write and one fsync of the buffered records, then the head file."""
        self._flush(closing=False)

    def _flush(self, closing: bool) -> None:
        self._usable()
        if self._signer is not None and (
            self._uncovered >= self._checkpoint_every
            or self._inherited
            or (closing and self._uncovered > 0)
        ):
            self._checkpoint(self._signer)
        if not self._buf:
            return
        try:
            self._file.write(b"".join(self._buf))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._write_head()
        except OSError as e:
            self._broken = f"flush failed: {e}"
            raise AuditError(f"{self._path}: {self._broken}") from e
        self._buf.clear()
        if self._on_flush is not None:
            durable, self._recs = self._recs, []
            self._on_flush(durable)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            if self._broken is None:
                self._flush(closing=True)
        finally:
            self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _checkpoint(self, signer: Signer) -> None:
        message = checkpoint_message(self._seq, self._prev, signer.key_id)
        self._append(CHECKPOINT, {
            "covers_hash": self._prev, "covers_seq": self._seq,
            "key_id": signer.key_id, "sig": signer.sign(message),
        })
        self._uncovered, self._inherited = 0, False

    def _usable(self) -> None:
        if self._file.closed:
            raise AuditError(f"{self._path}: audit log is closed")
        if self._broken is not None:
            raise AuditError(f"{self._path}: {self._broken}; no further writes")

    def _write_head(self) -> None:
        target = head_path(self._path)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(orjson.dumps({"hash": self._last_hash, "seq": self._seq}, option=_OPTS))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
