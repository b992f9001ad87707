"""Run a local program for an action: an argv list from an allowlisted template, never a shell.

Each action's template (``ActionSpec.command``) is a list of argv elements; each element may
hold placeholders ``{action}``, ``{target}``, ``{service}``, ``{idempotency_key}`` and
``{params[NAME]}``. One template element always becomes exactly one argv element — there is
no shell and no word splitting — so a value with spaces or ``;`` stays one inert argument.
What remains dangerous is refused:

* a program (``argv[0]`` after substitution) not in the allowlist (absolute paths, exact);
* a substituted value that would begin an argv element with ``-`` (option injection:
  ``{target}`` = ``--force`` must not become a flag) or that holds a NUL byte;
* any other placeholder (no attribute or index access into the request).

The program runs with stdin closed, in its own process group (a timeout kills the whole
group, not just the leader), with a small environment rather than ours — this process holds
secrets in its environment — plus ``HOTPATH_IDEMPOTENCY_KEY``. Exit 0 is an ``ok`` result
whose detail is the tail of stdout; exit 75 (``EX_TEMPFAIL``) is retryable; any other exit
is permanent. The error's ``status`` (and the result's) is the exit code.

>>> template_problems(["/usr/bin/kubectl", "rollout", "restart", "{target}", "{params[ns]}"])
()
>>> template_problems(["/bin/echo", "{target.__class__}", "{host}"])
("unknown placeholder '{target.__class__}'", "unknown placeholder '{host}'")
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from string import Formatter
from typing import Any

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.executors.base import ActionRequest, ActionResult

# sysexits.h EX_TEMPFAIL: "temporary failure, the user is invited to retry" — the one exit
# code with an agreed meaning of "try again later".
EX_TEMPFAIL = 75

_FIELDS = ("action", "target", "service", "idempotency_key")
_PARAM = re.compile(r"params\[([A-Za-z_][A-Za-z0-9_]*)\]")

# Enough PATH for the allowlisted program's own helpers; everything else must be given.
_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

# One pipe read; the tail kept is ``output_limit``, so a chatty program costs no memory.
_READ_BYTES = 65536

Piece = tuple[str, str | None]  # (literal text, placeholder field or None)


def _pieces(element: str) -> list[Piece]:
    """Split a template element; ``ValueError`` for broken braces, unknown placeholders."""
    out: list[Piece] = []
    for literal, field, spec, conversion in Formatter().parse(element):
        if field is None:
            out.append((literal, None))
            continue
        text = "{" + field + (f"!{conversion}" if conversion else "") + (
            f":{spec}" if spec else "") + "}"
        if spec or conversion or not (field in _FIELDS or _PARAM.fullmatch(field)):
            raise ValueError(f"unknown placeholder {text!r}")
        out.append((literal, field))
    return out


def template_problems(template: Sequence[str]) -> tuple[str, ...]:
    """Every problem of an argv template, one message each; () if it can run.

    For config validation; :class:`CommandExecutor` refuses the same things at run time.
    """
    if not template:
        return ("empty template",)
    problems = []
    for element in template:
        try:
            _pieces(element)
        except ValueError as e:
            problems.append(str(e))
    return tuple(problems)


def _value(req: ActionRequest, field: str) -> str:
    if field in _FIELDS:
        text: str = getattr(req, field)
        return text
    m = _PARAM.fullmatch(field)
    assert m is not None  # _pieces admits nothing else
    name = m.group(1)
    if name not in req.params:
        raise ValueError(f"action {req.action!r} has no parameter {name!r} for '{{{field}}}'")
    raw: Any = req.params[name]
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str | int | float):
        return str(raw)
    raise ValueError(f"parameter {name!r} must be a string, number or boolean, "
                     f"got {type(raw).__name__}")


def render(template: Sequence[str], req: ActionRequest) -> list[str]:
    """The argv for ``req``; ``ValueError`` naming the placeholder or value that is refused.

    >>> req = ActionRequest("restart", "checkout-eu", "checkout", "f1", "k1", "r",
    ...                     {"ns": "shop floor"})
    >>> render(["/bin/echo", "--target={target}", "{params[ns]}"], req)
    ['/bin/echo', '--target=checkout-eu', 'shop floor']
    >>> render(["/bin/echo", "{target}"], ActionRequest("a", "-rf", "s", "f", "k", "r"))
    Traceback (most recent call last):
    ...
    ValueError: value '-rf' for '{target}' would start an argv element with '-' (option injection)
    """
    argv = []
    for element in template:
        built = ""
        for literal, field in _pieces(element):
            built += literal
            if field is None:
                continue
            value = _value(req, field)
            if "\0" in value:
                raise ValueError(f"value for '{{{field}}}' holds a NUL byte")
            if not built and value.startswith("-"):
                raise ValueError(f"value {value!r} for '{{{field}}}' would start an argv "
                                 "element with '-' (option injection)")
            built += value
        argv.append(built)
    return argv


def _tail(data: bytes, limit: int) -> str:
    return data[-limit:].decode("utf-8", "replace").strip() if limit else ""


async def _read_tail(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    buf = b""
    if stream is None:
        return buf
    while chunk := await stream.read(_READ_BYTES):
        buf = (buf + chunk)[-limit:] if limit else b""
    return buf


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(proc.pid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class CommandExecutor:
    """Runs ``templates[req.action]`` as a subprocess — see the module docstring."""

    def __init__(
        self,
        templates: Mapping[str, Sequence[str]],
        allow: Sequence[str],
        *,
        clock: Callable[[], float],
        timeout_s: float = 30.0,  # a remediation script that takes longer is stuck, not busy
        env: Mapping[str, str] | None = None,
        output_limit: int = 4096,  # fits an audit record; the end of the output says the most
        name: str = "command",
    ) -> None:
        for program in allow:
            if not os.path.isabs(program):
                raise ValueError(f"command executor: allowlist entry {program!r} "
                                 "is not an absolute path")
        if output_limit < 0:
            raise ValueError(f"command executor: output_limit must be >= 0, got {output_limit}")
        self._templates = {action: tuple(t) for action, t in templates.items()}
        self._allow = frozenset(allow)
        self._clock = clock
        self._timeout_s = timeout_s
        self._env = dict(_BASE_ENV if env is None else env)
        self._limit = output_limit
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def argv(self, req: ActionRequest) -> list[str]:
        """The argv ``req`` would run, or :class:`PermanentDeliveryError` saying why not."""
        template = self._templates.get(req.action)
        if template is None:
            raise PermanentDeliveryError(
                f"command executor: no command template for action {req.action!r}")
        if not template:
            raise PermanentDeliveryError(
                f"command executor: empty command template for action {req.action!r}")
        try:
            argv = render(template, req)
        except ValueError as e:
            raise PermanentDeliveryError(f"command executor: action {req.action!r}: {e}") from None
        if argv[0] not in self._allow:
            raise PermanentDeliveryError(
                f"command executor: program {argv[0]!r} is not in the allowlist")
        return argv

    async def execute(self, req: ActionRequest) -> ActionResult:
        argv = self.argv(req)
        t0 = self._clock()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env | {"HOTPATH_IDEMPOTENCY_KEY": req.idempotency_key},
                start_new_session=True,  # own process group: killpg reaches its children too
            )
        except OSError as e:  # allowlisted but missing or not executable: a deployment fault
            raise PermanentDeliveryError(
                f"command executor: cannot run {argv[0]}: {e.strerror}") from None
        finished = False
        try:
            async with asyncio.timeout(self._timeout_s):
                out, err, code = await asyncio.gather(
                    _read_tail(proc.stdout, self._limit),
                    _read_tail(proc.stderr, self._limit),
                    proc.wait(),
                )
            finished = True
        except TimeoutError:
            raise RetryableDeliveryError(
                f"command executor: {argv[0]} timed out after {self._timeout_s:g}s") from None
        finally:
            # Also on cancellation (the router's per-action timeout), and even when the leader
            # already exited: a child still holding the pipes is what kept us waiting.
            if not finished:
                _kill_group(proc)
                await proc.wait()
        latency = self._clock() - t0
        if code == 0:
            return ActionResult(True, 0, _tail(out, self._limit), latency)
        why = f"exited {code}" if code > 0 else f"was killed by signal {_signal_name(-code)}"
        stderr = _tail(err, self._limit)
        message = f"command executor: {argv[0]} {why}" + (f": {stderr}" if stderr else "")
        if code == EX_TEMPFAIL:
            raise RetryableDeliveryError(message, status=code)
        raise PermanentDeliveryError(message, status=code)
