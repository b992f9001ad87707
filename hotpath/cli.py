"""The ``hotpath`` command: run, demo, config check/schema, audit verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from hotpath.errors import ConfigError

if TYPE_CHECKING:
    from escalation.limits import LimitOutcome
    from escalation.request import Request
    from hotpath.config import Config


@click.group()
@click.version_option(package_name="hotpath-ops")
def main() -> None:
    """hotpath: telemetry in, anomalies out, bounded automation, humans paged with context."""


@main.command()
@click.option("--config", "config_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
def run(config_path: Path) -> None:
    """Consume telemetry until SIGINT/SIGTERM, then finish the batch, commit and flush."""
    from hotpath.config import load_config
    from hotpath.runtime import run_forever

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        click.echo(f"{config_path}: {e}", err=True)
        sys.exit(2)
    sys.exit(run_forever(cfg))


@main.command()
@click.option("--duration", default=45.0, show_default=True, type=click.FloatRange(min=20),
              help="Seconds the synthetic fleet publishes before the summary.")
@click.option("--out", "out_dir", default=Path("demo-out"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=7, show_default=True, help="Seed of the synthetic fleet.")
def demo(duration: float, out_dir: Path, seed: int) -> None:
    """Run the whole path on an embedded broker and Redis, with injected incidents."""
    from hotpath.demo.run import run_demo
    from hotpath.gc_tuning import tune_gc

    tune_gc()  # the settings `hotpath run` uses
    sys.exit(run_demo(duration=duration, out_dir=out_dir, seed=seed))


@main.group()
def config() -> None:
    """Validate the YAML config or print its JSON Schema."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def config_check(path: Path) -> None:
    """Print every error with its YAML path and line; exit 1 when there is any."""
    from hotpath.config import load_config

    try:
        cfg = load_config(path)
    except ConfigError as e:
        click.echo(f"{path}: {e}", err=True)
        sys.exit(1)
    click.echo(f"{path}: ok (config version {cfg.version_hash()})")


@config.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config file, for editors."""
    from hotpath.config import json_schema

    click.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())


@main.group()
def automation() -> None:
    """The kill switch: pause or resume every automated action, on every replica."""


def _switch(config_path: Path, paused: bool | None, actor: str, reason: str) -> None:
    import asyncio
    import getpass
    import time

    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from escalation.kill_switch import KillSwitch
    from hotpath.config import load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        click.echo(f"{config_path}: {e}", err=True)
        sys.exit(2)

    async def go() -> str:
        client = aioredis.from_url(cfg.redis.url, socket_timeout=5.0,
                                   socket_connect_timeout=5.0)
        try:
            switch = KillSwitch(client, cfg.redis.key_prefix, timeout_s=5.0)
            if paused is None:
                state = await switch.read()
                if state is None:
                    raise RedisError("no answer")
            else:
                state = await switch.set(paused=paused, actor=actor or getpass.getuser(),
                                         reason=reason, now=time.time())
        finally:
            await client.aclose()
        word = "PAUSED" if state.paused else "running"
        if state.version == 0:
            return "automation running (never paused)"
        return (f"automation {word} (version {state.version}, by {state.actor} at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(state.at))}: {state.reason})")

    try:
        click.echo(asyncio.run(go()))
    except (RedisError, OSError) as e:
        click.echo(f"hotpath automation: Redis at {cfg.redis.url} unavailable: {e}", err=True)
        sys.exit(1)


_CONFIG_OPTION = click.option("--config", "config_path", required=True,
                              type=click.Path(exists=True, dir_okay=False, path_type=Path))


@automation.command("pause")
@_CONFIG_OPTION
@click.option("--reason", required=True, help="Why; goes into every processor's audit log.")
@click.option("--actor", default="", help="Who (default: the login name).")
def automation_pause(config_path: Path, reason: str, actor: str) -> None:
    """Stop all automated actions within one batch; cases are paged instead."""
    _switch(config_path, True, actor, reason)


@automation.command("resume")
@_CONFIG_OPTION
@click.option("--reason", required=True, help="Why; goes into every processor's audit log.")
@click.option("--actor", default="", help="Who (default: the login name).")
def automation_resume(config_path: Path, reason: str, actor: str) -> None:
    """Let automation act again."""
    _switch(config_path, False, actor, reason)


@automation.command("status")
@_CONFIG_OPTION
def automation_status(config_path: Path) -> None:
    """Print whether automation is paused, by whom, when and why."""
    _switch(config_path, None, "", "")


@main.group()
def audit() -> None:
    """Inspect the tamper-evident audit log."""


@audit.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", "public_keys", multiple=True, metavar="B64",
              help="Ed25519 public key (base64, 32 raw bytes) whose checkpoints to check; "
                   "repeatable.")
def audit_verify(path: Path, public_keys: tuple[str, ...]) -> None:
    """Exit 0 when the hash chain (and checkpoint signatures) hold; else name the record."""
    from escalation.audit import verify
    from escalation.audit_signing import Verifier
    from escalation.errors import AuditError

    try:
        keys = {Verifier(k, what=f"--public-key {i + 1}").key_id: k
                for i, k in enumerate(public_keys)}
    except AuditError as e:
        click.echo(f"hotpath audit verify: {e}", err=True)
        sys.exit(2)
    report = verify(path, keys or None)
    if not report.ok:
        click.echo(f"{path}: TAMPERED: {report.reason}", err=True)
        sys.exit(1)
    signed = f", {report.checkpoints} signed checkpoints verified" if keys else ""
    click.echo(f"{path}: ok, {report.records} records, chain intact{signed}")
    if keys and report.checkpoints == 0:
        click.echo(f"{path}: warning: no signed checkpoint found: the signatures prove nothing",
                   err=True)


@audit.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--service", default=None, help="Only this service.")
@click.option("--region", default=None, help="Only this region (the series' region label).")
@click.option("--since", default=None, help="30m, 2h, 1d, epoch seconds or ISO 8601 (with Z).")
def audit_show(path: Path, service: str | None, region: str | None, since: str | None) -> None:
    """The timeline of one service or region: decisions, actions, outcomes, kill switch."""
    import time

    from hotpath.audit_show import parse_since, render, select

    try:
        after = None if since is None else parse_since(since, time.time())
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    records = (orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())
    shown = 0
    for rec in select(records, service=service, region=region, since=after):
        click.echo(render(rec))
        shown += 1
    click.echo(f"{shown} records", err=True)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--since", default=None, help="30m, 2h, 1d, epoch seconds or ISO 8601 (with Z).")
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
@click.option("--no-verify", is_flag=True,
              help="Skip checking the hash chain first (the numbers may then lie).")
def report(path: Path, since: str | None, as_json: bool, no_verify: bool) -> None:
    """The scorecard of governed remediation, computed from the audit log.

    The chain is verified first: a scorecard over an edited log would report what the
    editor wanted, so a broken chain is refused (exit 1) unless --no-verify.
    """
    import time

    from escalation.audit import verify
    from escalation.report import scorecard
    from escalation.report_text import render
    from hotpath.audit_show import parse_since

    try:
        after = None if since is None else parse_since(since, time.time())
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    if not no_verify:
        checked = verify(path)
        if not checked.ok:
            click.echo(f"{path}: TAMPERED: {checked.reason}", err=True)
            sys.exit(1)
    records = []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            click.echo(f"{path}: line {n}: not a JSON object", err=True)
            sys.exit(1)
        records.append(rec)
    card = scorecard(records, since=after)
    if as_json:
        click.echo(orjson.dumps(card.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render(card))


if __name__ == "__main__":
    main()


@main.group()
def policy() -> None:
    """Try requests against the policy in the config, without acting."""


@policy.command("test")
@click.argument("request_path", metavar="REQUEST.json",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_CONFIG_OPTION
@click.option("--limits", "with_limits", is_flag=True,
              help="Also read the shared limits in Redis (claims nothing).")
def policy_test(request_path: Path, config_path: Path, with_limits: bool) -> None:
    """Print the decision and every reason for one request; exit 1 if it would be refused."""
    import asyncio
    import time

    from escalation.request_parse import RequestError, parse_request
    from hotpath.config import load_config
    from hotpath.policy_whatif import render, run_policy_test

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        click.echo(f"{config_path}: {e}", err=True)
        sys.exit(2)
    try:
        raw = orjson.loads(request_path.read_bytes())
        req = parse_request(raw, actor=None, now=time.time(),
                            default_environment=cfg.decide.environment)
    except orjson.JSONDecodeError as e:
        click.echo(f"{request_path}: not JSON: {e}", err=True)
        sys.exit(2)
    except RequestError as e:
        click.echo(f"{request_path}: {e}", err=True)
        sys.exit(2)
    limits = asyncio.run(_peek_limits(cfg, req)) if with_limits else None
    result = run_policy_test(req, cfg.catalogue(), cfg.policy.policy(), limits)
    click.echo(render(result))
    sys.exit(result.exit_code)


async def _peek_limits(cfg: Config, req: Request) -> LimitOutcome:
    import time

    import redis.asyncio as aioredis

    from escalation.limits import RedisLimits
    from hotpath.governance import governance

    client = aioredis.from_url(cfg.redis.url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        limits = RedisLimits(client, cfg.limits.limits(), time.time, timeout_s=5.0,
                             prefix=cfg.redis.key_prefix)
        # The same claim the live path would make, read without claiming.
        return await limits.peek(governance(cfg).limit_request(req))
    finally:
        await client.aclose()


@main.group("api")
def api_group() -> None:
    """The action API's principals."""


@api_group.command("hash-token")
@click.option("--token", prompt=True, hide_input=True,
              help="The bearer token (prompted, not echoed, when omitted).")
def api_hash_token(token: str) -> None:
    """Print the token_sha256 to put in a principal of the config (the token stays yours)."""
    from hotpath.api_auth import hash_token

    if len(token) < 16:
        click.echo("hotpath api hash-token: a bearer token needs at least 16 characters", err=True)
        sys.exit(2)
    click.echo(hash_token(token))


@main.group("page")
def page_group() -> None:
    """Recorded pages, as each pager would send them."""


@page_group.command("render")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "adapter", required=True,
              type=click.Choice(["slack", "slack-text", "pagerduty", "opsgenie",
                                 "alertmanager"]))
@click.option("--match", default=None,
              help="The last page whose dedup key, service or summary contains this.")
def page_render(path: Path, adapter: str, match: str | None) -> None:
    """Print the payload an adapter would send for one page of a pages.jsonl file."""
    import time

    from hotpath.page_render import RENDERERS, pick, read_pages, slack_text

    try:
        page = pick(read_pages(path), match)
    except (ValueError, LookupError) as e:
        click.echo(f"hotpath page render: {e}", err=True)
        sys.exit(1)
    if adapter == "slack-text":
        click.echo(slack_text(RENDERERS["slack"](page, time.time())))
        return
    payload = RENDERERS[adapter](page, time.time())
    click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
