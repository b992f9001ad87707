"""The README's performance section: every target of every benchmark, and the machine.

``python -m benchmarks all`` rewrites the part of README.md between the two markers below
from the result documents it just wrote, so the table always shows one run on one machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from benchmarks.common import format_cell
from hotpath.services.kafka_broker import default_libs_dir

BEGIN = "<!-- benchmarks:begin (python -m benchmarks all writes this part) -->"
END = "<!-- benchmarks:end -->"
LIBRARIES = ("numpy", "aiokafka", "orjson", "msgspec", "uvloop", "redis", "prometheus-client")


class ReadmeError(Exception):
    """README.md has no place for the table: the message says which marker is missing."""


def _first_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else None


def versions() -> dict[str, str]:
    """Library and server versions the figures depend on ("missing" when absent)."""
    found: dict[str, str] = {}
    for lib in LIBRARIES:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            found[lib] = "missing"
    jars = sorted(default_libs_dir().glob("kafka_2.13-*.jar")) if default_libs_dir().is_dir() \
        else []
    found["kafka"] = (re.sub(r"^kafka_2\.13-|\.jar$", "", jars[0].name) if jars else "missing")
    for name, argv, pattern in (
            ("redis-server", ["redis-server", "--version"], r"v=(\S+)"),
            ("prometheus", ["prometheus", "--version"], r"version (\S+)"),
            ("alertmanager", ["prometheus-alertmanager", "--version"], r"version (\S+)")):
        line = _first_line(argv)
        m = re.search(pattern, line or "")
        found[name] = m.group(1) if m else "missing"
    return found


def _value(t: Mapping[str, Any]) -> object:
    v = t.get("value")
    return "-" if v is None else float(v)


def _met(t: Mapping[str, Any]) -> str:
    met = t.get("met")
    verdict = "not measured" if met is None else ("yes" if met else "**no**")
    context = []
    if "raw_p99_ms" in t:  # the latency ceiling at the same rate, measured beside it
        context.append(f"raw aiokafka {t['raw_p99_ms']:.1f} ms")
    if t.get("producer_limited"):
        context.append("producer-limited")
    if t.get("note"):
        context.append(str(t["note"]))
    return verdict + (f" ({'; '.join(context)})" if context else "")


def _name(t: Mapping[str, Any]) -> str:
    """The target's name, with its case when several cases share one name."""
    case = t.get("case")
    return f"{t['name']} ({case})" if case and case not in t["name"] else str(t["name"])


def section(docs: Mapping[str, Mapping[str, Any]], machine: Mapping[str, Any],
            libs: Mapping[str, str], when: str, earlier: Sequence[str] = ()) -> str:
    """The markdown between the markers: machine line, targets table, where the JSON is.

    >>> doc = {"targets": [{"name": "p99_ms", "value": 12.5, "target": 20.0, "unit": "ms",
    ...                     "met": True}]}
    >>> print(section({"latency": doc}, {"cores": 2, "python": "3.11.7", "platform": "Linux"},
    ...               {"numpy": "2.4"}, "2026-11-26"))  # doctest: +NORMALIZE_WHITESPACE
    Measured 2026-11-26 on 2 cores, Python 3.11.7, Linux; numpy 2.4.
    <BLANKLINE>
    | benchmark | target | measured | goal | unit | met |
    |---|---|---|---|---|---|
    | latency | p99_ms | 12.50 | 20.00 | ms | yes |
    <BLANKLINE>
    Each row comes from `benchmarks/results/<benchmark>.json` (its `targets` list).
    """
    head = ["benchmark", "target", "measured", "goal", "unit", "met"]
    body = ["| " + " | ".join(format_cell(v) for v in
                              [bench, _name(t), _value(t), float(t["target"]), t["unit"],
                               _met(t)]) + " |"
            for bench, doc in docs.items() for t in doc.get("targets", [])]
    lib_text = ", ".join(f"{k} {v}" for k, v in libs.items())
    return "\n".join([
        f"Measured {when} on {machine['cores']} cores, Python {machine['python']}, "
        f"{machine['platform']}; {lib_text}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *body,
        "",
        "Each row comes from `benchmarks/results/<benchmark>.json` (its `targets` list)."
        + (f" Rows of {', '.join(earlier)} are from an earlier run (`--only` left them)."
           if earlier else ""),
    ])


def update(readme: str, body: str) -> str:
    """``readme`` with the text between the markers replaced by ``body``.

    >>> update(f"a\\n{BEGIN}\\nold\\n{END}\\nb", "new")  # doctest: +ELLIPSIS
    'a\\n<!-- benchmarks:begin ... -->\\nnew\\n<!-- benchmarks:end -->\\nb'
    >>> update("no markers", "new")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    benchmarks.readme_table.ReadmeError: README.md has no line '<!-- benchmarks:begin ...'
    """
    for marker in (BEGIN, END):
        if marker not in readme:
            raise ReadmeError(f"README.md has no line {marker!r}")
    start = readme.index(BEGIN) + len(BEGIN)
    end = readme.index(END)
    if end < start:
        raise ReadmeError(f"README.md has {END!r} before {BEGIN!r}")
    return readme[:start] + "\n" + body + "\n" + readme[end:]
