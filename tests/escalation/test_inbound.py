"""Inbound webhook verification and parsing (pure): PagerDuty v3 and Slack."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from escalation.errors import RequestError, SignatureError
from escalation.inbound import (
    InboundAction,
    parse_pagerduty,
    parse_slack,
    verify_pagerduty,
    verify_slack,
)

NOW = 1764132000.0
PD_SECRET = b"pd-webhook-secret-0f3a"
SLACK_SECRET = b"slack-signing-secret-77c1"


def pd_sign(secret: bytes, body: bytes) -> str:
    """PagerDuty's documented scheme: v1= hex HMAC-SHA256 of the raw body."""
    return "v1=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def slack_sign(secret: bytes, ts: int, body: bytes) -> str:
    """Slack's documented scheme: v0= hex HMAC-SHA256 of "v0:{ts}:{body}"."""
    return "v0=" + hmac.new(secret, f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()


def pd_event(event_type: str = "incident.acknowledged", **over: Any) -> bytes:
    event: dict[str, Any] = {
        "id": "01DFR9XMGYSX8Y6FDNDMYSE5XP", "event_type": event_type,
        "resource_type": "incident", "occurred_at": "2025-11-26T04:39:30.512Z",
        "agent": {"id": "PLH1HKV", "summary": "Jane Doe", "type": "user_reference"},
        "data": {"id": "PGR0VU2", "type": "incident", "incident_key": "inc-checkout-1",
                 "status": "acknowledged"},
    }
    event.update(over)
    return orjson.dumps({"event": event})


def slack_body(action_id: str = "ack", value: str = "inc-checkout-1", **over: Any) -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions", "trigger_id": "1337.42.abcdef",
        "user": {"id": "U024BE7LH", "username": "jane", "name": "jane"},
        "actions": [{"type": "button", "action_id": action_id, "value": value,
                     "action_ts": "1764131990.25"}],
    }
    payload.update(over)
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


# --- PagerDuty signatures --------------------------------------------------------------

def test_pagerduty_signature_accepts_any_configured_secret_and_any_listed_signature() -> None:
    body = pd_event()
    verify_pagerduty([PD_SECRET], {"X-PagerDuty-Signature": pd_sign(PD_SECRET, body)}, body)
    # Rotation: PagerDuty lists several signatures; we accept several secrets.
    header = f"{pd_sign(b'new-secret', body)}, {pd_sign(PD_SECRET, body)}"
    verify_pagerduty([b"other", PD_SECRET], {"x-pagerduty-signature": header}, body)


@pytest.mark.parametrize("headers, message", [
    ({}, "pagerduty: missing X-PagerDuty-Signature header"),
    ({"X-PagerDuty-Signature": "v1"},
     "pagerduty: malformed X-PagerDuty-Signature: 'v1' is not version=signature"),
    ({"X-PagerDuty-Signature": "v9=abcd"},
     "pagerduty: X-PagerDuty-Signature has no v1 signature"),
    ({"X-PagerDuty-Signature": "v1=" + "0" * 64},
     "pagerduty: no v1 signature matches the body under any of 1 secret(s)"),
])
def test_pagerduty_refusals_say_what_is_wrong(headers: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureError) as e:
        verify_pagerduty([PD_SECRET], headers, pd_event())
    assert str(e.value) == message


def test_pagerduty_wrong_secret_and_altered_body_are_refused() -> None:
    body = pd_event()
    header = {"X-PagerDuty-Signature": pd_sign(b"not-our-secret", body)}
    with pytest.raises(SignatureError) as e:
        verify_pagerduty([PD_SECRET, b"older"], header, body)
    assert str(e.value) == "pagerduty: no v1 signature matches the body under any of 2 secret(s)"
    signed = {"X-PagerDuty-Signature": pd_sign(PD_SECRET, body)}
    with pytest.raises(SignatureError):
        verify_pagerduty([PD_SECRET], signed, pd_event("incident.resolved"))


def test_verification_needs_a_secret() -> None:
    with pytest.raises(ValueError) as e:
        verify_pagerduty([], {}, b"")
    assert str(e.value) == "signature verification needs at least one non-empty secret"


# --- PagerDuty events ------------------------------------------------------------------

def test_pagerduty_ack_and_resolve_events_become_actions() -> None:
    ack = parse_pagerduty(pd_event(), NOW)
    assert ack == InboundAction("ack", "inc-checkout-1", "pagerduty:Jane Doe (PLH1HKV)",
                                "pagerduty", "01DFR9XMGYSX8Y6FDNDMYSE5XP", NOW - 29.488)
    res = parse_pagerduty(pd_event("incident.resolved", agent=None), NOW)
    assert res is not None
    assert (res.kind, res.actor) == ("resolve", "pagerduty:unknown")


@pytest.mark.parametrize("event_type", ["incident.triggered", "incident.annotated",
                                        "pagey.ping"])
def test_other_pagerduty_events_are_ignored(event_type: str) -> None:
    assert parse_pagerduty(pd_event(event_type), NOW) is None


def test_stale_or_future_pagerduty_events_are_refused() -> None:
    with pytest.raises(SignatureError) as e:
        parse_pagerduty(pd_event(occurred_at="2025-11-26T03:39:00Z"), NOW)
    assert str(e.value) == ("pagerduty: event 01DFR9XMGYSX8Y6FDNDMYSE5XP occurred at "
                            "2025-11-26T03:39:00Z, 3660s old, beyond the 3600s tolerance")
    with pytest.raises(SignatureError) as e:
        parse_pagerduty(pd_event(occurred_at="2025-11-26T04:50:00Z"), NOW, max_age_s=300.0)
    assert str(e.value) == ("pagerduty: event 01DFR9XMGYSX8Y6FDNDMYSE5XP occurred at "
                            "2025-11-26T04:50:00Z, 600s in the future, beyond the 300s "
                            "tolerance")


@pytest.mark.parametrize("body, problems", [
    (b"[]", ["pagerduty: expected a JSON object"]),
    (b"{", ["pagerduty: not valid JSON (line 1 column 2)"]),
    (b'{"event": 3}', ["pagerduty.event: missing or not an object"]),
    (pd_event(id="", occurred_at="yesterday", data=[]),
     ["pagerduty.event.id: missing or not a non-empty string",
      "pagerduty.event.data: missing or not an object",
      "pagerduty.event.occurred_at: 'yesterday' is not an ISO 8601 time"]),
    (pd_event(data={}), ["pagerduty.event.data.incident_key: missing or not a non-empty "
                         "string"]),
    (pd_event(occurred_at="2025-11-26T04:39:30", data={"incident_key": 7}),
     ["pagerduty.event.data.incident_key: missing or not a non-empty string",
      "pagerduty.event.occurred_at: '2025-11-26T04:39:30' has no time zone"]),
])
def test_malformed_pagerduty_events_name_every_bad_field(body: bytes,
                                                         problems: list[str]) -> None:
    with pytest.raises(RequestError) as e:
        parse_pagerduty(body, NOW)
    assert e.value.problems == problems


# --- Slack -----------------------------------------------------------------------------

def test_slack_documented_example_verifies() -> None:
    # The worked example of Slack's "Verifying requests from Slack" page.
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
            b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&"
            b"user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F"
            b"%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskX"
            b"aIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    headers = {"X-Slack-Request-Timestamp": "1531420618",
               "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666"
                                    "489c69b503"}
    verify_slack(b"8f742231b10e8888abcd99yyyzzz85a5", headers, body, now=1531420618.0 + 10)


def signed_slack(body: bytes, ts: int, secret: bytes = SLACK_SECRET) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": slack_sign(secret, ts, body)}


def test_slack_accepts_a_fresh_signature_under_any_secret() -> None:
    body = slack_body()
    verify_slack(SLACK_SECRET, signed_slack(body, int(NOW) - 299), body, NOW)
    verify_slack([b"old", SLACK_SECRET], signed_slack(body, int(NOW) + 299), body, NOW)


@pytest.mark.parametrize("ts, message", [
    (int(NOW) - 301, "slack: timestamp 1764131699 is 301s old, beyond the 300s tolerance"),
    (int(NOW) + 400, "slack: timestamp 1764132400 is 400s in the future, beyond the 300s "
                     "tolerance"),
])
def test_stale_slack_timestamps_are_refused_even_when_signed(ts: int, message: str) -> None:
    body = slack_body()
    with pytest.raises(SignatureError) as e:
        verify_slack(SLACK_SECRET, signed_slack(body, ts), body, NOW)
    assert str(e.value) == message


def test_slack_forged_wrong_secret_and_malformed_headers() -> None:
    body, ts = slack_body(), int(NOW)
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "slack: missing X-Slack-Request-Timestamp header"),
        ({"X-Slack-Request-Timestamp": "12.5"},
         "slack: X-Slack-Request-Timestamp '12.5' is not an integer"),
        ({"X-Slack-Request-Timestamp": str(ts)}, "slack: missing X-Slack-Signature header"),
        ({"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": "v1=abc"},
         "slack: malformed X-Slack-Signature: expected v0=<hex>"),
        (signed_slack(body, ts, b"not-the-secret"),
         "slack: X-Slack-Signature does not match the body under any of 1 secret(s)"),
        # A signature over another timestamp: the timestamp cannot be moved.
        ({**signed_slack(body, ts - 10), "X-Slack-Request-Timestamp": str(ts)},
         "slack: X-Slack-Signature does not match the body under any of 1 secret(s)"),
    ]
    for headers, message in cases:
        with pytest.raises(SignatureError) as e:
            verify_slack(SLACK_SECRET, headers, body, NOW)
        assert str(e.value) == message


def test_slack_buttons_become_actions() -> None:
    assert parse_slack(slack_body()) == InboundAction(
        "ack", "inc-checkout-1", "slack:jane (U024BE7LH)", "slack", "1337.42.abcdef",
        1764131990.25)
    res = parse_slack(slack_body("resolve", user={"id": "U9"}))
    assert res is not None and (res.kind, res.actor) == ("resolve", "slack:U9")


@pytest.mark.parametrize("action_id, kind", [
    ("hotpath_ack", "ack"), ("hotpath_acknowledge", "ack"), ("acknowledge", "ack"),
    ("hotpath_resolve", "resolve")])
def test_the_slack_pagers_link_buttons_are_understood(action_id: str, kind: str) -> None:
    # escalation.pagers.slack names its link buttons hotpath_<link name>.
    got = parse_slack(slack_body(action_id))
    assert got is not None and (got.kind, got.incident_key) == (kind, "inc-checkout-1")


def test_other_slack_interactions_are_ignored() -> None:
    assert parse_slack(slack_body("approve")) is None
    assert parse_slack(slack_body("hotpath_approve")) is None
    assert parse_slack(slack_body(type="view_submission")) is None


@pytest.mark.parametrize("body, problems", [
    (b"text=hello", ["slack: expected one payload field, got 0"]),
    (b"\xff", ["slack: body is not a UTF-8 form (application/x-www-form-urlencoded)"]),
    (urlencode({"payload": "{"}).encode(), ["slack.payload: not valid JSON (line 1 column 2)"]),
    (slack_body(actions="ack"), ["slack.payload.actions: missing or not a list"]),
    (slack_body(value="", trigger_id=None, user="jane"),
     ["slack.payload.actions[].value: missing or not a non-empty string",
      "slack.payload.trigger_id: missing or not a non-empty string",
      "slack.payload.user: missing or not an object"]),
])
def test_malformed_slack_payloads_name_every_bad_field(body: bytes,
                                                       problems: list[str]) -> None:
    with pytest.raises(RequestError) as e:
        parse_slack(body)
    assert e.value.problems == problems
