"""A real Prometheus and Alertmanager paging on a step change: the baseline page_latency beats.

:func:`measure_setting` starts, in a work directory, the Debian packages' binaries
(``/usr/bin/prometheus``, ``/usr/bin/prometheus-alertmanager``) on free loopback ports,
with nothing but a fresh TSDB, a config written here and their logs beside them:

- an exporter (aiohttp on 127.0.0.1) serving one gauge per trial series in the Prometheus
  text format; each series serves its normal value until its step instant, then the
  stepped one;
- Prometheus scraping it every ``scrape_s`` and evaluating, every ``eval_s``, a threshold
  rule with ``for: 0s`` (the fastest rule Prometheus has: no range, no pending period);
- Alertmanager (clustering off) grouping by the ``series`` label, so each trial is its own
  group and waits its own ``group_wait``, and posting to a local webhook receiver.

A trial's latency runs from its step instant (the first moment the exporter would answer a
scrape with the anomalous value) to the arrival of the first notification naming its series.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
from aiohttp import web

from hotpath.demo.receivers import LoopbackServer
from hotpath.services.errors import ServiceStartError
from hotpath.services.ports import free_port
from hotpath.services.process import ServiceProcess, log_tail

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
METRIC = "page_latency_value"
ALERT = "PageLatencyStep"
# Both start in about a second on an idle machine; a shared 2-core box with a Kafka JVM
# next door can take several.
START_TIMEOUT_S = 30.0
READY_POLL_S = 0.05
# How often the run looks for notifications; they are stamped on arrival, not on poll.
WAIT_POLL_S = 0.05
# Beyond the worst case of scrape + evaluation + group_wait: Prometheus' notifier queue and
# Alertmanager's pipeline are milliseconds, so this margin only absorbs a loaded machine.
DEADLINE_MARGIN_S = 15.0


class PromStackError(Exception):
    """A Prometheus + Alertmanager run did not complete; the message carries the log tails."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One Prometheus + Alertmanager configuration under test.

    >>> Setting("fast", scrape_s=1, eval_s=1, group_wait_s=0).worst_case_s
    2.0
    """

    name: str
    scrape_s: float
    eval_s: float
    group_wait_s: float

    @property
    def worst_case_s(self) -> float:
        """A step just missed by a scrape, then by an evaluation, then the whole group wait."""
        return float(self.scrape_s + self.eval_s + self.group_wait_s)

    @property
    def cycle_s(self) -> float:
        """The phase space a step instant can fall in: steps spread over one such cycle."""
        return float(max(self.scrape_s, self.eval_s))


# The two settings: the shipped defaults most deployments run (15 s scrape and
# evaluation, Alertmanager's default group_wait 30 s), and the fastest sane ones.
DEFAULT = Setting("prom_default", scrape_s=15, eval_s=15, group_wait_s=30)
FAST = Setting("prom_fast", scrape_s=1, eval_s=1, group_wait_s=0)


def missing_binaries(paths: Sequence[str] = (PROMETHEUS, ALERTMANAGER)) -> list[str]:
    """The binaries that are not installed (empty: this side can run).

    >>> missing_binaries(["/bin/sh", "/nonexistent/prometheus"])
    ['/nonexistent/prometheus']
    """
    return [p for p in paths if shutil.which(p) is None]


def _duration(seconds: float) -> str:
    """A Prometheus duration: whole milliseconds.

    >>> _duration(15), _duration(0.5), _duration(0)
    ('15000ms', '500ms', '0s')
    """
    ms = round(seconds * 1000)
    return f"{ms}ms" if ms else "0s"


def prometheus_config(setting: Setting, exporter: str, alertmanager: str,
                      rules: Path) -> dict[str, Any]:
    """prometheus.yml (as JSON, which YAML reads) scraping ``exporter`` and alerting to AM.

    >>> c = prometheus_config(FAST, "127.0.0.1:1", "127.0.0.1:2", Path("/r.yml"))
    >>> c["global"]
    {'scrape_interval': '1000ms', 'scrape_timeout': '1000ms', 'evaluation_interval': '1000ms'}
    """
    return {
        # The timeout may not exceed the interval; the exporter answers in milliseconds.
        "global": {"scrape_interval": _duration(setting.scrape_s),
                   "scrape_timeout": _duration(setting.scrape_s),
                   "evaluation_interval": _duration(setting.eval_s)},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "page_latency",
                            "static_configs": [{"targets": [exporter]}]}],
    }


def rules_config(threshold: float) -> dict[str, Any]:
    """The alerting rule: the series above ``threshold``, firing at the first evaluation.

    >>> rules_config(200.0)["groups"][0]["rules"][0]["expr"]
    'page_latency_value > 200.0'
    """
    return {"groups": [{"name": "page_latency", "rules": [
        {"alert": ALERT, "expr": f"{METRIC} > {threshold!r}", "for": "0s",
         "labels": {"severity": "page"}}]}]}


def alertmanager_config(setting: Setting, receiver_url: str) -> dict[str, Any]:
    """alertmanager.yml: one group per series, ``group_wait`` as the setting says, one webhook.

    >>> alertmanager_config(FAST, "http://127.0.0.1:9/alerts")["route"]["group_wait"]
    '0s'
    """
    return {
        "route": {"receiver": "bench", "group_by": ["series"],
                  "group_wait": _duration(setting.group_wait_s),
                  # Only the first notification of a group is measured: no re-sends within
                  # a run.
                  "group_interval": "5m", "repeat_interval": "4h"},
        "receivers": [{"name": "bench", "webhook_configs": [
            {"url": receiver_url, "send_resolved": False}]}],
    }


def exposition(values: Sequence[tuple[str, float]]) -> str:
    """The Prometheus text format for one gauge per series.

    >>> print(exposition([("s00", 101.5)]), end="")
    # TYPE page_latency_value gauge
    page_latency_value{series="s00"} 101.5
    """
    lines = [f"# TYPE {METRIC} gauge"]
    lines += [f'{METRIC}{{series="{name}"}} {value!r}' for name, value in values]
    return "\n".join(lines) + "\n"


def firing_series(body: object) -> list[str]:
    """The ``series`` labels of the firing alerts in an Alertmanager webhook body.

    >>> firing_series({"alerts": [{"status": "firing", "labels": {"series": "s01"}},
    ...                           {"status": "resolved", "labels": {"series": "s02"}}]})
    ['s01']
    >>> firing_series([])
    []
    """
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        return []
    return [a["labels"]["series"] for a in body["alerts"]
            if isinstance(a, dict) and a.get("status") == "firing"
            and isinstance(a.get("labels"), dict) and "series" in a["labels"]]


class AlertReceiver(LoopbackServer):
    """``POST /alerts``: Alertmanager's webhook; stamps the first arrival of each series."""

    _path = "/alerts"

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self._clock = clock
        self.first: dict[str, float] = {}
        self.notifications = 0

    async def _handle(self, request: web.Request) -> web.Response:
        now = self._clock()  # before the body is read: arrival, not parsing
        body = orjson.loads(await request.read())
        self.notifications += 1
        for series in firing_series(body):
            self.first.setdefault(series, now)
        return web.Response(status=200)


ValueAt = Callable[[str, float], float]  # (series, clock reading) -> value served


class Exporter:
    """``GET /metrics`` on 127.0.0.1: every series' value at the moment of the scrape."""

    def __init__(self, series: Sequence[str], value_at: ValueAt,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._series = list(series)
        self._value_at = value_at
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.scrapes = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        now = self._clock()
        self.scrapes += 1
        text = exposition([(s, self._value_at(s, now)) for s in self._series])
        return web.Response(text=text, content_type="text/plain")

    async def __aenter__(self) -> Exporter:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class _Ready(ServiceProcess):
    """A Prometheus-family server, ready when ``GET /-/ready`` answers 200."""

    start_timeout_s: ClassVar[float] = START_TIMEOUT_S

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(workdir, f"{self.service}.log", free_port())
        self.config_path = workdir / f"{self.service}.yml"
        self._config = config

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_bytes(orjson.dumps(self._config, option=orjson.OPT_INDENT_2))

    def _serving(self, proc: subprocess.Popen[bytes], deadline: float) -> bool:
        url = f"http://127.0.0.1:{self.port}/-/ready"
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(READY_POLL_S)
        return False

    def _not_serving(self) -> str:
        return f"/-/ready did not answer 200 on port {self.port}"


class Alertmanager(_Ready):
    service = "alertmanager"

    def _command(self) -> list[str]:
        self._write_config()
        return [ALERTMANAGER, f"--config.file={self.config_path}",
                f"--storage.path={self.workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # A lone instance: an empty listen address turns gossip (and its port) off.
                "--cluster.listen-address="]


class Prometheus(_Ready):
    service = "prometheus"

    def __init__(self, workdir: Path, config: dict[str, Any], rules: dict[str, Any]) -> None:
        super().__init__(workdir, config)
        self._rules = rules

    def _command(self) -> list[str]:
        self._write_config()
        Path(self._config["rule_files"][0]).write_bytes(orjson.dumps(self._rules))
        return [PROMETHEUS, f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]


@dataclass(frozen=True, slots=True)
class SettingRun:
    """Per series, the step instant and the first notification (None: none by the deadline)."""

    setting: Setting
    steps: dict[str, float]
    arrivals: dict[str, float | None]
    notifications: int
    scrapes: int

    def latencies_s(self) -> list[float]:
        return [a - self.steps[s] for s, a in self.arrivals.items() if a is not None]

    @property
    def missed(self) -> int:
        return sum(a is None for a in self.arrivals.values())


async def _wait(cond: Callable[[], bool], deadline: float,
                procs: Sequence[_Ready]) -> bool:
    """Poll ``cond`` until it holds (True) or ``deadline`` passes (False); a dead server fails."""
    while not cond():
        for p in procs:
            if not p.running:
                raise PromStackError(f"{p.service} exited during the run:\n"
                                     f"{log_tail(p.log_path)}")
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(WAIT_POLL_S)
    return True


async def measure_setting(setting: Setting, workdir: Path, offsets_s: Sequence[float],
                          value_at: Callable[[str, bool], float], threshold: float,
                          lead_s: float = 1.0) -> SettingRun:
    """Run one setting: series ``s00``… step at ``offsets_s`` after the first scrape + ``lead_s``.

    ``value_at(series, stepped)`` is the value served; stepped values must exceed
    ``threshold`` and normal ones must not.
    """
    names = [f"s{i:02d}" for i in range(len(offsets_s))]
    steps: dict[str, float] = {}

    def served(series: str, now: float) -> float:
        at = steps.get(series)
        return value_at(series, at is not None and now >= at)

    workdir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(AlertReceiver())
        exporter = await stack.enter_async_context(Exporter(names, served))
        am = Alertmanager(workdir, alertmanager_config(setting, receiver.url))
        prom = Prometheus(workdir, prometheus_config(
            setting, f"127.0.0.1:{exporter.port}", f"127.0.0.1:{am.port}",
            workdir / "rules.yml"), rules_config(threshold))
        try:
            for server in (am, prom):
                # Stopped on exit even if the run is cancelled while it starts.
                stack.callback(server.stop)
                # In a thread: the exporter must answer scrapes while we wait.
                await asyncio.to_thread(server.start)
        except ServiceStartError as e:
            raise PromStackError(f"{setting.name}: {e}") from e
        # Prometheus' first scrape comes at a hashed offset within the interval.
        first = time.perf_counter() + setting.scrape_s + START_TIMEOUT_S
        if not await _wait(lambda: exporter.scrapes > 0, first, (am, prom)):
            raise PromStackError(f"{setting.name}: Prometheus never scraped the exporter:\n"
                                 f"{log_tail(prom.log_path)}")
        base = time.perf_counter() + lead_s
        steps.update({n: base + o for n, o in zip(names, offsets_s, strict=True)})
        deadline = max(steps.values()) + setting.worst_case_s + DEADLINE_MARGIN_S
        done = await _wait(lambda: len(receiver.first) >= len(names), deadline, (am, prom))
        if not done and not receiver.first:
            raise PromStackError(
                f"{setting.name}: no notification arrived within {deadline - base:.0f} s\n"
                f"--- prometheus ---\n{log_tail(prom.log_path)}\n"
                f"--- alertmanager ---\n{log_tail(am.log_path)}")
        return SettingRun(setting, dict(steps), {n: receiver.first.get(n) for n in names},
                          receiver.notifications, exporter.scrapes)
