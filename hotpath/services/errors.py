"""Errors raised when starting the real services.

::

    ServiceError
    ├── ServiceMissing       a binary or the Kafka jars are not installed; the message names the fix
    └── ServiceStartError    the process started but never became ready, or died; names its log
"""

from __future__ import annotations

from pathlib import Path


class ServiceError(Exception):
    """Root of every error raised by ``hotpath.services``."""


class ServiceMissing(ServiceError):
    """Something the service needs is not installed.

    >>> str(ServiceMissing("redis-server", "apt-get install redis-server"))
    'redis-server not found; install it with: apt-get install redis-server'
    """

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what} not found; install it with: {fix}")
        self.what = what
        self.fix = fix


class ServiceStartError(ServiceError):
    """A service did not become ready; the message points at its log.

    >>> str(ServiceStartError("kafka", "exited with code 1", Path("/tmp/k/kafka.log")))
    'kafka did not start: exited with code 1 (log: /tmp/k/kafka.log)'
    """

    def __init__(self, service: str, reason: str, log_path: Path) -> None:
        super().__init__(f"{service} did not start: {reason} (log: {log_path})")
        self.service = service
        self.reason = reason
        self.log_path = log_path
