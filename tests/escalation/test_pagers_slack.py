"""SlackPager against a fake Slack incoming webhook that checks Block Kit like Slack does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.errors import PermanentDeliveryError, RetryableDeliveryError
from escalation.pagers.slack import SlackPager, slack_message

from .chat_apis import (
    APPROVE,
    CHART,
    CONSOLE,
    CONTEXT,
    DENY,
    PAGE,
    Invalid,
    Refusal,
    SlackWebhookApi,
    check_slack_message,
    serve,
)
from .conftest import Reply


def md(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


EXPECTED_BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "[CRITICAL] checkout error_ratio"}},
    {"type": "section", "text": md(
        "checkout error_ratio{region=eu} 0.21 vs baseline 0.004 (dev 12.3) — budget exhausted")},
    {"type": "section", "fields": [
        md("*Value*\n0.21 vs baseline 0.004"), md("*Deviation*\n12.3"),
        md("*Confidence*\n97%"), md("*Detectors*\newma, mad"),
        md("*Since*\n2025-11-26T04:38:00Z"), md("*Labels*\nregion=eu"),
        md("*Incident*\ninc-checkout-eu")]},
    {"type": "context", "elements": [{"type": "plain_text", "text": "▁▁▂▁▃█"},
                                     md(f"<{CHART}|Open chart>")]},
    {"type": "section", "text": md(
        "*Automation*\n• why not: budget exhausted\n• rule: restart-checkout\n"
        "• action: restart_pods\n• target: deployment/checkout")},
    {"type": "section", "text": md(
        "*Owner* payments-core\n*Runbook* <https://runbooks.example/checkout|runbook>")},
    {"type": "section", "text": md(
        "*Recent changes*\n• kind: deploy, service: checkout, ts: 2025-11-26 04:35:00 UTC, "
        "actor: ci, version: v1.4.2, description: new retry policy, before_s: 180")},
    {"type": "section", "text": md(
        "*Suggested next steps*\n• a deploy of checkout v1.4.2 went out 3 min before the "
        "anomaly: consider rolling it back\n• check the runbook: https://runbooks.example/checkout")},
    {"type": "section", "text": md(
        "*Correlated findings*\n• service: payments, metric: latency_p99_ms, region: eu, "
        "value: 950, baseline: 210, since: 2025-11-26T04:37:30Z")},
]


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhookApi]:
    async with serve(SlackWebhookApi()) as api:
        yield api


async def test_a_trigger_is_the_whole_layout(
    slack: SlackWebhookApi, http_session: aiohttp.ClientSession
) -> None:
    await SlackPager(http_session, slack.url).send(PAGE)
    assert slack.accepted == [{
        "text": "[CRITICAL] checkout error_ratio: checkout error_ratio{region=eu} 0.21 vs "
                "baseline 0.004 (dev 12.3) — budget exhausted",
        "blocks": EXPECTED_BLOCKS,
    }]


async def test_an_approval_page_has_buttons_with_the_exact_urls(
    slack: SlackWebhookApi, http_session: aiohttp.ClientSession
) -> None:
    automation = {**CONTEXT["automation"], "status": "pending_approval",
                  "approval": {"approve": APPROVE, "deny": DENY,
                               "expires": "2025-11-26T05:38:00Z"}}
    page = replace(PAGE, links={"console": CONSOLE, "deny": DENY, "approve": APPROVE},
                   context={**CONTEXT, "automation": automation})
    await SlackPager(http_session, slack.url).send(page)
    [message] = slack.accepted
    assert message["blocks"][4]["text"]["text"].splitlines() == [
        "*Automation*", "• why not: budget exhausted", "• rule: restart-checkout",
        "• action: restart_pods", "• target: deployment/checkout",
        "• status: pending_approval",
        "• approval pending (expires 2025-11-26T05:38:00Z): approve or deny below",
    ]
    assert message["blocks"][-1] == {"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "url": APPROVE,
         "value": "inc-checkout-eu", "action_id": "hotpath_approve", "style": "primary"},
        {"type": "button", "text": {"type": "plain_text", "text": "Deny"}, "url": DENY,
         "value": "inc-checkout-eu", "action_id": "hotpath_deny", "style": "danger"},
        {"type": "button", "text": {"type": "plain_text", "text": "Open in console"},
         "url": CONSOLE, "value": "inc-checkout-eu", "action_id": "hotpath_console"},
    ]}


def test_links_slack_cannot_carry_get_no_button() -> None:
    page = replace(PAGE, links={"ack": "javascript:alert(1)", "console": "https://x/" + "a" * 3000,
                                "escalate_now": "https://hotpath.example/escalate"})
    assert slack_message(page)["blocks"][-1]["elements"] == [
        {"type": "button", "text": {"type": "plain_text", "text": "Escalate now"},
         "url": "https://hotpath.example/escalate", "value": "inc-checkout-eu",
         "action_id": "hotpath_escalate_now"}]


async def test_a_resolve_is_one_short_line(
    slack: SlackWebhookApi, http_session: aiohttp.ClientSession
) -> None:
    await SlackPager(http_session, slack.url).send(replace(PAGE, event="resolve",
                                                           links={"approve": APPROVE}))
    assert slack.accepted == [{
        "text": "[RESOLVED] checkout error_ratio: checkout error_ratio{region=eu} 0.21 vs "
                "baseline 0.004 (dev 12.3) — budget exhausted",
        "blocks": [
            {"type": "section", "text": md(
                "✅ *Resolved* checkout error_ratio — checkout error_ratio{region=eu} 0.21 vs "
                "baseline 0.004 (dev 12.3) — budget exhausted")},
            {"type": "context", "elements": [md("incident inc-checkout-eu")]},
        ],
    }]


def test_text_is_escaped_for_mrkdwn_and_never_cut_inside_an_entity() -> None:
    page = replace(PAGE, summary="p99 <5ms & rising" + "&" * 3000)
    text = slack_message(page)["blocks"][1]["text"]["text"]
    assert text.startswith("p99 &lt;5ms &amp; rising&amp;")
    # 2999 characters hold 595 whole "&amp;" after the 29-character start, plus "&am" cut off.
    assert text == "p99 &lt;5ms &amp; rising" + "&amp;" * 595 + "…"


async def test_an_oversized_page_is_cut_to_every_limit_and_passes(
    slack: SlackWebhookApi, http_session: aiohttp.ClientSession
) -> None:
    correlated = [{"service": f"svc{i}", "metric": "latency", "region": "eu", "value": i,
                   "baseline": 1.0, "since": "2025-11-26T04:37:30Z"} for i in range(200)]
    extras = {f"extra_{i:02}": f"note {i}" for i in range(60)}
    context = {**CONTEXT, "correlated": correlated, "correlated_more": 40,
               "dump": "y" * 2_000_000, **extras,
               "owner": {"team": "t" * 5000}, "sparkline": "▁" * 4000}
    page = replace(PAGE, summary="x" * 5000, metric="m" * 200, detectors=("d" * 2500,),
                   links={"approve": APPROVE, "deny": DENY}, context=context)
    await SlackPager(http_session, slack.url).send(page)
    [message] = slack.accepted
    blocks = message["blocks"]
    assert len(blocks) == 50
    assert message["text"] == "[CRITICAL] checkout " + "m" * 200 + ": " + "x" * 77 + "…"
    assert len(message["text"]) == 300
    assert blocks[0]["text"]["text"] == ("[CRITICAL] checkout " + "m" * 200)[:149] + "…"
    assert blocks[1]["text"]["text"] == "x" * 2999 + "…"
    assert blocks[2]["fields"][3]["text"] == "*Detectors*\n" + "d" * 1987 + "…"
    assert blocks[3]["elements"][0] == {"type": "plain_text", "text": "▁" * 2999 + "…"}
    assert blocks[5]["text"]["text"] == ("*Owner* " + "t" * 999 + "…\n"
                                         "*Runbook* <https://runbooks.example/checkout|runbook>")
    correlated_lines = blocks[8]["text"]["text"].splitlines()
    assert correlated_lines[0] == "*Correlated findings*"
    assert correlated_lines[1] == ("• service: svc0, metric: latency, region: eu, value: 0, "
                                   "baseline: 1, since: 2025-11-26T04:37:30Z")
    assert correlated_lines[-1] == "• … and 230 more in the console"
    assert len(correlated_lines) == 12
    # The 2 MB "dump" is one line of a section of its own, like every unknown key.
    assert blocks[9]["text"]["text"] == "*dump*\n• " + "y" * 299 + "…"
    # 71 blocks wanted: the unknown keys have the lowest priority and the latest of them go
    # first; a note takes the 50th place, before the buttons.
    titles = [b["text"]["text"].split("\n")[0] for b in blocks[10:48]]
    assert titles == [f"*extra_{i:02}*" for i in range(38)]
    assert blocks[48] == {"type": "context", "elements": [md(
        "22 more sections left out (Slack shows 50 blocks); the whole page is in the console")]}
    assert [b["text"]["text"] for b in blocks[49]["elements"]] == ["Approve", "Deny"]


async def test_slack_refuses_what_the_pager_must_never_send(
    slack: SlackWebhookApi, http_session: aiohttp.ClientSession
) -> None:
    bad = slack_message(PAGE)
    bad["blocks"] = bad["blocks"] * 6  # 54 blocks
    async with http_session.post(slack.url, data=orjson.dumps(bad),
                                 headers={"Content-Type": "application/json"}) as resp:
        assert (resp.status, await resp.text()) == (400, "invalid_blocks")
    assert slack.refused == [Refusal(400, "invalid_blocks", "blocks: 54 blocks, over 50")]
    assert slack.accepted == []


def header(text: str, kind: str = "plain_text") -> dict[str, Any]:
    return {"type": "header", "text": {"type": kind, "text": text}}


def button(**over: Any) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": "Go"}, **over}


@pytest.mark.parametrize(("payload", "error", "detail"), [
    ([], "invalid_payload", "the body must be a JSON object"),
    ({}, "no_text", "neither text nor blocks"),
    ({"text": "t" * 40001}, "msg_too_long", "text: 40001 characters, over 40000"),
    ({"blocks": []}, "invalid_blocks", "blocks: must be a non-empty array"),
    ({"blocks": [header("h" * 151)]}, "invalid_blocks",
     "blocks[0].text.text: 151 characters, over 150"),
    ({"blocks": [header("h", "mrkdwn")]}, "invalid_blocks",
     "blocks[0].text.type: 'mrkdwn', must be plain_text"),
    ({"blocks": [{"type": "section", "text": md("s" * 3001)}]}, "invalid_blocks",
     "blocks[0].text.text: 3001 characters, over 3000"),
    ({"blocks": [{"type": "section", "text": md("")}]}, "invalid_blocks",
     "blocks[0].text.text: must be a non-empty string"),
    ({"blocks": [{"type": "section"}]}, "invalid_blocks",
     "blocks[0]: a section needs text or fields"),
    ({"blocks": [{"type": "section", "fields": [md("f")] * 11}]}, "invalid_blocks",
     "blocks[0].fields: 11 items, over 10"),
    ({"blocks": [{"type": "section", "fields": [md("f" * 2001)]}]}, "invalid_blocks",
     "blocks[0].fields[0].text: 2001 characters, over 2000"),
    ({"blocks": [{"type": "context", "elements": [md("c")] * 11}]}, "invalid_blocks",
     "blocks[0].elements: 11 items, over 10"),
    ({"blocks": [{"type": "actions", "elements": [button()] * 26}]}, "invalid_blocks",
     "blocks[0].elements: 26 items, over 25"),
    ({"blocks": [{"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "b" * 76}}]}]},
     "invalid_blocks", "blocks[0].elements[0].text.text: 76 characters, over 75"),
    ({"blocks": [{"type": "actions", "elements": [button(url="https://x/" + "u" * 2991)]}]},
     "invalid_blocks", "blocks[0].elements[0].url: 3001 characters, over 3000"),
    ({"blocks": [{"type": "actions", "elements": [button(action_id="a" * 256)]}]},
     "invalid_blocks", "blocks[0].elements[0].action_id: 256 characters, over 255"),
    ({"blocks": [{"type": "actions", "elements": [button(value="v" * 2001)]}]},
     "invalid_blocks", "blocks[0].elements[0].value: 2001 characters, over 2000"),
    ({"blocks": [{"type": "actions", "elements": [button(style="green")]}]},
     "invalid_blocks", "blocks[0].elements[0].style: 'green', must be primary or danger"),
    ({"blocks": [{"type": "actions", "elements": [button(action_id="a"), button(action_id="a")]}]},
     "invalid_blocks", "blocks[0].elements[1].action_id: 'a' repeated"),
    ({"blocks": [{"type": "banner"}]}, "invalid_blocks",
     "blocks[0].type: unknown block type 'banner'"),
])
async def test_each_block_kit_limit_is_checked(
    slack: SlackWebhookApi, http_session: aiohttp.ClientSession,
    payload: Any, error: str, detail: str,
) -> None:
    async with http_session.post(slack.url, data=orjson.dumps(payload),
                                 headers={"Content-Type": "application/json"}) as resp:
        assert (resp.status, await resp.text()) == (400, error)
    assert slack.refused == [Refusal(400, error, detail)]


@pytest.mark.parametrize(("reply", "error", "message", "retry_after"), [
    (Reply(400, body=b"invalid_blocks"), PermanentDeliveryError, "HTTP 400: invalid_blocks",
     None),
    (Reply(400, body=b"invalid_payload"), PermanentDeliveryError, "HTTP 400: invalid_payload",
     None),
    (Reply(404, body=b"no_service"), PermanentDeliveryError, "HTTP 404: no_service", None),
    (Reply(410, body=b"channel_is_archived"), PermanentDeliveryError,
     "HTTP 410: channel_is_archived", None),
    (Reply(429, {"Retry-After": "30"}, body=b"rate_limited"), RetryableDeliveryError,
     "HTTP 429: rate_limited", 30.0),
    (Reply(500, body=b""), RetryableDeliveryError, "HTTP 500", None),
    (Reply(503, body=b"service_unavailable"), RetryableDeliveryError,
     "HTTP 503: service_unavailable", None),
])
async def test_answers_are_classified(
    slack: SlackWebhookApi, http_session: aiohttp.ClientSession,
    reply: Reply, error: type[Exception], message: str, retry_after: float | None,
) -> None:
    slack.script.append(reply)
    pager = SlackPager(http_session, slack.url)
    with pytest.raises(error) as info:
        await pager.send(PAGE)
    assert type(info.value) is error
    assert str(info.value) == message
    assert info.value.retry_after == retry_after  # type: ignore[attr-defined]
    await pager.send(PAGE)  # the script is spent: the same page now goes through
    assert len(slack.accepted) == 1


# What a page's context can hold: it crossed the outbox as JSON (orjson: 64-bit integers).
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
# The keys adapters render specially, so each shape reaches each renderer; and any others.
context_keys = st.sampled_from(sorted(CONTEXT)) | st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    summary=st.text(max_size=4000), metric=st.text(max_size=300), service=st.text(max_size=50),
    context=st.dictionaries(context_keys, json_values, max_size=70),
    links=st.dictionaries(st.text(max_size=30), st.text(max_size=40).map(
        lambda s: "https://h.example/" + s), max_size=30),
    event=st.sampled_from(["trigger", "acknowledge", "resolve"]),
)
def test_any_page_makes_a_message_slack_accepts(
    summary: str, metric: str, service: str, context: dict[str, Any], links: dict[str, str],
    event: Any,
) -> None:
    page = replace(PAGE, summary=summary, metric=metric, service=service, context=context,
                   links=links, event=event)
    try:
        check_slack_message(orjson.loads(orjson.dumps(slack_message(page))))
    except Invalid as e:  # pragma: no cover - the failure report
        raise AssertionError(f"{e.error}: {e.detail}") from None


def test_slack_declares_its_webhook_rate_so_the_sender_waits_instead_of_a_429() -> None:
    from escalation.pagers.slack import SlackPager
    from escalation.rate_limit import RateLimit, declared_limit

    assert declared_limit(SlackPager) == RateLimit(60, 60.0)
