"""Errors raised by the hotpath runtime.

::

    HotpathError
    ├── ConfigError     the YAML config is invalid; lists every problem with its path and line
    ├── CheckpointError a saved detector checkpoint cannot be loaded (the partition starts cold)
    ├── DecodeError     one telemetry message failed wire-format validation; ``reason`` is the
    │                   exact DLQ reason header, ``where`` names the partition and offset
    └── AuthError       an action-API call carries no or an unknown bearer token
                        (:mod:`hotpath.api_auth`, beside the principals it checks)

Errors of the real services started for tests and the demo (``ServiceError``) live beside
them in :mod:`hotpath.services.errors`. A :class:`DecodeError` never kills the stream: the
decoder turns it into a reject and the message goes to the DLQ.
"""

from __future__ import annotations

from collections.abc import Sequence


class HotpathError(Exception):
    """Root of every error the hotpath runtime raises."""


class ConfigError(HotpathError):
    """The config file is invalid; one item per problem, each naming its path and line.

    >>> err = ConfigError([("detectors.ewma.alpha", 12, "must be in (0, 1]"),
    ...                    ("budgets", None, "field required")])
    >>> print(err)
    2 problems in the config:
      detectors.ewma.alpha (line 12): must be in (0, 1]
      budgets: field required
    >>> err.problems[0][1]
    12
    """

    def __init__(self, problems: Sequence[tuple[str, int | None, str]]) -> None:
        self.problems: list[tuple[str, int | None, str]] = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'' if n == 1 else 's'} in the config:"
        lines = [head]
        for path, line, message in self.problems:
            at = f"{path} (line {line})" if line is not None else path
            lines.append(f"  {at}: {message}")
        return "\n".join(lines)


class DecodeError(HotpathError):
    """A message broke the wire format; ``reason`` is the exact, stable DLQ reason.

    >>> err = DecodeError("missing field: ts", "partition 3 offset 1742")
    >>> str(err)
    'partition 3 offset 1742: missing field: ts'
    >>> err.reason
    'missing field: ts'
    >>> str(DecodeError("not json"))
    'not json'
    """

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.where = where


class CheckpointError(HotpathError):
    """A saved detector checkpoint cannot be loaded; the partition starts cold instead."""
