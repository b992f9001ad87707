"""Starting and stopping a child service process with its output in a log file."""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from hotpath.services.errors import ServiceStartError
from hotpath.services.ports import wait_for_port

# Redis stops in milliseconds; a Kafka broker flushing and closing its logs takes a few
# seconds. Ten seconds covers both on a loaded CI machine before we fall back to SIGKILL.
STOP_GRACE_S = 10.0


def spawn(argv: Sequence[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, appending stdout and stderr to ``log_path``.

    Its own group so that Ctrl-C in a terminal running pytest does not reach the service
    before the fixtures get to stop it in order.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> p = spawn(["echo", "hello"], d / "echo.log", d)
    >>> p.wait()
    0
    >>> (d / "echo.log").read_text()
    'hello\\n'
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def terminate(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> int:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns the exit code.

    >>> p = subprocess.Popen(["sleep", "30"])
    >>> terminate(p) == -signal.SIGTERM
    True
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill(proc)
    return proc.wait()


def kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the process and its group (a crash, no clean shutdown); returns the exit code.

    >>> p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    >>> kill(p) == -signal.SIGKILL
    True
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return proc.wait()


def log_tail(log_path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or '' if it does not exist.

    >>> log_tail(Path("/nonexistent/x.log"))
    ''
    """
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ServiceProcess(abc.ABC):
    """One service process on loopback: start it, wait until it serves, stop it.

    The lifecycle lives here once; a service says only what differs: :meth:`_command`
    (prepare ``workdir``, return the argv), :meth:`_serving` (its readiness check),
    :meth:`_not_serving` (what the start error says was missing) and the class attributes.
    A start that does not come up stops the process and raises ServiceStartError with the
    log tail. Usable as a context manager (start on enter, stop on exit).

    >>> import tempfile
    >>> class Sleep(ServiceProcess):
    ...     service, start_timeout_s = "sleep", 1.0
    ...     def _command(self): return ["sleep", "30"]
    ...     def _serving(self, proc, deadline): return proc.poll() is None
    ...     def _not_serving(self): return "asleep"
    >>> with Sleep(Path(tempfile.mkdtemp()), "sleep.log", port=0) as s:
    ...     s.running
    True
    >>> s.running
    False
    >>> class Never(Sleep):
    ...     def _serving(self, proc, deadline): return False
    >>> never = Never(Path(tempfile.mkdtemp()), "never.log", port=0)
    >>> never.start()
    Traceback (most recent call last):
    ...
    hotpath.services.errors.ServiceStartError: sleep did not start: asleep (exit code -15): ...
    >>> never.running
    False
    """

    # Names the service in ServiceStartError (tests match it).
    service: ClassVar[str]
    start_timeout_s: ClassVar[float]
    # SIGKILL instead of SIGTERM when a start fails (the Kafka JVM: see KafkaBroker).
    kill_on_failed_start: ClassVar[bool] = False

    def __init__(self, workdir: Path, log_name: str, port: int) -> None:
        self.workdir = Path(workdir)
        # Fixed at construction so that stop() then start() keeps the address.
        self.port = port
        self.log_path = self.workdir / log_name
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the service (no-op when running) and wait until it serves."""
        if self.running:
            return self
        proc = spawn(self._command(), self.log_path, self.workdir)
        self._proc = proc
        if not self._serving(proc, time.monotonic() + self.start_timeout_s):
            code = kill(proc) if self.kill_on_failed_start else terminate(proc)
            self._proc = None
            raise ServiceStartError(
                self.service,
                f"{self._not_serving()} (exit code {code}): {log_tail(self.log_path, 5)}",
                self.log_path,
            )
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; no-op when stopped."""
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def _listening(self, proc: subprocess.Popen[bytes]) -> bool:
        """Whether ``proc`` opened ``port`` within the start timeout (False once it dies)."""
        return wait_for_port(
            "127.0.0.1", self.port, self.start_timeout_s, alive=lambda: proc.poll() is None
        )

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """Prepare ``workdir`` and return the argv (raise ServiceMissing when it cannot)."""

    @abc.abstractmethod
    def _serving(self, proc: subprocess.Popen[bytes], deadline: float) -> bool:
        """Wait until ``proc`` serves, by ``deadline`` (a ``time.monotonic()`` value)."""

    @abc.abstractmethod
    def _not_serving(self) -> str:
        """What was still missing when the start gave up, for the error message."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
