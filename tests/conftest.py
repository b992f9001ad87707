"""Session-wide real services for the tests: redis-server, Apache Kafka and Tansu.

Each service gets a work directory from ``tmp_path_factory`` holding its data and log. When
any test of the session failed, the terminal summary lists the service logs (pytest keeps
the directories) so a failing CI run shows where to look.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hotpath.services.kafka_broker import KafkaBroker, default_libs_dir, libs_ready
from hotpath.services.redis_server import RedisServer
from hotpath.services.tansu import TansuBroker

_REPO = Path(__file__).resolve().parents[1]

_SERVICE_LOGS = pytest.StashKey[dict[str, Path]]()
_FAILED = pytest.StashKey[bool]()


def _note_log(config: pytest.Config, name: str, path: Path) -> None:
    config.stash.setdefault(_SERVICE_LOGS, {})[name] = path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.config.stash[_FAILED] = True
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    logs = config.stash.get(_SERVICE_LOGS, {})
    if not config.stash.get(_FAILED, False) or not logs:
        return
    terminalreporter.section("service logs (kept for the failed run)")
    for name, path in sorted(logs.items()):
        terminalreporter.write_line(f"{name}: {path}")


# --- Redis -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[RedisServer]:
    """A real redis-server on a free port; tests may stop() and start() it (same port)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    _note_log(pytestconfig, "redis", server.log_path)
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of the session's redis-server."""
    return redis_server.url


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on an emptied database; restarts the server if a test left it stopped."""
    redis_server.start()
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


# --- Apache Kafka ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[KafkaBroker]:
    """A real Apache Kafka 3.9.1 broker (KRaft) on a free port, for the whole session.

    Fetches the jars with ``deploy/kafka/fetch.sh`` the first time. No skip when java is
    missing: the error names the package to install, and CI installs it.
    """
    libs = default_libs_dir()
    if not libs_ready(libs):
        subprocess.run([str(_REPO / "deploy" / "kafka" / "fetch.sh"), str(libs)], check=True)
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), libs)
    _note_log(pytestconfig, "kafka", broker.log_path)
    with broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    """``127.0.0.1:PORT`` of the session's Kafka broker."""
    return kafka_broker.bootstrap


# --- Tansu -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tansu_broker(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[TansuBroker]:
    """The embedded Tansu broker ``hotpath demo`` uses (memory storage), for the session."""
    broker = TansuBroker(tmp_path_factory.mktemp("tansu"))
    _note_log(pytestconfig, "tansu", broker.log_path)
    with broker:
        yield broker


@pytest.fixture(scope="session")
def tansu_bootstrap(tansu_broker: TansuBroker) -> str:
    """``127.0.0.1:PORT`` of the session's Tansu broker."""
    return tansu_broker.bootstrap


# --- helpers -----------------------------------------------------------------------------

_topic_counter = itertools.count()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test of the session uses (brokers live for the whole session)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80].strip("-")
    return f"t{next(_topic_counter)}-{base}"
