"""The NAB harness on small synthetic NAB-style directories: files written, chunking
invariance, the CLI's table and JSON, and the exact errors for bad files and rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import orjson
import pytest

from benchmarks.nab import DataError, ReplayError
from benchmarks.nab.__main__ import main
from benchmarks.nab.data import list_files, read_series, read_windows
from benchmarks.nab.harness import chunk_bounds, replay, run
from hotpath.config import Config, load_config
from hotpath.runtime import partition_factory
from tests.benchmarks.cli import usage_error

REPO = Path(__file__).resolve().parents[2]
NAB_DEV = REPO.parent / "shared" / "data" / "nab-dev"
SPIKE_ROW = 300


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(REPO / "deploy" / "hotpath.yaml")


def stamps(n: int, start: str = "2014-01-01T00:00:00") -> list[str]:
    t = np.datetime64(start, "s") + np.arange(n) * np.timedelta64(300, "s")
    return [str(x).replace("T", " ") for x in t]


def write_csv(path: Path, header: str, rows: list[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")


@pytest.fixture(scope="module")
def nab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/synth/{spike,stepback}.csv`` and ``labels/windows.json``.

    ``spike``: a noisy wave with one huge spike. ``stepback``: the same shape reversed, with a
    burst just before its clock steps back an hour, as one of NAB's own files does.
    """
    root = tmp_path_factory.mktemp("nab")
    rng = np.random.default_rng(7)
    n = 400
    values = 10 + np.sin(np.arange(n) / 20) + rng.normal(0, 0.1, n)
    values[SPIKE_ROW] = 100.0
    ts = stamps(n)
    write_csv(root / "data" / "synth" / "spike.csv", "timestamp,value",
              [(t, f"{v:.6f}") for t, v in zip(ts, values, strict=True)])
    # Row 200 is an hour back in time, at row 188's timestamp; rows 188..199 are a burst,
    # so a batch sorting the two hours into one would interleave burst and calm.
    back = ts[:200] + stamps(200, "2014-01-01T15:40:00")
    burst = values[::-1].copy()
    burst[188:200] = 30.0
    write_csv(root / "data" / "synth" / "stepback.csv", "timestamp,value",
              [(t, f"{v:.6f}") for t, v in zip(back, burst, strict=True)])
    (root / "labels").mkdir()
    (root / "labels" / "windows.json").write_bytes(orjson.dumps({
        "synth/spike.csv": [[f"{ts[SPIKE_ROW - 5]}.000000", f"{ts[SPIKE_ROW + 10]}.000000"]],
        "synth/stepback.csv": [],
    }))
    return root


def read_result(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_every_row_is_written_back_with_its_timestamp_value_and_score(
        cfg: Config, nab_dir: Path, tmp_path: Path) -> None:
    data = nab_dir / "data"
    done: list[str] = []
    paths = run(cfg, data, tmp_path, ["synth/spike.csv"], progress=done.append)
    assert done == ["synth/spike.csv"]
    assert paths == [tmp_path / "hotpath" / "synth" / "hotpath_spike.csv"]
    rows = read_result(paths[0])
    inp = read_result(data / "synth" / "spike.csv")
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert len(rows) == len(inp) == 401
    assert [r[0] for r in rows] == [r[0] for r in inp]
    assert [float(r[1]) for r in rows[1:]] == [float(r[1]) for r in inp[1:]]
    scores = np.array([float(r[2]) for r in rows[1:]])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[SPIKE_ROW] >= 0.5  # the spike opens an incident...
    assert scores[SPIKE_ROW + 1] == 0.0  # ...and the rows after it do not repeat it


@pytest.mark.parametrize("name", ["synth/spike.csv", "synth/stepback.csv"])
def test_chunk_size_does_not_change_any_score(cfg: Config, nab_dir: Path, name: str) -> None:
    series = read_series(nab_dir / "data", name)
    factory = partition_factory(cfg)
    one_by_one = replay(series, factory, chunk=1)
    for chunk in (7, 2000):
        assert np.array_equal(replay(series, factory, chunk=chunk), one_by_one), chunk


def test_chunks_never_span_a_step_back_in_time(nab_dir: Path) -> None:
    ts = read_series(nab_dir / "data", "synth/stepback.csv").epoch_s()
    bounds = chunk_bounds(ts, 2000)
    assert bounds == [(0, 200), (200, 400)]
    assert all((np.diff(ts[a:b]) >= 0).all() for a, b in bounds)
    with pytest.raises(ValueError, match=r"^chunk size must be at least 1, got 0$"):
        chunk_bounds(ts, 0)


def test_parallel_jobs_write_the_same_files(cfg: Config, nab_dir: Path, tmp_path: Path) -> None:
    names = list_files(nab_dir / "data")
    assert names == ["synth/spike.csv", "synth/stepback.csv"]
    serial = run(cfg, nab_dir / "data", tmp_path / "serial", names, jobs=1)
    parallel = run(cfg, nab_dir / "data", tmp_path / "parallel", names, jobs=2)
    for a, b in zip(serial, parallel, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_cli_scores_the_replay_and_writes_scores_json(
        nab_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data", str(nab_dir / "data"), "--out", str(tmp_path),
                 "--windows", str(nab_dir / "labels" / "windows.json"), "--jobs", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.splitlines()[:2] == ["[1/2] synth/spike.csv", "[2/2] synth/stepback.csv"]
    lines = out.splitlines()
    assert lines[0] == "hotpath on 2 files (800 rows)"
    assert lines[1].split() == ["profile", "normalised", "threshold", "raw", "tp", "fp", "fn"]
    assert [ln.split()[0] for ln in lines[3:6]] == [
        "standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    assert lines[-1] == f"wrote {tmp_path / 'hotpath' / 'scores.json'}"
    doc = orjson.loads((tmp_path / "hotpath" / "scores.json").read_bytes())
    assert (doc["benchmark"], doc["detector"], doc["files"], doc["chunk"]) == (
        "nab", "hotpath", ["synth/spike.csv", "synth/stepback.csv"], 2000)
    assert list(doc["profiles"]) == ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    for p in doc["profiles"].values():
        assert p["tp"] + p["fn"] == 1
        assert f"{p['normalised']:.2f}" in out


def test_cli_scores_a_reference_detector_without_running_hotpath(
        nab_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A hand-made detector: 0.9 at the window's first row of spike.csv, 0.4 at one row of
    # stepback.csv (no window there, no window before: -fp_weight when detected).
    ref = nab_dir / "reference" / "hand"
    for name, hit, score in (("synth/spike.csv", SPIKE_ROW - 5, "0.9"),
                             ("synth/stepback.csv", 100, "0.4")):
        inp = read_result(nab_dir / "data" / name)[1:]
        write_csv(ref / name, "timestamp,anomaly_score",
                  [(r[0], score if i == hit else "0") for i, r in enumerate(inp)])
    code = main(["--data", str(nab_dir / "data"), "--reference", "hand",
                 "--windows", str(nab_dir / "labels" / "windows.json"), "--files", "synth/*"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == "hand on 2 files (800 rows)"
    assert [ln.split() for ln in out.splitlines()[3:]] == [
        ["standard", "100.00", "0.900000", "1.0000", "1", "0", "0"],
        ["reward_low_FP_rate", "100.00", "0.900000", "1.0000", "1", "0", "0"],
        ["reward_low_FN_rate", "100.00", "0.900000", "1.0000", "1", "0", "0"],
    ]


@pytest.mark.skipif(not NAB_DEV.is_dir(), reason=f"NAB dev data not found at {NAB_DEV}")
def test_cli_reference_check_on_the_dev_data(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data", str(NAB_DEV / "data"), "--reference", "numenta",
                 "--windows", str(NAB_DEV / "labels" / "windows.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [ln.split()[:2] for ln in out.splitlines()[3:]] == [
        ["standard", "65.78"], ["reward_low_FP_rate", "58.15"], ["reward_low_FN_rate", "70.29"]]


def test_a_row_the_wire_decoder_refuses_stops_the_replay_naming_it(
        cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ts = stamps(5)
    ts[2] = "1999-12-31 23:00:00"
    write_csv(tmp_path / "data" / "synth" / "old.csv", "timestamp,value",
              [(t, "1.0") for t in ts])
    with pytest.raises(ReplayError) as e:
        replay(read_series(tmp_path / "data", "synth/old.csv"), partition_factory(cfg))
    assert str(e.value) == ("synth/old.csv: line 4: refused by the wire decoder: "
                            "ts before 2000")
    assert main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "r")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m benchmarks.nab: error: synth/old.csv: line 4: refused by the wire decoder: "
        "ts before 2000")


@pytest.mark.parametrize(("text", "message"), [
    ("", "synth/f.csv: empty file (expected a header line)"),
    ("timestamp,value\n", "synth/f.csv: no rows after the header"),
    ("time,value\n2014-01-01 00:00:00,1\n",
     "synth/f.csv: line 1: no 'timestamp' column (header: time,value)"),
    ("timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,1,2\n",
     "synth/f.csv: line 3: 3 fields, the header has 2"),
    ("timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,abc\n",
     "synth/f.csv: line 3: bad value 'abc'"),
    ("timestamp,value\n2014-01-01 00:00:00,nan\n",
     "synth/f.csv: line 2: value 'nan' is not finite"),
    ("timestamp,value\n2014-01-32 00:00:00,1\n",
     "synth/f.csv: line 2: bad timestamp '2014-01-32 00:00:00'"),
    ("timestamp,value\n2014-01-01 00:00:00+01:00,1\n",
     "synth/f.csv: line 2: timestamp '2014-01-01 00:00:00+01:00' has a zone; NAB times are "
     "UTC wall-clock times without one"),
])
def test_bad_data_files_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "f.csv").write_text(text)
    with pytest.raises(DataError) as e:
        read_series(tmp_path, "synth/f.csv")
    assert str(e.value) == message


@pytest.mark.parametrize(("doc", "message"), [
    (b"[]", "expected an object of file name -> windows"),
    (b"{", "not JSON: unexpected end of data: line 1 column 2 (char 1)"),
    (b'{"c/f.csv": [["2014-01-01 00:00:00"]]}',
     "c/f.csv: expected a list of [start, end] timestamp strings"),
    (b'{"c/f.csv": [["2014-01-01 00:00:00", "2014-01-01 00:05:00"], ["2014-01-02", "x"]]}',
     "c/f.csv: window 1 end: bad timestamp 'x'"),
])
def test_a_bad_windows_file_names_the_entry(tmp_path: Path, doc: bytes, message: str) -> None:
    path = tmp_path / "windows.json"
    path.write_bytes(doc)
    with pytest.raises(DataError) as e:
        read_windows(path)
    assert str(e.value) == f"{path}: {message}"


@pytest.mark.parametrize(("argv", "message"), [
    (["--data", "d"], "--out is required unless --reference is given"),
    (["--data", "d", "--reference", "numenta"], "--reference needs --windows to score against"),
    (["--data", "d", "--out", "o", "--chunk", "0"], "--chunk 0 must be at least 1"),
    (["--data", "d", "--out", "o", "--jobs", "0"], "--jobs 0 must be at least 1"),
])
def test_bad_arguments_are_refused_before_any_work(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(main, argv, capsys) == (
        f"python -m benchmarks.nab: error: {message}")


def test_no_matching_file_is_an_error(nab_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(nab_dir / "data"), "--out", str(tmp_path),
                 "--files", "nope/*"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m benchmarks.nab: error: {nab_dir / 'data'}: no <category>/<file>.csv "
        "matches 'nope/*'")
