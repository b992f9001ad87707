"""Starting and stopping a child service process with its output in a log file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

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
