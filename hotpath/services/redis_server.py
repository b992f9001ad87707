"""A real redis-server on a loopback port, restartable on the same port.

Tests stop it mid-test to simulate an outage (budgets must fail closed) and start it again;
keeping the port lets clients reconnect to the same URL. Nothing is persisted: no RDB
snapshots, no AOF, so a restart comes back empty, like a failover to a fresh replica.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from hotpath.services.errors import ServiceMissing
from hotpath.services.ports import free_port
from hotpath.services.process import ServiceProcess

# redis-server answers within ~10 ms when idle; 15 s leaves room for a busy CI machine.
_START_TIMEOUT_S = 15.0
_POLL_INTERVAL_S = 0.02


def redis_server_binary() -> str:
    """Path of ``redis-server``, or ServiceMissing naming the apt package.

    >>> redis_server_binary().endswith("redis-server")
    True
    """
    path = shutil.which("redis-server")
    if path is None:
        raise ServiceMissing("redis-server", "apt-get install redis-server")
    return path


class RedisServer(ServiceProcess):
    """A redis-server bound to 127.0.0.1, logging to ``workdir/redis.log``.

    ``start()`` (no-op when running) waits until it accepts connections; ``stop()`` sends
    SIGTERM, then SIGKILL after a grace period.

    >>> import tempfile, socket
    >>> with RedisServer(Path(tempfile.mkdtemp())) as server:
    ...     with socket.create_connection(("127.0.0.1", server.port)) as s:
    ...         _ = s.sendall(b"PING\\r\\n")
    ...         s.recv(16)
    b'+PONG\\r\\n'
    >>> server.running
    False
    """

    service = "redis-server"
    start_timeout_s = _START_TIMEOUT_S

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, "redis.log", port if port is not None else free_port())

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        binary = redis_server_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            # Log to stdout, which spawn() appends to log_path: startup errors from bad
            # arguments go to stderr before any logfile is opened, so one file catches all.
            "--logfile", "",
            "--daemonize", "no",
        ]  # fmt: skip

    def _serving(self, proc: subprocess.Popen[bytes], deadline: float) -> bool:
        return _wait_until_serving(proc, self.port, deadline)

    def _not_serving(self) -> str:
        return f"not serving on port {self.port}"


def _wait_until_serving(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """Wait until *our* process answers on ``port``.

    Comparing the pid Redis reports with ours matters: if the port is taken by another
    server, ours exits with "Address already in use" while the other one answers PING.
    """
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.info("server").get("process_id") == proc.pid:
                    return True
            except redis.RedisError:
                pass
            time.sleep(_POLL_INTERVAL_S)
        return False
    finally:
        client.close()
