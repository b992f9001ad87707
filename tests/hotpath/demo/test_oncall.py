"""The demo's on-call against a real local HTTP server standing in for the action API."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from hotpath.demo.oncall import OnCall, OnCallAnswer, approval_id_of

TOKEN = "alice-demo-token"


@dataclass
class FakeApi:
    """``POST /v1/approvals/{id}/approve``: records each call, answers from ``answers``."""

    answers: dict[str, tuple[int, dict[str, Any]]]
    calls: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def link(self, approval_id: str, token: str = "tok.1") -> str:
        return f"http://127.0.0.1:{self.port}/v1/approvals/{approval_id}/approve?token={token}"

    async def approve(self, request: web.Request) -> web.Response:
        aid = request.match_info["approval_id"]
        self.calls.append({"path": request.path, "token": request.query.get("token"),
                           "authorization": request.headers.get("Authorization"),
                           "body": await request.read()})
        status, body = self.answers[aid]
        return web.Response(status=status, body=orjson.dumps(body),
                            content_type="application/json")


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    fake = FakeApi({
        "apr_ok": (200, {"approval_id": "apr_ok", "state": "approved", "approver": "human:alice",
                         "note": "", "request": {"action": "failover_region",
                                                 "target": "service/shipping"}}),
        "apr_rights": (403, {"error": "not_authorized",
                             "detail": "human:alice may not approve failover_region"}),
        "apr_late": (410, {"error": "approval_expired", "detail": "expired at 1764132600"}),
    })
    app = web.Application()
    app.router.add_post("/v1/approvals/{approval_id}/approve", fake.approve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    yield fake
    await runner.cleanup()


def ticking(*values: float) -> Iterator[float]:
    yield from values


def page(links: dict[str, str]) -> dict[str, Any]:
    return {"dedup_key": "hotpath-f1", "service": "shipping", "links": links}


async def test_approves_the_link_with_the_bearer_token(api: FakeApi) -> None:
    said: list[str] = []
    times = ticking(100.0, 101.5)  # the page arrives, then the API answers
    async with OnCall(TOKEN, name="alice", delay_s=0, clock=lambda: next(times),
                      say=said.append) as on_call:
        on_call.on_page(page({"approve": api.link("apr_ok"), "deny": "http://x/deny"}))
    assert api.calls == [{"path": "/v1/approvals/apr_ok/approve", "token": "tok.1",
                          "authorization": f"Bearer {TOKEN}", "body": b""}]
    assert on_call.answers == [OnCallAnswer("apr_ok", 200, "approved", "", 1.5, "alice",
                                            "human:alice", "failover_region",
                                            "service/shipping")]
    assert said == ["on-call human:alice approved apr_ok (failover_region service/shipping) "
                    "after 1.5 s"]


@pytest.mark.parametrize(
    ("approval_id", "status", "code", "detail"),
    [
        ("apr_rights", 403, "not_authorized", "human:alice may not approve failover_region"),
        ("apr_late", 410, "approval_expired", "expired at 1764132600"),
    ],
)
async def test_refusal_is_logged_and_kept_not_raised(
    api: FakeApi, caplog: pytest.LogCaptureFixture, approval_id: str, status: int, code: str,
    detail: str,
) -> None:
    times = ticking(10.0, 12.0)
    with caplog.at_level(logging.INFO, logger="hotpath.demo.oncall"):
        async with OnCall(TOKEN, name="alice", delay_s=0, clock=lambda: next(times)) as on_call:
            on_call.on_page(page({"approve": api.link(approval_id)}))
    assert on_call.answers == [OnCallAnswer(approval_id, status, code, detail, 2.0, "alice")]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"on-call alice could not approve {approval_id}: {status} {code} — {detail}")]


async def test_pages_without_an_approve_link_or_seen_before_are_not_answered(
        api: FakeApi) -> None:
    said: list[str] = []
    async with OnCall(TOKEN, delay_s=0, say=said.append) as on_call:
        on_call.on_page(page({}))
        on_call.on_page({"dedup_key": "hotpath-f0"})  # a page from before links existed
        on_call.on_page(page({"deny": api.link("apr_ok").replace("approve?", "deny?")}))
        on_call.on_page(page({"approve": api.link("apr_ok")}))
        on_call.on_page(page({"approve": api.link("apr_ok")}))  # re-sent with a new dedup key
    assert [c["path"] for c in api.calls] == ["/v1/approvals/apr_ok/approve"]
    assert len(said) == 1


async def test_no_answer_is_kept_with_its_reason() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    times = ticking(0.0, 0.25)
    async with OnCall(TOKEN, name="alice", delay_s=0, clock=lambda: next(times),
                      say=lambda _: None) as on_call:
        on_call.on_page(page({"approve": f"http://127.0.0.1:{port}/v1/approvals/apr_9/approve"
                                         "?token=t"}))
    (answer,) = on_call.answers
    assert (answer.approval_id, answer.status, answer.code, answer.after_s) == (
        "apr_9", None, "unreachable", 0.25)
    assert answer.line().startswith("on-call alice could not approve apr_9: no answer "
                                           "unreachable — ClientConnectorError")


def test_approval_id_of_links() -> None:
    assert approval_id_of("https://hotpath.example/v1/approvals/apr_7/deny?token=x") == "apr_7"
    assert approval_id_of("https://hotpath.example/v1/approvals//approve") is None
    assert approval_id_of("https://hotpath.example/v1/approvals/apr_7") is None


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError) as err:
        OnCall(TOKEN, delay_s=-1)
    assert str(err.value) == "on-call: delay_s must be >= 0, got -1"


async def test_answering_outside_the_context_is_refused() -> None:
    with pytest.raises(RuntimeError) as err:
        await OnCall(TOKEN, delay_s=0).approve("http://127.0.0.1:1/v1/approvals/a/approve", 0.0)
    assert str(err.value) == "on-call: use `async with OnCall(...)` before answering pages"
