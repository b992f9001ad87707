"""A real single-node Apache Kafka 3.9.1 broker (KRaft, no ZooKeeper) run from Maven jars.

The jars come from Maven Central through ``deploy/kafka/fetch.sh`` (no docker, no tarball).
One JVM is both controller and broker: the controller quorum listens on one free loopback
port, clients on another. Replication factors are 1 because there is one node; the group
rebalance delay is 0 so a test's consumer joins at once instead of after 3 s.

A broker can be stopped (SIGTERM, clean shutdown), killed (SIGKILL, a crash) and started
again on the same ports and data, so tests can check recovery after a broker restart.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from hotpath.services import kafka_admin
from hotpath.services.errors import ServiceMissing, ServiceStartError
from hotpath.services.ports import free_port
from hotpath.services.process import ServiceProcess, kill, log_tail

KAFKA_VERSION = "3.9.1"
FETCH_HINT = "deploy/kafka/fetch.sh (needs mvn: apt-get install maven)"
_REPO_LOG4J = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "log4j.properties"
# Used when hotpath is installed without its source tree (no deploy/ beside the package).
_FALLBACK_LOG4J = (
    "log4j.rootLogger=INFO, stdout\n"
    "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
    "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
)
# A cold JVM formats storage in ~2 s and starts the broker in ~5 s; 90 s covers a CI
# machine that is also compiling, installing and running other tests.
_START_TIMEOUT_S = 90.0


def default_libs_dir() -> Path:
    """Where ``fetch.sh`` puts the jars: ``$HOTPATH_KAFKA_LIBS`` or the per-user cache.

    >>> default_libs_dir().name
    'libs'
    """
    env = os.environ.get("HOTPATH_KAFKA_LIBS")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "hotpath" / f"kafka-{KAFKA_VERSION}" / "libs"


def libs_ready(libs_dir: Path) -> bool:
    """Whether ``fetch.sh`` completed in ``libs_dir`` (it writes ``.complete`` last).

    >>> libs_ready(Path("/nonexistent"))
    False
    """
    return (libs_dir / ".complete").is_file() and any(libs_dir.glob("kafka_2.13-*.jar"))


def cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    >>> len(cluster_id())
    22
    """
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """The broker's configuration for one combined broker+controller node on loopback.

    >>> "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in (
    ...     server_properties(9092, 9093, Path("/d")))
    True
    """
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=4",
            "auto.create.topics.enable=true",
            "offsets.topic.replication.factor=1",
            # The default 50 partitions make the first group join wait while 50 logs are
            # created; 8 is plenty for one node and keeps the first test fast.
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Room above hotpath's own 1 MiB message limit, so the tests can publish an
            # oversized message and watch it go to the DLQ with its reason.
            "message.max.bytes=4194304",
            # After a kill the restarted broker waits for the controller to expire the dead
            # incarnation's session (default 9 s). Controller and broker share the JVM, so
            # a lost heartbeat means a dead broker: 2 s with 0.5 s beats is safe and fast.
            "broker.heartbeat.interval.ms=500",
            "broker.session.timeout.ms=2000",
            "",
        ]
    )


class KafkaProtocolService(ServiceProcess):
    """A broker clients reach over the Kafka protocol at :attr:`bootstrap`.

    Ready once its port is open and it serves metadata (it lists itself and a controller);
    shared by Apache Kafka here and Tansu (:mod:`hotpath.services.tansu`).
    """

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for ``bootstrap_servers``."""
        return f"127.0.0.1:{self.port}"

    async def create_topic(self, name: str, partitions: int = 4) -> None:
        """Create ``name`` (replication 1) and wait until every partition has a leader."""
        await kafka_admin.create_topic(self.bootstrap, name, partitions)

    def _serving(self, proc: subprocess.Popen[bytes], deadline: float) -> bool:
        alive = lambda: proc.poll() is None  # noqa: E731
        return self._listening(proc) and kafka_admin.run_sync(
            kafka_admin.wait_for_metadata(self.bootstrap, deadline, alive)
        )

    def _not_serving(self) -> str:
        return f"no metadata on {self.bootstrap}"


class KafkaBroker(KafkaProtocolService):
    """Apache Kafka on 127.0.0.1, data and ``kafka.log`` in ``workdir``.

    ``start()`` formats storage (first time only), starts the JVM and waits until metadata
    is served; ``stop()`` is a clean shutdown (SIGTERM), ``kill()`` a crash.
    Starting takes seconds (a JVM), so the doctest only shows the addresses:

    >>> import tempfile
    >>> broker = KafkaBroker(Path(tempfile.mkdtemp()), default_libs_dir())
    >>> broker.bootstrap == f"127.0.0.1:{broker.port}"
    True
    """

    service = "kafka"
    start_timeout_s = _START_TIMEOUT_S
    # A JVM that never came up has nothing worth a clean shutdown: SIGKILL frees its ports
    # at once instead of after its shutdown hooks.
    kill_on_failed_start = True

    def __init__(self, workdir: Path, libs_dir: Path | None = None) -> None:
        super().__init__(workdir, "kafka.log", free_port())
        self.libs_dir = Path(libs_dir) if libs_dir is not None else default_libs_dir()
        self.controller_port = free_port()
        self.config_path = self.workdir / "server.properties"
        self._cluster_id = cluster_id()

    def kill(self) -> None:
        """Crash the broker (SIGKILL); ``start()`` afterwards recovers its logs."""
        if self._proc is not None:
            kill(self._proc)
            self._proc = None

    def _command(self) -> list[str]:
        java = self._java()
        if not libs_ready(self.libs_dir):
            raise ServiceMissing(f"Kafka {KAFKA_VERSION} jars in {self.libs_dir}", FETCH_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            server_properties(self.port, self.controller_port, self.workdir / "data")
        )
        self._format(java)
        return [
            java,
            # Small heap: a test broker holds little; two of them fit beside the tests.
            "-Xms256m",
            "-Xmx512m",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self._log4j()}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            str(self.libs_dir / "*"),
            "kafka.Kafka",
            str(self.config_path),
        ]

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise ServiceMissing("java", "apt-get install openjdk-17-jdk-headless")
        return java

    def _log4j(self) -> Path:
        if _REPO_LOG4J.is_file():
            return _REPO_LOG4J
        path = self.workdir / "log4j.properties"
        path.write_text(_FALLBACK_LOG4J)
        return path

    def _format(self, java: str) -> None:
        # --ignore-formatted keeps the data of an earlier start: restart after stop/kill.
        argv = [
            java,
            "-Xmx256m",
            "-XX:-UsePerfData",
            f"-Dlog4j.configuration=file:{self._log4j()}",
            "-cp",
            str(self.libs_dir / "*"),
            "kafka.tools.StorageTool",
            "format",
            # One token with "=": a URL-safe base64 id may start with "-" (1 in 32), which
            # argparse would take for an option ("expected one argument").
            f"--cluster-id={self._cluster_id}",
            "-c",
            str(self.config_path),
            "--ignore-formatted",
        ]
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise ServiceStartError(
                "kafka",
                f"storage format exited with {result.returncode}: {log_tail(self.log_path, 5)}",
                self.log_path,
            )
