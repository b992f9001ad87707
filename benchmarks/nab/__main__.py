"""``python -m benchmarks.nab``: replay NAB files through hotpath, or score a reference detector.

    python -m benchmarks.nab --data DIR --out RESULTS [--windows FILE] [--config FILE]
                             [--files GLOB] [--chunk N] [--jobs N]
    python -m benchmarks.nab --data DIR --reference NAME --windows FILE [--out RESULTS]

The first form writes ``RESULTS/hotpath/<category>/hotpath_<file>.csv`` for every
``DIR/<category>/<file>.csv`` (default configuration: ``deploy/hotpath.yaml``). With
``--windows`` it prints the three NAB profiles' scores and writes
``RESULTS/hotpath/scores.json``. The second scores the shipped results of detector NAME
(``DIR/../reference/NAME``) instead of running hotpath: the scorer's own check against the
figures in the data's README. Progress (files done) goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, format_table, machine_info, write_json
from benchmarks.nab import NabError
from benchmarks.nab.data import list_files, read_scores, read_windows
from benchmarks.nab.harness import DEFAULT_CHUNK, DETECTOR, run
from benchmarks.nab.scoring import FloatArray, ProfileResult, TimeArray, score_profiles
from hotpath.config import load_config
from hotpath.errors import ConfigError

PROG = "python -m benchmarks.nab"
DEFAULT_CONFIG = REPO / "deploy" / "hotpath.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="DIR/<category>/<file>.csv")
    p.add_argument("--out", type=Path, help="results directory (required unless --reference)")
    p.add_argument("--windows", type=Path, help="labels JSON: score the results with it")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"hotpath configuration (default {DEFAULT_CONFIG.relative_to(REPO)})")
    p.add_argument("--files", default="*", help="only files whose <category>/<file>.csv "
                   "matches this glob")
    p.add_argument("--reference", metavar="NAME",
                   help="score DIR/../reference/NAME instead of running hotpath")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="rows per ingest call")
    p.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8),
                   help="files replayed in parallel (processes)")
    return p


def results_table(results: Sequence[ProfileResult]) -> str:
    """The profiles' scores as a table (threshold ``-`` when nothing detected scores best).

    >>> print(results_table([ProfileResult("standard", 0.58, 18.3, 65.78, 46, 86, 12)]))
    profile   normalised  threshold  raw      tp  fp  fn
    --------  ----------  ---------  -------  --  --  --
    standard  65.78       0.580000   18.3000  46  86  12
    """
    rows = [[r.profile, f"{r.normalised:.2f}",
             "-" if math.isinf(r.threshold) else f"{r.threshold:.6f}", f"{r.raw:.4f}",
             str(r.tp), str(r.fp), str(r.fn)] for r in results]
    return format_table(["profile", "normalised", "threshold", "raw", "tp", "fp", "fn"], rows)


def _result_doc(r: ProfileResult) -> dict[str, Any]:
    doc = r._asdict()
    doc["threshold"] = None if math.isinf(r.threshold) else r.threshold  # JSON has no inf
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.reference is None and args.out is None:
        parser.error("--out is required unless --reference is given")
    if args.reference is not None and args.windows is None:
        parser.error("--reference needs --windows to score against")
    if args.chunk < 1:
        parser.error(f"--chunk {args.chunk} must be at least 1")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be at least 1")
    try:
        return _run(args)
    except (NabError, ConfigError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    names = list_files(args.data, args.files)
    if not names:
        raise NabError(f"{args.data}: no <category>/<file>.csv matches {args.files!r}")
    windows = read_windows(args.windows) if args.windows is not None else None
    total = len(names)
    done = 0

    def progress(name: str) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{total}] {name}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    if args.reference is not None:
        ref_dir = args.data.resolve().parent / "reference" / args.reference
        paths = {n: ref_dir / n for n in names}
        detector = args.reference
    else:
        cfg = load_config(args.config)
        written = run(cfg, args.data, args.out, names, chunk=args.chunk, jobs=args.jobs,
                      progress=progress)
        paths = dict(zip(names, written, strict=True))
        detector = DETECTOR
        print(f"replayed {total} files in {time.perf_counter() - started:.1f}s; results in "
              f"{args.out / DETECTOR}", file=sys.stderr)
    if windows is None:
        return 0

    files: dict[str, tuple[TimeArray, FloatArray]] = {}
    for n, path in paths.items():
        s = read_scores(path, n)
        files[n] = (s.timestamps, s.scores)
    results = score_profiles(files, windows)
    print(f"{detector} on {total} files ({sum(len(ts) for ts, _ in files.values()):,} rows)")
    print(results_table(list(results.values())))
    if args.out is not None:
        out = write_json(args.out / detector / "scores.json", {
            "benchmark": "nab", "detector": detector, "machine": machine_info(),
            "data": str(args.data), "windows": str(args.windows), "files": names,
            "config": None if args.reference else str(args.config),
            "chunk": None if args.reference else args.chunk,
            "elapsed_s": time.perf_counter() - started,
            "profiles": {k: _result_doc(r) for k, r in results.items()},
        })
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
