"""The audit log's hash chain: every kind of tampering is found and named, with its line."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from escalation.audit import (
    ZERO_HASH,
    AuditLog,
    Head,
    VerifyReport,
    head_path,
    read_head,
    verify,
    verify_lines,
)
from escalation.audit_signing import Signer, Verifier, checkpoint_message
from escalation.errors import AuditError, AuditVerifyError


def ticking() -> Callable[[], float]:
    ticks = itertools.count(1)
    return lambda: 1764132000.0 + next(ticks) / 4


def write_log(path: Path, n: int, flush_every: int = 7) -> None:
    with AuditLog(path, ticking()) as log:
        for i in range(1, n + 1):
            body = {"finding": f"f{i}", "n": 10000 + i, "reasons": ["rule matched"]}
            log.append("decision", body)
            if i % flush_every == 0:
                log.flush()


def split(data: bytes) -> list[bytes]:
    """Lines as iterating a binary file gives them: split on b"\\n" only, newline kept."""
    return list(io.BytesIO(data))


def lines(path: Path) -> list[bytes]:
    return split(path.read_bytes())


def put_lines(path: Path, new: list[bytes]) -> None:
    path.write_bytes(b"".join(new))


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def forge(line: bytes, **changes: Any) -> bytes:
    """What a careful attacker writes: the changed record with its hash recomputed."""
    rec = orjson.loads(line)
    rec.pop("hash")
    rec.update(changes)
    rec["hash"] = hashlib.sha256(canonical(rec)).hexdigest()
    return canonical(rec) + b"\n"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_log(path, 20)
    return path


def test_good_file_passes(log_path: Path) -> None:
    assert verify(log_path) == VerifyReport(True, 20, None, 20, None)
    first, second = (orjson.loads(x) for x in lines(log_path)[:2])
    assert first["prev"] == ZERO_HASH
    assert second["prev"] == hashlib.sha256(lines(log_path)[0][:-1]).hexdigest()
    assert read_head(log_path) == Head(20, orjson.loads(lines(log_path)[-1])["hash"])


def test_empty_and_missing_files_pass(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert verify(tmp_path / "empty.jsonl") == VerifyReport(True, 0, None, None, None)
    assert verify(tmp_path / "none.jsonl") == VerifyReport(True, 0, None, None, None)


@pytest.mark.parametrize("k", [1, 9, 20])
def test_flipped_digit_in_a_body_is_a_hash_mismatch(log_path: Path, k: int) -> None:
    ls = lines(log_path)
    ls[k - 1] = ls[k - 1].replace(b'"n":%d' % (10000 + k), b'"n":%d' % (20000 + k))
    put_lines(log_path, ls)
    assert verify(log_path) == VerifyReport(
        False, k - 1, k, k, f"record {k} (line {k}): hash mismatch (record edited)"
    )


@pytest.mark.parametrize("k", [1, 9, 20])
def test_deleted_record(log_path: Path, k: int) -> None:
    ls = lines(log_path)
    del ls[k - 1]
    put_lines(log_path, ls)
    report = verify(log_path)
    if k == 20:  # dropping the last record is a truncation: only the head file can tell
        assert report == VerifyReport(
            False, 19, 20, None, "file ends at seq 19 but head says 20 (truncated)"
        )
        return
    assert report == VerifyReport(
        False, k - 1, k, k + 1,
        f"record {k + 1} (line {k}): seq {k + 1} follows {k - 1} (deleted or reordered)",
    )


def test_swapped_records(log_path: Path) -> None:
    ls = lines(log_path)
    ls[4], ls[5] = ls[5], ls[4]
    put_lines(log_path, ls)
    assert verify(log_path).reason == "record 6 (line 5): seq 6 follows 4 (deleted or reordered)"
    assert verify(log_path).first_bad == 5


def test_edited_record_with_recomputed_hash_breaks_the_next_prev(log_path: Path) -> None:
    ls = lines(log_path)
    ls[6] = forge(ls[6][:-1], body={"finding": "f7", "n": 0, "reasons": ["forged"]})
    put_lines(log_path, ls)
    assert verify(log_path) == VerifyReport(
        False, 7, 8, 8,
        "record 8 (line 8): prev does not match the previous record (deleted or reordered)",
    )


def test_rewritten_tail_is_caught_only_by_the_head(log_path: Path) -> None:
    ls = lines(log_path)
    prev = hashlib.sha256(ls[16][:-1]).hexdigest()
    for i in range(17, 20):  # re-chain records 18..20 with a changed body
        ls[i] = forge(ls[i][:-1], body={"forged": i}, prev=prev)
        prev = hashlib.sha256(ls[i][:-1]).hexdigest()
    put_lines(log_path, ls)
    assert verify(log_path) == VerifyReport(
        False, 19, 20, 20, "record 20 (line 20): hash differs from the head file (rewritten)"
    )
    head_path(log_path).unlink()
    assert verify(log_path).ok


def test_truncated_tail_with_and_without_head(log_path: Path) -> None:
    put_lines(log_path, lines(log_path)[:15])
    assert verify(log_path) == VerifyReport(
        False, 15, 16, None, "file ends at seq 15 but head says 20 (truncated)"
    )
    head_path(log_path).unlink()
    # Without the anchor a shorter chain is a valid chain: the limit the head file exists for.
    assert verify(log_path) == VerifyReport(True, 15, None, 15, None)


@pytest.mark.parametrize("cut", [1, 40])
def test_torn_last_line(log_path: Path, cut: int) -> None:
    data = log_path.read_bytes()
    log_path.write_bytes(data[:-cut])
    assert verify(log_path) == VerifyReport(
        False, 19, 20, None, "last line has no newline (truncated)"
    )


def record5(log_path: Path) -> dict[str, Any]:
    rec: dict[str, Any] = orjson.loads(lines(log_path)[4])
    return rec


R5 = "record 5 (line 5): "
NOT_CANONICAL = R5 + "line is not in canonical form (edited)"


@pytest.mark.parametrize(
    ("line5", "seq", "reason"),
    [
        (lambda r: b"garbage", None, "line 5: not valid JSON"),
        (lambda r: b"", None, "line 5: not valid JSON"),
        (lambda r: b"[1, 2]", None, "line 5: not a JSON object"),
        (lambda r: canonical({k: v for k, v in r.items() if k != "prev"}), 5,
         R5 + "missing field 'prev'"),
        (lambda r: canonical({**r, "actor": "mallory"}), 5, R5 + "unexpected field 'actor'"),
        (lambda r: canonical({**r, "seq": "5"}), None, "line 5: field 'seq' is not an integer"),
        (lambda r: canonical({**r, "ts": "now"}), 5, R5 + "field 'ts' is not a number"),
        (lambda r: canonical({**r, "kind": 3}), 5, R5 + "field 'kind' is not a string"),
        (lambda r: canonical({**r, "body": []}), 5, R5 + "field 'body' is not an object"),
        (lambda r: canonical({**r, "prev": "abc"}), 5,
         R5 + "field 'prev' is not a sha256 hex digest"),
        (lambda r: orjson.dumps(dict(reversed(r.items()))), 5, NOT_CANONICAL),
        (lambda r: canonical(r).replace(b'"seq":5', b'"seq": 5'), 5, NOT_CANONICAL),
    ],
)
def test_malformed_line(
    log_path: Path, line5: Callable[[dict[str, Any]], bytes], seq: int | None, reason: str
) -> None:
    ls = lines(log_path)
    ls[4] = line5(record5(log_path)) + b"\n"
    put_lines(log_path, ls)
    assert verify(log_path) == VerifyReport(False, 4, 5, seq, reason)


def test_unreadable_head_file(log_path: Path) -> None:
    head_path(log_path).write_bytes(b"{")
    assert verify(log_path) == VerifyReport(
        False, 0, None, None, f"{head_path(log_path)}: head file is not valid JSON"
    )
    head_path(log_path).write_bytes(b'{"seq": "7"}')
    assert verify(log_path).reason == (
        f"{head_path(log_path)}: head file needs an integer 'seq' and a 'hash'"
    )


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    with AuditLog(path, ticking()) as log:
        assert log.seq == 3
        rec = log.append("outcome", {"ok": True})
        assert (rec.seq, rec.prev) == (4, hashlib.sha256(lines(path)[2][:-1]).hexdigest())
        log.append("outcome", {"ok": False})
    assert verify(path) == VerifyReport(True, 5, None, 5, None)
    assert read_head(path) == Head(5, orjson.loads(lines(path)[4])["hash"])


def reopen_error(path: Path) -> AuditVerifyError:
    with pytest.raises(AuditVerifyError) as err:
        AuditLog(path, ticking())
    return err.value


def test_reopen_refuses_a_broken_end(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    good = path.read_bytes()

    path.write_bytes(good[:-1])
    err = reopen_error(path)
    assert (err.line, err.reason) == (5, "last line has no newline (truncated)")
    assert str(err) == "line 5: last line has no newline (truncated)"

    path.write_bytes(good.replace(b'"n":10005', b'"n":10006'))
    err = reopen_error(path)
    assert (err.line, err.reason) == (5, "hash mismatch (record edited)")

    put_lines(path, split(good)[:3])
    err = reopen_error(path)
    assert (err.line, err.reason) == (4, "file ends at seq 3 but head says 5 (truncated)")

    path.unlink()  # a deleted log with its head still there is not a fresh start
    err = reopen_error(path)
    assert (err.line, err.reason) == (1, "file ends at seq 0 but head says 5 (truncated)")


def test_nothing_reaches_the_file_before_flush(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, ticking())
    log.append("intent", {"action": "restart_pods"})
    assert path.read_bytes() == b""
    assert not head_path(path).exists()
    log.flush()
    assert len(lines(path)) == 1
    assert read_head(path) == Head(1, orjson.loads(lines(path)[0])["hash"])
    log.append("outcome", {"ok": True})
    log.close()  # close flushes
    assert verify(path) == VerifyReport(True, 2, None, 2, None)
    with pytest.raises(AuditError, match="audit log is closed"):
        log.append("outcome", {})


def test_one_writer_per_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, ticking()), pytest.raises(AuditError) as err:
        AuditLog(path, ticking())
    assert str(err.value) == f"{path}: already open by another writer"
    AuditLog(path, ticking()).close()  # the lock goes with the first writer


def test_bad_input_to_append(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.jsonl", lambda: float("nan")) as log, pytest.raises(
        AuditError
    ) as err:
        log.append("decision", {})
    assert str(err.value) == "clock returned nan; an audit timestamp must be finite"
    with AuditLog(tmp_path / "b.jsonl", ticking()) as log:
        with pytest.raises(AuditError) as err:
            log.append("decision", {"x": object()})
        assert str(err.value) == (
            "audit 'decision' record cannot be serialised: Type is not JSON serializable: object"
        )
        assert log.seq == 0  # the failed record took no seq


def test_thousands_of_records_in_one_flush(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, ticking()) as log:
        for i in range(5000):
            log.append("decision", {"i": i})
    assert verify(path) == VerifyReport(True, 5000, None, 5000, None)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
bodies = st.lists(st.dictionaries(st.text(), json_values, max_size=5), min_size=1, max_size=6)


def written(body_list: list[dict[str, Any]]) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audit.jsonl"
        with AuditLog(path, ticking()) as log:
            for body in body_list:
                log.append("decision", body)
        return path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body_list=bodies, data=st.data())
def test_any_single_byte_change_is_caught(
    body_list: list[dict[str, Any]], data: st.DataObject
) -> None:
    good = written(body_list)
    assert verify_lines(split(good)).ok
    pos = data.draw(st.integers(0, len(good) - 1), label="pos")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != good[pos]), label="byte")
    bad = good[:pos] + bytes([new]) + good[pos + 1 :]
    report = verify_lines(split(bad))
    assert not report.ok
    assert report.first_bad is not None and report.reason


def test_reopen_after_a_crash_mid_write_drops_the_torn_line_and_says_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    head_before = read_head(path)
    # A crash in the middle of the next flush: half a line, never fsynced, head unchanged.
    with path.open("ab") as f:
        f.write(b'{"body":{"half":')
    assert read_head(path) == head_before
    with AuditLog(path, ticking()) as log:
        assert log.seq == 6
    recs = [orjson.loads(line) for line in lines(path)]
    assert [r["seq"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert recs[-1]["kind"] == "recovery"
    assert recs[-1]["body"] == {"torn_tail_bytes": 16,
                                "detail": "a write interrupted by a crash was dropped"}
    assert verify(path).ok


# --- signed checkpoints -------------------------------------------------------------------

SEED_A = base64.b64encode(bytes(range(32))).decode()
SEED_B = base64.b64encode(bytes(range(100, 132))).decode()
SIGNER_A = Signer.from_seed_b64(SEED_A)
SIGNER_B = Signer.from_seed_b64(SEED_B)
KEYS_A = {SIGNER_A.key_id: SIGNER_A.public_b64}


def write_signed(path: Path, n: int, every: int, flush_every: int = 1,
                 signer: Signer = SIGNER_A) -> None:
    with AuditLog(path, ticking(), signer=signer, checkpoint_every=every) as log:
        for i in range(1, n + 1):
            log.append("decision", {"finding": f"f{i}"})
            if i % flush_every == 0:
                log.flush()


def kinds(path: Path) -> list[str]:
    return [orjson.loads(x)["kind"] for x in lines(path)]


def relink(ls: list[bytes], start: int) -> None:
    """Re-chain every line from index ``start`` on: only what was changed stays wrong."""
    for i in range(start, len(ls)):
        prev = hashlib.sha256(ls[i - 1][:-1]).hexdigest() if i else ZERO_HASH
        ls[i] = forge(ls[i][:-1], prev=prev)


def rewrite_checkpoint(path: Path, index: int, **body_changes: Any) -> None:
    """Change the checkpoint at line ``index + 1``, re-hash it, re-link the chain after it
    and rewrite the head: a whole-file rewrite only the signature can catch."""
    ls = lines(path)
    rec = orjson.loads(ls[index])
    assert rec["kind"] == "checkpoint"
    ls[index] = forge(ls[index][:-1], body={**rec["body"], **body_changes})
    relink(ls, index + 1)
    put_lines(path, ls)
    last = orjson.loads(ls[-1])
    head_path(path).write_bytes(canonical({"hash": last["hash"], "seq": last["seq"]}))


def test_checkpoints_every_n_records_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 12, every=5)
    # 5 records, checkpoint; 5 more, checkpoint; the last 2 are covered on close.
    d, c = "decision", "checkpoint"
    assert kinds(path) == [d] * 5 + [c] + [d] * 5 + [c] + [d] * 2 + [c]
    recs = [orjson.loads(x) for x in lines(path)]
    for i, rec in enumerate(recs):
        if rec["kind"] != c:
            continue
        assert rec["body"]["covers_seq"] == recs[i - 1]["seq"] == rec["seq"] - 1
        assert rec["body"]["covers_hash"] == hashlib.sha256(lines(path)[i - 1][:-1]).hexdigest()
        assert rec["body"]["covers_hash"] == rec["prev"]
        assert rec["body"]["key_id"] == SIGNER_A.key_id
        message = checkpoint_message(rec["seq"] - 1, rec["prev"], SIGNER_A.key_id)
        assert Verifier(SIGNER_A.public_b64).verify(message, rec["body"]["sig"])
    assert verify(path, KEYS_A) == VerifyReport(True, 15, None, 15, None, checkpoints=3)


def test_checkpoint_waits_for_a_flush_and_close_adds_none_when_covered(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 10, every=4, flush_every=10)
    # One flush after ten records: one checkpoint there; nothing left for close to cover.
    assert kinds(path) == ["decision"] * 10 + ["checkpoint"]
    with AuditLog(path, ticking(), signer=SIGNER_A, checkpoint_every=4):
        pass  # nothing appended: close must not add a checkpoint
    assert kinds(path) == ["decision"] * 10 + ["checkpoint"]


def test_reopen_covers_a_tail_the_last_writer_left_unsigned(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)  # written without a signer
    with AuditLog(path, ticking(), signer=SIGNER_A, checkpoint_every=100) as log:
        log.flush()
        assert log.seq == 4
    assert kinds(path) == ["decision"] * 3 + ["checkpoint"]
    assert verify(path, KEYS_A) == VerifyReport(True, 4, None, 4, None, checkpoints=1)


def test_without_keys_verify_passes_and_counts_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 7, every=3)
    assert verify(path) == VerifyReport(True, 10, None, 10, None, checkpoints=3)
    # The same file for someone holding only another key: the first checkpoint is refused.
    keys_b = {SIGNER_B.key_id: SIGNER_B.public_b64}
    assert verify(path, keys_b) == VerifyReport(
        False, 3, 4, 4, f"record 4 (line 4): checkpoint key {SIGNER_A.key_id} unknown"
    )


def test_forged_signature_is_caught_by_the_signature_not_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 15, every=5)
    ls = lines(path)
    assert orjson.loads(ls[11])["kind"] == "checkpoint"  # record 12 covers record 11
    sig = base64.b64decode(orjson.loads(ls[11])["body"]["sig"])
    bad_sig = base64.b64encode(sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]).decode()
    rewrite_checkpoint(path, 11, sig=bad_sig)
    # Chain, hashes and head all agree: without keys the forgery is invisible...
    assert verify(path) == VerifyReport(True, 18, None, 18, None, checkpoints=3)
    # ...and the signature check names it.
    assert verify(path, KEYS_A) == VerifyReport(
        False, 11, 12, 12, "record 12 (line 12): checkpoint signature invalid", checkpoints=1
    )


def test_rewritten_chain_with_a_checkpoint_signed_by_another_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 10, every=5)
    rec = orjson.loads(lines(path)[5])
    message = checkpoint_message(5, rec["prev"], SIGNER_B.key_id)
    # Claiming key A's id with key B's signature: the key is known, the signature is not its.
    rewrite_checkpoint(path, 5, sig=SIGNER_B.sign(message.replace(
        SIGNER_B.key_id.encode(), SIGNER_A.key_id.encode())))
    assert verify(path, KEYS_A).reason == "record 6 (line 6): checkpoint signature invalid"
    # Naming key B honestly: unknown to an auditor who trusts only key A.
    rewrite_checkpoint(path, 5, key_id=SIGNER_B.key_id, sig=SIGNER_B.sign(message))
    assert verify(path, KEYS_A).reason == (
        f"record 6 (line 6): checkpoint key {SIGNER_B.key_id} unknown"
    )
    # Trusting key B too accepts record 6, but re-linking the chain after it changed record
    # 11's line, so key A's later checkpoint no longer covers it.
    both = {**KEYS_A, SIGNER_B.key_id: SIGNER_B.public_b64}
    assert verify(path, both) == VerifyReport(
        False, 11, 12, 12,
        "record 12 (line 12): checkpoint covers_hash is not the previous record's line hash",
        checkpoints=1,
    )


def test_checkpoint_covering_the_wrong_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 10, every=5)
    prev = orjson.loads(lines(path)[5])["prev"]
    # Validly signed claims that do not describe the record before: replayed from elsewhere.
    sig = SIGNER_A.sign(checkpoint_message(4, prev, SIGNER_A.key_id))
    rewrite_checkpoint(path, 5, covers_seq=4, sig=sig)
    assert verify(path, KEYS_A).reason == (
        "record 6 (line 6): checkpoint covers seq 4, previous record is 5"
    )
    other = "ab" * 32
    sig = SIGNER_A.sign(checkpoint_message(5, other, SIGNER_A.key_id))
    rewrite_checkpoint(path, 5, covers_seq=5, covers_hash=other, sig=sig)
    assert verify(path, KEYS_A).reason == (
        "record 6 (line 6): checkpoint covers_hash is not the previous record's line hash"
    )


def test_malformed_checkpoint_body(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 5, every=5)
    rewrite_checkpoint(path, 5, covers_seq="5")
    assert verify(path, KEYS_A) == VerifyReport(
        False, 5, 6, 6,
        "record 6 (line 6): checkpoint body needs exactly an integer 'covers_seq', "
        "a sha256 'covers_hash' and string 'key_id' and 'sig'",
    )
    assert verify(path).ok  # shape is a signature-time check; the chain itself is intact


def test_bad_public_keys_are_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_signed(path, 2, every=5)
    assert verify(path, {"k": "no!"}) == VerifyReport(
        False, 0, None, None, "public key k: not valid base64"
    )
    assert verify(path, {"k": SIGNER_A.public_b64}).reason == (
        f"public key k: its key id is {SIGNER_A.key_id}"
    )


def test_checkpoint_kind_is_reserved_and_every_must_be_positive(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.jsonl", ticking()) as log, pytest.raises(AuditError) as err:
        log.append("checkpoint", {"covers_seq": 0})
    assert str(err.value) == "kind 'checkpoint' is reserved for signed checkpoints"
    with pytest.raises(AuditError) as err:
        AuditLog(tmp_path / "b.jsonl", ticking(), signer=SIGNER_A, checkpoint_every=0)
    assert str(err.value) == "checkpoint_every must be at least 1, got 0"


def test_on_flush_hears_each_durable_record_once_with_its_exact_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    heard: list[list[int]] = []
    lines: list[bytes] = []

    def listener(records: Any) -> None:
        # Called only once the records are on disk: the file already ends with them.
        assert path.read_bytes().endswith(b"".join(r.line for r in records))
        heard.append([r.seq for r in records])
        lines.extend(r.line for r in records)

    signer = Signer.from_seed_b64(base64.b64encode(bytes(32)).decode())
    with AuditLog(path, ticking(), signer=signer, checkpoint_every=3, on_flush=listener) as log:
        log.append("decision", {"n": 1})
        log.append("decision", {"n": 2})
        assert heard == []  # buffered is not durable
        log.flush()
        log.flush()  # nothing new: not called
        log.append("decision", {"n": 3})
        log.flush()  # three since the last checkpoint: one is added and heard too
    assert heard == [[1, 2], [3, 4]]
    assert lines == path.read_bytes().splitlines(keepends=True)
    assert verify_lines(lines).ok
