"""The scale-out benchmark's processes: the processors' config, finding the listening
process, the ``hotpath`` command, and stopping real child processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import scaleout_procs
from benchmarks.scaleout_procs import (
    HEARTBEAT_MS,
    Proc,
    config_text,
    listener_pid,
    processor_overrides,
    stop_procs,
)
from benchmarks.throughput import EXAMPLE_CONFIG
from hotpath.config import load_config, parse_config_text

# --- the processors' config ------------------------------------------------------------------


def test_config_is_the_example_with_the_processors_own_files_and_ports(tmp_path: Path) -> None:
    text = config_text(EXAMPLE_CONFIG.read_text(), processor_overrides(
        "127.0.0.1:9", "redis://127.0.0.1:7/0", "topic-x", "group-y", tmp_path, 9123,
        "http://127.0.0.1:1/pages", "http://127.0.0.1:2/actions"))
    cfg, example = parse_config_text(text), load_config(EXAMPLE_CONFIG)
    assert (cfg.kafka.bootstrap, cfg.kafka.topic, cfg.kafka.group) == (
        "127.0.0.1:9", "topic-x", "group-y")
    assert cfg.kafka.heartbeat_interval_ms == HEARTBEAT_MS
    assert (cfg.metrics.port, cfg.api.port, cfg.redis.url) == (9123, 0, "redis://127.0.0.1:7/0")
    assert cfg.pagers.alertmanager is None
    assert str(cfg.audit.path) == str(tmp_path / "audit.jsonl")
    assert str(cfg.spool.dir) == str(tmp_path / "spool")
    # What is measured is the shipped hot path: batch size, poll, commits, detectors.
    for field in ("max_batch", "poll_timeout_ms", "commit_interval_s", "session_timeout_ms"):
        assert getattr(cfg.kafka, field) == getattr(example.kafka, field)
    assert cfg.detectors == example.detectors
    assert cfg.remediations == example.remediations


# --- the broker's pid -----------------------------------------------------------------------


def test_the_listening_process_is_found_by_its_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert listener_pid(port) == os.getpid()
    assert listener_pid(port) is None


# --- real child processes ---------------------------------------------------------------------


def _proc(tmp_path: Path, name: str, code: str) -> Proc:
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen([sys.executable, "-c", code], stdout=out,
                                 stderr=subprocess.STDOUT)
    return Proc(name, popen, "http://127.0.0.1:1/metrics", log)


async def test_processes_get_sigterm_and_the_stubborn_one_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scaleout_procs, "STOP_TIMEOUT_S", 1.0)
    ready = "import sys,time; print('up', flush=True); "
    polite = _proc(tmp_path, "polite", ready + "time.sleep(30)")
    stubborn = _proc(tmp_path, "stubborn", "import signal; signal.signal(signal.SIGTERM, "
                     "signal.SIG_IGN); " + ready + "time.sleep(30)")
    while not all(p.log.read_text() for p in (polite, stubborn)):
        time.sleep(0.02)
    started = time.monotonic()
    codes = await stop_procs([polite, stubborn])
    assert codes == [-15, -9]
    assert time.monotonic() - started < 5
    assert stubborn.tail() == f"--- stubborn ({stubborn.log}) ---\nup\n"


def test_the_hotpath_command_is_this_environments() -> None:
    [cmd] = scaleout_procs.hotpath_command()
    assert Path(cmd).name == "hotpath" and os.access(cmd, os.X_OK)
