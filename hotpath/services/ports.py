"""Free loopback ports and waiting for a listener to appear on one."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

# Poll often enough that a fast-starting service is noticed within a few ms, yet not so
# often that a slow JVM start burns a core on connect() calls.
_POLL_INTERVAL_S = 0.02


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0); another process could take it before the caller
    binds, which on a test machine is rare enough to accept.

    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now.

    >>> port_open("127.0.0.1", free_port())
    False
    """
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Wait until ``host:port`` accepts connections; False on timeout or when ``alive()`` fails.

    ``alive`` lets the caller stop waiting as soon as the process it started has died.

    >>> wait_for_port("127.0.0.1", free_port(), timeout=0.1)
    False
    >>> wait_for_port("127.0.0.1", free_port(), timeout=5, alive=lambda: False)
    False
    """
    deadline = clock() + timeout
    while clock() < deadline:
        if not alive():
            return False
        if port_open(host, port):
            return True
        time.sleep(_POLL_INTERVAL_S)
    return port_open(host, port)
