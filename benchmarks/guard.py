"""The CI guard: same-run ratios of the benchmark results against floors kept in the repo.

A floor is a dimensionless ratio each benchmark measures inside one run (hotpath against
raw aiokafka, two processes against one, ...), stored in ``benchmarks/floors.toml``. Wall
times are never compared: this machine is shared and its speed varies from run to run,
while a ratio of two things measured side by side moves only when one of them changed.

A benchmark that could not measure a ratio by design (a side skipped in ``--quick``, or
whose binaries are not installed) lists it in its document under ``guard_skipped``,
``{ratio: reason}``; such a floor is reported skipped with that reason, not failed. A ratio
missing without a reason fails: the run broke.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOORS = Path(__file__).resolve().parent / "floors.toml"


class FloorsError(Exception):
    """The floors file is unreadable or malformed: the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class Check:
    """One guarded ratio: its value in this run (None if the run did not produce it), and
    why the run skipped it (None if it did not)."""

    benchmark: str
    name: str
    value: float | None
    floor: float
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        if self.value is None:
            return self.skipped is not None
        return self.value >= self.floor

    @property
    def reason(self) -> str:
        """Why it passed or failed, for the table and the exit message.

        >>> Check("throughput", "point_ratio_to_raw", 0.2, 0.27).reason
        'below its floor: 0.2 < 0.27'
        >>> Check("scaleout", "two_over_one", None, 1.2).reason
        'not measured: the run produced no such ratio'
        >>> Check("page_latency", "prom_fast_over_hotpath", None, 8.0, "not installed").reason
        'skipped: not installed'
        """
        if self.value is None:
            if self.skipped is not None:
                return f"skipped: {self.skipped}"
            return "not measured: the run produced no such ratio"
        if self.value < self.floor:
            return f"below its floor: {self.value:.3g} < {self.floor:.3g}"
        return f"ok: {self.value:.3g} >= {self.floor:.3g}"


def load_floors(path: Path = FLOORS) -> dict[str, dict[str, float]]:
    """``{benchmark: {ratio: floor}}`` from the TOML file.

    >>> load_floors()["throughput"]["point_ratio_to_raw"] > 0
    True
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise FloorsError(f"{path}: {e}") from e
    floors: dict[str, dict[str, float]] = {}
    for bench, table in data.items():
        if not isinstance(table, dict):
            raise FloorsError(f"{path}: [{bench}] must be a table of ratio = floor")
        for name, floor in table.items():
            if type(floor) not in (int, float) or floor <= 0:
                raise FloorsError(f"{path}: {bench}.{name} = {floor!r} must be a number > 0")
        floors[bench] = {name: float(v) for name, v in table.items()}
    return floors


def check(docs: Mapping[str, Mapping[str, Any] | None],
          floors: Mapping[str, Mapping[str, float]]) -> list[Check]:
    """Every floor of every benchmark that ran, against the ratio its document carries.

    ``docs`` maps a benchmark's name to its results document, or None when it was not run
    (its floors are then not checked: ``--only`` chose other benchmarks). A ratio the
    document does not carry is skipped when its ``guard_skipped`` gives the reason.

    >>> docs = {"throughput": {"guard": {"point_ratio_to_raw": 0.35}}, "scaleout": None}
    >>> [(c.name, c.ok) for c in check(docs, {"throughput": {"point_ratio_to_raw": 0.27},
    ...                                        "scaleout": {"two_over_one": 1.2}})]
    [('point_ratio_to_raw', True)]
    """
    out = []
    for bench, table in floors.items():
        if bench not in docs or docs[bench] is None:
            continue
        doc = docs[bench]
        assert doc is not None
        ratios = doc.get("guard") or {}
        skipped = doc.get("guard_skipped") or {}
        for name, floor in table.items():
            value = ratios.get(name)
            why = skipped.get(name)
            out.append(Check(bench, name, None if value is None else float(value), floor,
                             None if value is not None or why is None else str(why)))
    return out
