"""Router: the catalogue's executor per action, under the action's timeout — with real
webhook receivers and real subprocesses where the timeout has to stop something."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from escalation.catalogue import ActionSpec
from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.executors.base import ActionRequest, Executor
from escalation.executors.command import CommandExecutor
from escalation.executors.fake import FakeExecutor
from escalation.executors.router import Router
from escalation.executors.webhook import WebhookExecutor

from .conftest import Receiver, Reply
from .test_executor_command import script, wait_gone

REQ = ActionRequest("restart_pods", "checkout-eu", "checkout", "f1", "restart:f1", "restart")

ACTIONS = {
    "restart_pods": ActionSpec("restart_pods", executor="webhook", timeout_s=0.2),
    "flush_cache": ActionSpec("flush_cache", executor="command", command=("/bin/echo", "{target}")),
    "open_ticket": ActionSpec("open_ticket", executor="plugin:ticket", idempotent=False),
    "page_owner": ActionSpec("page_owner", executor="plugin:pager"),
    "drain": ActionSpec("drain", idempotent=False, max_attempts=5),
    "scale_up": ActionSpec("scale_up", max_attempts=5),
}


def command_executor() -> CommandExecutor:
    templates = {n: s.command for n, s in ACTIONS.items() if s.executor == "command"}
    return CommandExecutor(templates, ["/bin/echo"], clock=lambda: 0.0)


@pytest.mark.parametrize(
    ("action", "executor", "detail"),
    [("restart_pods", "webhook", "fake: done"),
     ("flush_cache", "command", "checkout-eu"),
     ("open_ticket", "plugin:ticket", "fake: done")],
)
async def test_each_action_goes_to_its_catalogue_executor(
    action: str, executor: str, detail: str
) -> None:
    fakes = {"webhook": FakeExecutor("webhook"), "plugin:ticket": FakeExecutor("ticket")}
    executors: dict[str, Executor] = {**fakes, "command": command_executor()}
    req = replace(REQ, action=action)
    result = await Router(executors, ACTIONS).execute(req)
    assert (result.ok, result.detail) == (True, detail)
    assert {n: f.executed for n, f in fakes.items()} == {
        n: ([req] if n == executor else []) for n in fakes}


@pytest.mark.parametrize(
    ("executors", "action", "message"),
    [({"webhook": FakeExecutor()}, "reboot_fleet", "router: unknown action 'reboot_fleet'"),
     ({"webhook": FakeExecutor(), "command": FakeExecutor()}, "page_owner",
      "router: action 'page_owner' needs executor 'plugin:pager', which is not configured "
      "(configured: command, webhook)"),
     ({}, "restart_pods",
      "router: action 'restart_pods' needs executor 'webhook', which is not configured "
      "(configured: none)")],
)
async def test_unroutable_requests_fail_permanently(
    executors: dict[str, Executor], action: str, message: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as info:
        await Router(executors, ACTIONS).execute(replace(REQ, action=action))
    assert str(info.value) == message


async def test_executor_errors_pass_through_unchanged() -> None:
    error = RetryableDeliveryError("HTTP 503", status=503, retry_after=4.0)
    router = Router({"webhook": FakeExecutor(failures=[error])}, ACTIONS)
    with pytest.raises(RetryableDeliveryError) as info:
        await router.execute(REQ)
    assert info.value is error


async def test_the_action_timeout_bounds_a_slow_webhook(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    receiver.default = Reply(202, delay_s=2.0)
    hook = WebhookExecutor(http_session, receiver.url, timeout_s=30.0)  # its own is too lax
    with pytest.raises(RetryableDeliveryError) as info:
        await Router({"webhook": hook}, ACTIONS).execute(REQ)
    assert str(info.value) == "action restart_pods timed out after 0.2s"
    assert info.value.status is None


async def test_the_action_timeout_kills_a_command_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hang = script(tmp_path, "hang.sh", f'/bin/sleep 30 &\necho $! > {pidfile}\nwait\n')
    slow = ActionSpec("flush_cache", executor="command", timeout_s=1.0, command=(hang,))
    command = CommandExecutor({"flush_cache": slow.command}, [hang], clock=lambda: 0.0,
                              timeout_s=60.0)
    router = Router({"command": command}, {"flush_cache": slow})
    with pytest.raises(RetryableDeliveryError) as info:
        await router.execute(replace(REQ, action="flush_cache"))
    assert str(info.value) == "action flush_cache timed out after 1s"
    assert await wait_gone(int(pidfile.read_text()))


async def test_an_executors_own_timeout_error_is_not_taken_for_the_deadline() -> None:
    router = Router({"webhook": FakeExecutor(failures=[TimeoutError("pool exhausted")])},
                    ACTIONS)
    with pytest.raises(TimeoutError, match=r"^pool exhausted$"):
        await router.execute(REQ)


@pytest.mark.parametrize(
    ("action", "attempts"),
    [("restart_pods", 3), ("scale_up", 5), ("drain", 1), ("open_ticket", 1), ("nope", 1)],
)
def test_attempts_only_for_idempotent_actions(action: str, attempts: int) -> None:
    assert Router({}, ACTIONS).attempts_for(replace(REQ, action=action)) == attempts


def test_name() -> None:
    assert Router({}, {}).name == "router"
    assert Router({}, {}, name="actions").name == "actions"

