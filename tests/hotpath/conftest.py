"""Fixtures for runtime tests: a per-test config pointing at the session's real services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from escalation.request import Actor
from hotpath.config import Config, load_config, with_overrides

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "hotpath.yaml"

MakeConfig = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path, redis_url: str) -> MakeConfig:
    """The example config aimed at this test's topic, group, receivers and files."""

    def make(bootstrap: str, topic: str, *, action_url: str, page_url: str,
             group: str | None = None, **extra: Any) -> Config:
        updates: dict[str, Any] = {
            "kafka": {"bootstrap": bootstrap, "topic": topic, "group": group or f"g-{topic}",
                      "commit_interval_s": 0.5, "poll_timeout_ms": 50},
            "redis": {"url": redis_url},
            "pagers": {"webhook": {"url": page_url, "timeout_s": 2.0},
                       "console": {"path": tmp_path / "pages.jsonl", "echo": False},
                       # No Alertmanager runs here: its pages would only fail.
                       "alertmanager": None},
            "audit": {"path": tmp_path / "audit.jsonl"},
            "spool": {"dir": tmp_path / "spool"},
            "metrics": {"port": 0},
            "api": {"port": 0},
            # The scenarios replay a backlog: decisions seconds of event time apart are
            # milliseconds apart on the wall clock, where a per-target cool-down counts.
            "limits": {"cooldown_s": 0},
            "executors": {"webhook": {"url": action_url, "timeout_s": 2.0},
                          "plugins": {"jsonl": {"path": str(tmp_path / "changes.jsonl")}}},
        }
        for section, values in extra.items():
            updates.setdefault(section, {}).update(values)
        return with_overrides(load_config(EXAMPLE), updates)

    return make


@dataclass(frozen=True)
class AuditCall:
    """One API call as the API server audits it (the API tests record and compare these)."""

    actor: Actor | None
    method: str
    path: str
    status: int
    code: str
    detail: str
