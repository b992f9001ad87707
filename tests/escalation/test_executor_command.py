"""CommandExecutor running real programs: /bin/echo, /bin/sleep and shell scripts in tmp_path
invoked by their absolute path (allowlisted exactly) — real subprocesses, no mocks."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.executors.base import ActionRequest, ActionResult
from escalation.executors.command import CommandExecutor, template_problems

REQ = ActionRequest(
    action="restart_pods", target="checkout-eu", service="checkout", finding_id="f1",
    idempotency_key="restart:f1", rule="restart", params={"ns": "shop floor", "replicas": 3},
)


def ticks(*values: float) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


def script(tmp_path: Path, name: str, body: str) -> str:
    """An executable /bin/sh script in tmp_path; returns its absolute path."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def executor(template: Sequence[str], allow: Sequence[str] = (), **kw: Any) -> CommandExecutor:
    kw.setdefault("clock", lambda: 0.0)
    return CommandExecutor({"restart_pods": template}, [template[0], *allow], **kw)


def process_gone(pid: int) -> bool:
    """Exited and reaped, or a zombie (dead, waiting for a parent that may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def wait_gone(pid: int) -> bool:
    for _ in range(200):
        if process_gone(pid):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_runs_the_rendered_argv_and_returns_stdout() -> None:
    ex = executor(["/bin/echo", "restart", "{target}", "--ns={params[ns]}",
                   "{params[replicas]}", "{idempotency_key}", "{service}", "{action}"],
                  clock=ticks(1.0, 1.25))
    result = await ex.execute(REQ)
    assert result == ActionResult(
        True, 0, "restart checkout-eu --ns=shop floor 3 restart:f1 checkout restart_pods", 0.25)


async def test_values_stay_one_inert_argument_each(tmp_path: Path) -> None:
    argv = script(tmp_path, "args.sh", 'printf "%s|" "$#" "$@"\n')
    req = replace(REQ, target="a b; rm -rf / $(reboot) `id` *", params={"flag": True})
    result = await executor([argv, "{target}", "x={params[flag]}"]).execute(req)
    assert result.detail == "2|a b; rm -rf / $(reboot) `id` *|x=true|"


async def test_environment_is_small_and_carries_the_idempotency_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOTPATH_AUDIT_KEY", "do-not-leak")
    argv = script(tmp_path, "env.sh",
                  'echo "key=$HOTPATH_IDEMPOTENCY_KEY audit=${HOTPATH_AUDIT_KEY:-unset} '
                  'kube=${KUBECONFIG:-unset}"\n')
    assert (await executor([argv]).execute(REQ)).detail == (
        "key=restart:f1 audit=unset kube=unset")
    given = executor([argv], env={"KUBECONFIG": "/etc/kube/config"})
    assert (await given.execute(REQ)).detail == (
        "key=restart:f1 audit=unset kube=/etc/kube/config")


async def test_stdin_is_closed(tmp_path: Path) -> None:
    argv = script(tmp_path, "stdin.sh",
                  'if read line; then echo "got $line"; else echo "stdin at EOF"; fi\n')
    assert (await executor([argv]).execute(REQ)).detail == "stdin at EOF"


@pytest.mark.parametrize(
    ("template", "req", "message"),
    [(["/bin/rm", "-rf", "{target}"], REQ,
      "command executor: program '/bin/rm' is not in the allowlist"),
     (["rm", "{target}"], REQ, "command executor: program 'rm' is not in the allowlist"),
     (["/bin/echo/../rm", "{target}"], REQ,
      "command executor: program '/bin/echo/../rm' is not in the allowlist"),
     (["{params[prog]}", "{target}"], replace(REQ, params={"prog": "/bin/rm"}),
      "command executor: program '/bin/rm' is not in the allowlist")],
)
async def test_programs_outside_the_allowlist_are_refused(
    template: list[str], req: ActionRequest, message: str
) -> None:
    ex = CommandExecutor({"restart_pods": template}, ["/bin/echo"], clock=lambda: 0.0)
    with pytest.raises(PermanentDeliveryError) as info:
        await ex.execute(req)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("template", "req", "message"),
    [(["/bin/echo", "{target}"], replace(REQ, target="--force"),
      "value '--force' for '{target}' would start an argv element with '-' (option injection)"),
     (["/bin/echo", "{params[ns]}{target}"], replace(REQ, params={"ns": ""}, target="-rf"),
      "value '-rf' for '{target}' would start an argv element with '-' (option injection)"),
     (["/bin/echo", "{params[n]}"], replace(REQ, params={"n": -3}),
      "value '-3' for '{params[n]}' would start an argv element with '-' (option injection)"),
     (["/bin/echo", "{target}"], replace(REQ, target="a\0b"),
      "value for '{target}' holds a NUL byte"),
     (["/bin/echo", "{host}"], REQ, "unknown placeholder '{host}'"),
     (["/bin/echo", "{target.__class__}"], REQ, "unknown placeholder '{target.__class__}'"),
     (["/bin/echo", "{params[ns]!r}"], REQ, "unknown placeholder '{params[ns]!r}'"),
     (["/bin/echo", "{target:>40}"], REQ, "unknown placeholder '{target:>40}'"),
     (["/bin/echo", "{}"], REQ, "unknown placeholder '{}'"),
     (["/bin/echo", "{params[0]}"], REQ, "unknown placeholder '{params[0]}'"),
     (["/bin/echo", "{finding_id}"], REQ, "unknown placeholder '{finding_id}'"),
     (["/bin/echo", "{target"], REQ, "expected '}' before end of string"),
     (["/bin/echo", "{params[force]}"], REQ,
      "action 'restart_pods' has no parameter 'force' for '{params[force]}'"),
     (["/bin/echo", "{params[ns]}"], replace(REQ, params={"ns": ["a", "b"]}),
      "parameter 'ns' must be a string, number or boolean, got list")],
)
async def test_refused_substitutions_name_the_problem(
    template: list[str], req: ActionRequest, message: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as info:
        await executor(template).execute(req)
    assert str(info.value) == f"command executor: action 'restart_pods': {message}"


async def test_a_dash_from_the_template_itself_is_fine() -> None:
    req = replace(REQ, target="-1")
    ex = executor(["/bin/echo", "-n", "--offset={target}"])
    assert (await ex.execute(req)).detail == "--offset=-1"


async def test_actions_without_a_template_are_refused() -> None:
    ex = CommandExecutor({"restart_pods": (), "drain": ["/bin/echo"]}, ["/bin/echo"],
                         clock=lambda: 0.0)
    with pytest.raises(PermanentDeliveryError) as info:
        await ex.execute(replace(REQ, action="scale_up"))
    assert str(info.value) == "command executor: no command template for action 'scale_up'"
    with pytest.raises(PermanentDeliveryError) as info:
        await ex.execute(REQ)
    assert str(info.value) == "command executor: empty command template for action 'restart_pods'"


@pytest.mark.parametrize(
    ("make", "reason"),
    [(lambda d: str(d / "absent.sh"), "No such file or directory"),
     (lambda d: str(d), "Permission denied")],
)
async def test_an_allowlisted_program_that_cannot_run_is_permanent(
    tmp_path: Path, make: Callable[[Path], str], reason: str
) -> None:
    program = make(tmp_path)
    with pytest.raises(PermanentDeliveryError) as info:
        await executor([program]).execute(REQ)
    assert str(info.value) == f"command executor: cannot run {program}: {reason}"


def test_allowlist_entries_must_be_absolute_paths() -> None:
    with pytest.raises(ValueError) as info:
        CommandExecutor({}, ["/bin/echo", "sh"], clock=lambda: 0.0)
    assert str(info.value) == "command executor: allowlist entry 'sh' is not an absolute path"


def test_template_problems_for_config_validation() -> None:
    assert template_problems([]) == ("empty template",)
    assert template_problems(["/bin/echo", "{target}", "{x}", "{params[y]}", "{"]) == (
        "unknown placeholder '{x}'", "Single '{' encountered in format string")


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    argv = script(tmp_path, "hang.sh", f'/bin/sleep 30 &\necho $! > {pidfile}\nwait\n')
    # Long enough for sh to start and write the pid even on a loaded machine.
    ex = executor([argv], timeout_s=1.0)
    with pytest.raises(RetryableDeliveryError) as info:
        await ex.execute(REQ)
    assert str(info.value) == f"command executor: {argv} timed out after 1s"
    assert await wait_gone(int(pidfile.read_text()))  # the grandchild too, not just sh


async def test_timeout_kills_children_left_behind_by_an_exited_leader(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The leader exits at once; its child keeps stdout open, so the output never ends.
    argv = script(tmp_path, "leave.sh", f'/bin/sleep 30 &\necho $! > {pidfile}\nexit 0\n')
    with pytest.raises(RetryableDeliveryError) as info:
        await executor([argv], timeout_s=1.0).execute(REQ)
    assert str(info.value) == f"command executor: {argv} timed out after 1s"
    assert await wait_gone(int(pidfile.read_text()))


async def test_sleep_past_the_timeout_is_retryable() -> None:
    with pytest.raises(RetryableDeliveryError) as info:
        await executor(["/bin/sleep", "30"], timeout_s=0.2).execute(REQ)
    assert str(info.value) == "command executor: /bin/sleep timed out after 0.2s"


async def test_cancellation_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    argv = script(tmp_path, "hang.sh", f'echo $$ > {pidfile}\n/bin/sleep 30\n')
    task = asyncio.create_task(executor([argv]).execute(REQ))
    for _ in range(500):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(int(pidfile.read_text()))


@pytest.mark.parametrize(
    ("body", "error", "status", "message"),
    [("echo 'lock held' >&2\nexit 75\n", RetryableDeliveryError, 75, "exited 75: lock held"),
     ("echo 'no such deployment' >&2\nexit 3\n", PermanentDeliveryError, 3,
      "exited 3: no such deployment"),
     ("exit 1\n", PermanentDeliveryError, 1, "exited 1"),
     ("kill -TERM $$\n", PermanentDeliveryError, -15, "was killed by signal SIGTERM")],
)
async def test_exit_codes_are_classified(
    tmp_path: Path, body: str, error: type[Exception], status: int, message: str
) -> None:
    argv = script(tmp_path, "fail.sh", body)
    with pytest.raises(error) as info:
        await executor([argv]).execute(REQ)
    assert type(info.value) is error
    assert str(info.value) == f"command executor: {argv} {message}"
    assert getattr(info.value, "status", None) == status


async def test_output_is_cut_to_its_tail(tmp_path: Path) -> None:
    argv = script(tmp_path, "chatty.sh",
                  'i=0\nwhile [ $i -lt 5000 ]; do echo "line $i"; echo "err $i" >&2; '
                  'i=$((i+1)); done\nexit ${1:-0}\n')
    ok = executor([argv], output_limit=16)
    assert (await ok.execute(REQ)).detail == "4998\nline 4999"
    failing = executor([argv, "{params[code]}"], output_limit=12)
    with pytest.raises(PermanentDeliveryError) as info:
        await failing.execute(replace(REQ, params={"code": 4}))
    assert str(info.value) == f"command executor: {argv} exited 4: 98\nerr 4999"
    silent = executor([argv], output_limit=0)
    assert (await silent.execute(REQ)).detail == ""

