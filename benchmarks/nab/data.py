"""NAB's files: data CSVs in, label windows, result CSVs in and out.

Layout (NAB's): ``DATA/<category>/<file>.csv`` with columns ``timestamp,value``; a windows
JSON ``{"<category>/<file>.csv": [["start", "end"], ...]}``; results
``RESULTS/<detector>/<category>/<detector>_<file>.csv`` with at least ``timestamp`` and
``anomaly_score``. A file is named by its path under the data directory
(``realTweets/Twitter_volume_FB.csv``), as in the windows JSON.

Timestamps are ISO 8601 wall-clock times without a zone (``2014-04-10 07:15:00``, fractional
seconds allowed), read as UTC. A bad row raises :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from benchmarks.nab import DataError
from benchmarks.nab.scoring import FloatArray, TimeArray, Window

_TIME_UNIT = "datetime64[us]"
_BOUND = ("start", "end")


@dataclass(frozen=True, slots=True)
class Series:
    """One data file: its rows' timestamps (as written and parsed) and values."""

    name: str
    text: tuple[str, ...]  # timestamps exactly as in the file, written back unchanged
    timestamps: TimeArray
    values: FloatArray

    def epoch_s(self) -> FloatArray:
        """Timestamps as seconds since the Unix epoch (the wire format's ``ts``).

        >>> s = Series("c/f.csv", ("2014-01-01 00:00:01",),
        ...            np.array(["2014-01-01T00:00:01"], dtype="datetime64[us]"), np.zeros(1))
        >>> s.epoch_s().tolist()
        [1388534401.0]
        """
        return self.timestamps.astype(np.int64) / 1e6


@dataclass(frozen=True, slots=True)
class Scores:
    """One result file: per-row timestamps and anomaly scores."""

    timestamps: TimeArray
    scores: FloatArray


def list_files(data_dir: Path, pattern: str = "*") -> list[str]:
    """Names ``<category>/<file>.csv`` under ``data_dir`` matching ``pattern``, sorted.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "cat").mkdir()
    >>> for f in ("b.csv", "a.csv", "notes.txt"): _ = (d / "cat" / f).write_text("")
    >>> list_files(d), list_files(d, "*/b*")
    (['cat/a.csv', 'cat/b.csv'], ['cat/b.csv'])
    """
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory")
    names = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))
    return [n for n in names if fnmatchcase(n, pattern)]


def read_series(data_dir: Path, name: str) -> Series:
    """Read ``data_dir/name`` (columns ``timestamp,value``)."""
    header, rows = _read_csv(data_dir / name, name)
    ts_col = _column(header, "timestamp", name)
    v_col = _column(header, "value", name)
    text = tuple(r[ts_col] for r in rows)
    return Series(name, text, _parse_times(text, _line(name)),
                  _parse_numbers([r[v_col] for r in rows], name, "value"))


def read_scores(path: Path, name: str) -> Scores:
    """Read a result file's ``timestamp`` and ``anomaly_score`` columns (others ignored)."""
    header, rows = _read_csv(path, name)
    ts_col = _column(header, "timestamp", name)
    s_col = _column(header, "anomaly_score", name)
    return Scores(_parse_times([r[ts_col] for r in rows], _line(name)),
                  _parse_numbers([r[s_col] for r in rows], name, "anomaly_score"))


def write_scores(path: Path, series: Series, scores: FloatArray) -> None:
    """Write ``timestamp,value,anomaly_score``, one row per input row, timestamps unchanged.

    ``repr`` of a float round-trips, so a scorer reading the file sees the exact scores.
    """
    if len(scores) != len(series.text):
        raise DataError(f"{series.name}: {len(series.text)} rows but {len(scores)} scores")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("timestamp", "value", "anomaly_score"))
        w.writerows(zip(series.text, map(repr, series.values.tolist()),
                        map(repr, scores.tolist()), strict=True))


def read_windows(path: Path) -> dict[str, list[Window]]:
    """The windows JSON: file name -> inclusive (start, end) timestamps.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "w.json"
    >>> _ = p.write_text('{"c/f.csv": [["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00"]]}')
    >>> [(str(a), str(b)) for a, b in read_windows(p)["c/f.csv"]]
    [('2014-04-10T07:15:00.000000', '2014-04-11T16:45:00.000000')]
    """
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from e
    except orjson.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected an object of file name -> windows")
    out: dict[str, list[Window]] = {}
    for name, wins in doc.items():
        where = f"{path}: {name}"
        if not isinstance(wins, list) or not all(
                isinstance(w, list) and len(w) == 2 and all(isinstance(t, str) for t in w)
                for w in wins):
            raise DataError(f"{where}: expected a list of [start, end] timestamp strings")
        parsed: list[Window] = []
        for k, w in enumerate(wins):
            start, end = _parse_times(w, _bound(f"{where}: window {k}"))
            parsed.append((start, end))
        out[name] = parsed
    return out


def _read_csv(path: Path, name: str) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise DataError(f"{name}: cannot read {path}: {e.strerror}") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{name}: not a CSV file: {e}") from e
    if not rows:
        raise DataError(f"{name}: empty file (expected a header line)")
    header, body = rows[0], rows[1:]
    if not body:
        raise DataError(f"{name}: no rows after the header")
    width = len(header)
    for i, r in enumerate(body):
        if len(r) != width:
            raise DataError(f"{name}: line {i + 2}: {len(r)} fields, the header has {width}")
    return header, body


def _column(header: Sequence[str], col: str, name: str) -> int:
    try:
        return header.index(col)
    except ValueError:
        raise DataError(f"{name}: line 1: no {col!r} column (header: "
                        f"{','.join(header)})") from None


def _line(name: str) -> Callable[[int], str]:
    return lambda i: f"{name}: line {i + 2}"  # row i of the body is line i + 2


def _bound(window: str) -> Callable[[int], str]:
    return lambda i: f"{window} {_BOUND[i]}"


def _parse_times(text: Sequence[str], where: Callable[[int], str]) -> TimeArray:
    # fromisoformat validates each item and names it; numpy then converts in bulk.
    for i, s in enumerate(text):
        try:
            zone = datetime.fromisoformat(s).tzinfo
        except ValueError:
            raise DataError(f"{where(i)}: bad timestamp {s!r}") from None
        if zone is not None:
            raise DataError(f"{where(i)}: timestamp {s!r} has a zone; NAB times are UTC "
                            "wall-clock times without one")
    return np.array(text, dtype=_TIME_UNIT)


def _parse_numbers(text: Sequence[str], name: str, col: str) -> npt.NDArray[np.float64]:
    out = np.empty(len(text), dtype=np.float64)
    for i, s in enumerate(text):
        try:
            v = float(s)
        except ValueError:
            raise DataError(f"{name}: line {i + 2}: bad {col} {s!r}") from None
        if not math.isfinite(v):
            raise DataError(f"{name}: line {i + 2}: {col} {s!r} is not finite")
        out[i] = v
    return out
