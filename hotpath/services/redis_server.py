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
from types import TracebackType

import redis

from hotpath.services.errors import ServiceMissing, ServiceStartError
from hotpath.services.ports import free_port
from hotpath.services.process import log_tail, spawn, terminate

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


class RedisServer:
    """A redis-server bound to 127.0.0.1, logging to ``workdir/redis.log``.

    >>> import tempfile, socket
    >>> with RedisServer(Path(tempfile.mkdtemp())) as server:
    ...     with socket.create_connection(("127.0.0.1", server.port)) as s:
    ...         _ = s.sendall(b"PING\\r\\n")
    ...         s.recv(16)
    b'+PONG\\r\\n'
    >>> server.running
    False
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        # The port is fixed at construction so that stop() then start() keeps the URL.
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Start the server (no-op when running) and wait until it accepts connections."""
        if self.running:
            return self
        binary = redis_server_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
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
        proc = spawn(argv, self.log_path, self.workdir)
        self._proc = proc
        if not _wait_until_serving(proc, self.port, time.monotonic() + _START_TIMEOUT_S):
            code = terminate(proc)
            self._proc = None
            raise ServiceStartError(
                "redis-server",
                f"not serving on port {self.port} (exit code {code}): {log_tail(self.log_path, 5)}",
                self.log_path,
            )
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); no-op when stopped."""
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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
