"""`hotpath run` SIGKILLed mid-stream and restarted: every incident is still acted on or
paged, and no idempotency key is executed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from escalation.audit import verify
from hotpath.demo.receivers import ActionReceiver, PageReceiver
from hotpath.services.kafka_broker import KafkaBroker
from tests.hotpath.conftest import MakeConfig
from tests.hotpath.telemetry import WARMUP, incident_stream, produce
from tests.hotpath.waiting import wait_until

pytestmark = pytest.mark.kafka


def _start(cfg_path: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hotpath.cli", "run", "--config", str(cfg_path)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ},
    )


async def test_sigkill_and_restart_loses_no_incident_and_repeats_no_action(
    kafka_broker: KafkaBroker, redis_client: object, make_config: MakeConfig,
    unique_topic: str, tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap
    await kafka_broker.create_topic(unique_topic, partitions=2)
    rng = np.random.default_rng(11)
    t0 = time.time() - 250
    stream = incident_stream(t0, WARMUP + 80, rng)
    # First part: warm-up and the first incidents; the rest after the kill.
    cut = len(stream) * (WARMUP + 10) // (WARMUP + 80)
    async with ActionReceiver() as actions, PageReceiver(None) as pages:
        # A long commit interval makes sure the kill lands with processed-but-uncommitted
        # offsets, so the restart replays decisions that were already made.
        cfg = make_config(bootstrap, unique_topic, action_url=actions.url, page_url=pages.url,
                          kafka={"commit_interval_s": 30.0})
        cfg_path = tmp_path / "hotpath.yaml"
        cfg_path.write_bytes(orjson.dumps(cfg.model_dump(mode="json")))  # JSON is YAML
        log = tmp_path / "hotpath-run.log"

        proc = _start(cfg_path, log)
        try:
            await produce(bootstrap, unique_topic, stream[:cut])
            await wait_until(lambda: len(actions.accepted) >= 2, timeout=90,
                             what="first actions before the kill")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            await produce(bootstrap, unique_topic, stream[cut:])
            proc = _start(cfg_path, log)

            def reasons(service: str) -> set[str]:
                return {r for p in pages.pages if p["service"] == service for r in p["reasons"]}

            await wait_until(
                lambda: len({a["idempotency_key"] for a in actions.accepted}) >= 3
                and "budget exhausted" in reasons("payments")
                and "no remediation rule" in reasons("search"),
                timeout=90, what="every incident handled after restart")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()[-3000:]

    keys = [a["idempotency_key"] for a in actions.accepted]
    assert len(keys) == len(set(keys)) == 3, keys
    # The replayed batch claimed the same idempotency keys again and was refused by the
    # budget store: no request reached the executor twice, not even as a duplicate.
    assert [r.outcome for r in actions.received] == ["accepted"] * 3
    assert sorted(a["rule"] for a in actions.accepted) == [
        "restart-checkout", "scale-payments", "scale-payments"]
    assert verify(cfg.audit.path).ok
