"""The incident book: grouping, keys, window buckets, resolve, inhibition, silences."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.incidents import (
    Closed,
    EventKind,
    GroupingSpec,
    Incident,
    IncidentBook,
    IncidentEvent,
    InhibitRule,
    alert_labels,
    group_id,
    incident_key,
    metric_family,
)
from escalation.page import Page
from escalation.silences import Silence

LAT = "http_latency_p99_ms"
SPEC = GroupingSpec()  # service + metric_family + region, 300 s buckets, resolve after 600 s
DOWN = InhibitRule("service-down", source={"metric": "up", "severity": "critical"},
                   target={"metric": "*"}, equal=("service",))


def page(ts: float, service: str = "checkout", metric: str = LAT, region: str = "eu",
         severity: str = "critical", value: float = 900.0) -> Page:
    fid = hashlib.sha256(f"{service}|{metric}|{region}@{ts}".encode()).hexdigest()[:24]
    return Page(f"hotpath-{fid}", f"{service} {metric}", severity,  # type: ignore[arg-type]
                service, metric, {"region": region}, value, 200.0, 9.0, 0.97, ("ewma",),
                ("no remediation rule",), (200.0, value), fid, ts, ts + 1.0, None)


def key(bucket: int, service: str = "checkout", family: str = "http_latency",
        region: str = "eu") -> str:
    """The documented formula, computed here independently of the module."""
    group = [["service", service], ["metric_family", family], ["region", region]]
    body = json.dumps([group, bucket], separators=(",", ":")).encode()
    return "inc_" + hashlib.sha256(body).hexdigest()[:16]


def kinds(events: list[IncidentEvent]) -> list[str]:
    return [e.kind.value for e in events]


@pytest.mark.parametrize(("metric", "family"), [
    ("http_latency_p99_ms", "http_latency"), ("http_latency_p50_ms", "http_latency"),
    ("error_ratio", "error"), ("queue_depth", "queue"), ("cpu_seconds_total", "cpu"),
    ("http_requests_total", "http_requests"), ("up", "up"), ("p99", "p99"),
    ("disk_free_bytes", "disk_free"),
])
def test_metric_family(metric: str, family: str) -> None:
    assert metric_family(metric) == family


def test_metric_family_mapping_wins_in_order() -> None:
    fams = {"queue_*": "queues", "*": "everything"}
    assert metric_family("queue_depth", fams) == "queues"
    assert metric_family("error_ratio", fams) == "everything"


def test_same_group_within_the_window_is_one_incident() -> None:
    book = IncidentBook(SPEC)
    events = book.observe([page(1000.0), page(1030.0, metric="http_latency_p50_ms")], 1031.0)
    assert kinds(events) == ["trigger", "attach"]
    assert [e.page is not None for e in events] == [True, False]
    inc = events[1].incident
    assert (inc.key, inc.bucket, inc.count, inc.opened_at, inc.last_ts, inc.last_seen) == (
        key(3), 3, 2, 1000.0, 1030.0, 1031.0)
    assert inc.metrics == ("http_latency_p50_ms", "http_latency_p99_ms")
    assert inc.page.metric == "http_latency_p50_ms"  # the latest values
    assert events[1].detail == f"grouped into {key(3)} (2 pages)"
    trigger = events[0].page
    assert trigger is not None
    assert (trigger.event, trigger.incident_key, trigger.dedup_key) == (
        "trigger", key(3), f"hotpath-{key(3)}")
    assert trigger == replace(page(1000.0), incident_key=key(3), dedup_key=f"hotpath-{key(3)}")


def test_another_region_or_family_is_another_incident() -> None:
    book = IncidentBook(SPEC)
    events = book.observe([page(1000.0), page(1001.0, region="us"),
                           page(1002.0, metric="error_ratio")], 1003.0)
    assert kinds(events) == ["trigger", "trigger", "trigger"]
    assert [e.incident.key for e in events] == [
        key(3), key(3, region="us"), key(3, family="error")]
    assert len(book.open) == 3


def test_a_larger_severity_raises_the_incident_labels_without_a_page() -> None:
    book = IncidentBook(SPEC)
    book.observe([page(1000.0, severity="warning")], 1000.0)
    e = book.observe([page(1010.0, severity="critical")], 1010.0)[0]
    assert (e.kind, e.incident.labels["severity"], e.page) == (EventKind.ATTACH, "critical",
                                                               None)
    e = book.observe([page(1020.0, severity="info")], 1020.0)[0]
    assert e.incident.labels["severity"] == "critical"


def test_keys_agree_across_replicas_batchings_and_a_replay() -> None:
    pages = [page(1000.0), page(1040.0, region="us"), page(1100.0), page(1200.0, "api")]
    a = IncidentBook(SPEC)
    out_a = a.observe(pages[:2], 1050.0) + a.observe(pages[2:], 1250.0)
    b = IncidentBook(SPEC)
    out_b = b.observe(list(reversed(pages)), 1250.0)  # one batch, other order
    replay = IncidentBook(SPEC).observe(pages, 99999.0)
    for out in (out_a, out_b, replay):
        assert sorted(e.page.dedup_key for e in out if e.page is not None) == sorted([
            f"hotpath-{key(3)}", f"hotpath-{key(3, region='us')}",
            f"hotpath-{key(4, service='api')}"])
    assert sorted(i.key for i in a.open.values()) == sorted(i.key for i in b.open.values())


def test_window_bucket_boundaries() -> None:
    assert IncidentBook(SPEC).observe([page(0.0)], 0.0)[0].incident.key == key(0)
    assert IncidentBook(SPEC).observe([page(299.999)], 0.0)[0].incident.key == key(0)
    assert IncidentBook(SPEC).observe([page(300.0)], 0.0)[0].incident.key == key(1)
    book = IncidentBook(SPEC)
    events = book.observe([page(299.9), page(300.0), page(900.0)], 900.0)
    # Once open, the group keeps its key across buckets until it resolves.
    assert kinds(events) == ["trigger", "attach", "attach"]
    assert {e.incident.key for e in events} == {key(0)}
    wide = GroupingSpec(window_s=3600.0)
    assert IncidentBook(wide).observe([page(3599.0)], 0.0)[0].incident.bucket == 0


def test_resolves_once_after_the_clear_time_and_sends_the_resolve() -> None:
    book = IncidentBook(SPEC)
    book.observe([page(1000.0)], 1001.0)
    book.observe([page(1100.0)], 1101.0)
    assert book.tick(1101.0 + 599.999) == []
    events = book.tick(1701.0)
    assert kinds(events) == ["resolve"]
    r = events[0]
    assert r.detail == "clear for 600 s after 2 pages"
    assert r.observed is None
    assert r.page == replace(
        page(1100.0), event="resolve", incident_key=key(3),
        dedup_key=f"hotpath-{key(3)}:resolve", created=1701.0, reasons=("incident cleared",),
        summary="resolved: service=checkout, metric_family=http_latency, region=eu — "
                "clear for 600 s after 2 pages")
    assert book.tick(1702.0) == [] and book.tick(99999.0) == []
    assert book.open == {}
    assert book.closed == {group_id(r.incident.group): Closed(key(3), 3, 1100.0)}


def test_resolve_runs_on_the_processing_clock_not_event_time() -> None:
    book = IncidentBook(SPEC)
    book.observe([page(1000.0)], now=5000.0)  # consumer an hour behind
    assert book.tick(1600.0) == [] and book.tick(5599.0) == []
    assert kinds(book.tick(5600.0)) == ["resolve"]


def test_after_a_resolve_replays_are_stale_and_new_findings_reopen_under_a_new_key() -> None:
    book = IncidentBook(SPEC)
    book.observe([page(1000.0), page(1050.0)], 1050.0)
    book.tick(1650.0)
    stale = book.observe([page(1050.0), page(1000.0)], 1700.0)
    assert kinds(stale) == ["stale", "stale"]
    assert stale[0].detail == f"no newer than resolved incident {key(3)}"
    assert all(e.page is None for e in stale) and book.open == {}
    # A genuinely new finding in the same bucket: the key must not be reused.
    again = book.observe([page(1060.0)], 1710.0)[0]
    assert (again.kind, again.incident.key, again.incident.bucket) == (
        EventKind.TRIGGER, key(4), 4)
    later = IncidentBook(SPEC, closed={again.incident.group_id: Closed(key(3), 3, 1050.0)})
    assert later.observe([page(2000.0)], 2000.0)[0].incident.key == key(6)


def test_inhibition_mutes_targets_of_the_same_service_until_the_source_resolves() -> None:
    book = IncidentBook(SPEC, [DOWN])
    # The target comes first in the batch; sources are taken first anyway.
    events = book.observe([page(1000.0), page(1005.0, metric="up", value=0.0),
                           page(1001.0, service="payments")], 1010.0)
    up_key = key(3, family="up")
    assert [(e.kind.value, e.incident.key) for e in events] == [
        ("trigger", up_key),  # the source does not inhibit itself though it matches target
        ("suppressed", key(3)),
        ("trigger", key(3, service="payments")),  # equal=service differs
    ]
    assert events[1].detail == f"inhibited by {up_key} (rule service-down)"
    assert events[1].incident.suppressed == events[1].detail
    # Muted while the outage lasts.
    assert kinds(book.observe([page(1300.0), page(1301.0, metric="up")], 1310.0)) == [
        "attach", "suppressed"]
    assert kinds(book.observe([page(1700.0)], 1700.0)) == ["suppressed"]
    resolved = book.tick(1910.0)  # the outage (and payments) cleared; checkout did not
    assert sorted((e.kind.value, e.incident.key) for e in resolved) == sorted([
        ("resolve", up_key), ("resolve", key(3, service="payments"))])
    e = book.observe([page(1950.0)], 1950.0)[0]
    assert (e.kind, e.incident.key, e.incident.count) == (EventKind.TRIGGER, key(3), 4)
    assert e.detail == f"no longer muted (inhibited by {up_key} (rule service-down))"
    assert e.page is not None and e.page.dedup_key == f"hotpath-{key(3)}"


def test_a_source_needs_every_source_matcher() -> None:
    book = IncidentBook(SPEC, [DOWN])
    book.observe([page(1000.0, metric="up", severity="warning")], 1000.0)
    assert kinds(book.observe([page(1001.0)], 1001.0)) == ["trigger"]


def test_an_incident_never_paged_resolves_quietly() -> None:
    book = IncidentBook(SPEC, [DOWN])
    book.observe([page(1000.0, metric="up"), page(1000.0)], 1000.0)
    book.observe([page(1200.0, metric="up")], 1200.0)
    events = book.tick(1600.0)
    assert [(e.kind.value, e.incident.key, e.page) for e in events] == [
        ("resolve", key(3), None)]
    assert events[0].detail == (f"clear for 600 s after 1 pages; never paged (inhibited by "
                                f"{key(3, family='up')} (rule service-down))")


def test_silence_mutes_until_it_expires() -> None:
    s = Silence.create({"service": "checkout", "region": "eu"}, 1000.0, 2000.0,
                       "human:alice", "deploy v2", id="sil_deploy")
    pending = Silence.create({"service": "payments"}, 5000.0, 6000.0, "config", "later")
    book = IncidentBook(SPEC)
    events = book.observe([page(1500.0), page(1500.0, region="us"),
                           page(1500.0, service="payments")], 1500.0, [s, pending])
    assert kinds(events) == ["suppressed", "trigger", "trigger"]
    assert events[0].detail == "silenced by sil_deploy (human:alice: deploy v2)"
    assert kinds(book.observe([page(1999.0)], 1999.999, [s])) == ["suppressed"]
    e = book.observe([page(2000.0)], 2000.0, [s])[0]  # ends_at is exclusive
    assert (e.kind, e.incident.key, e.incident.opened_at) == (EventKind.TRIGGER, key(5),
                                                               1500.0)


def test_a_paged_incident_silenced_later_attaches_and_still_resolves_on_the_pager() -> None:
    s = Silence.create({"service": "checkout"}, 1100.0, 9000.0, "human:bob", "known")
    book = IncidentBook(SPEC)
    book.observe([page(1000.0)], 1000.0)
    assert kinds(book.observe([page(1200.0)], 1200.0, [s])) == ["attach"]
    r = book.tick(1800.0)[0]
    assert r.page is not None and r.page.event == "resolve"


def test_the_incident_keeps_no_context_but_the_trigger_does() -> None:
    p = replace(page(1000.0), context={"runbook": "https://x/" + "y" * 1000})
    e = IncidentBook(SPEC).observe([p], 1000.0)[0]
    assert e.page is not None and e.page.context == p.context
    assert e.incident.page.context == {}


def test_close_resolves_on_someones_word() -> None:
    book = IncidentBook(SPEC)
    book.observe([page(1000.0)], 1000.0)
    assert book.close("inc_unknown", 1010.0, "human:alice") is None
    r = book.close(key(3), 1010.0, "human:alice")
    assert r is not None and r.detail == "resolved by human:alice"
    assert r.page is not None and r.page.summary.endswith("— resolved by human:alice")
    assert book.open == {}


def test_incident_round_trips_through_json() -> None:
    book = IncidentBook(SPEC)
    inc = book.observe([page(1000.0), page(1010.0, metric="http_latency_p50_ms")],
                       1010.0)[1].incident
    assert Incident.from_dict(json.loads(json.dumps(inc.to_dict()))) == inc


def test_alert_labels_put_the_page_fields_over_its_labels() -> None:
    p = replace(page(1.0), labels={"region": "eu", "service": "spoofed", "az": "b"})
    assert alert_labels(p, SPEC) == {"region": "eu", "service": "checkout", "az": "b",
                                     "metric": LAT, "metric_family": "http_latency",
                                     "severity": "critical"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"by": ()}, "grouping: by must name at least one label"),
    ({"window_s": 0.0}, "grouping: window_s must be a positive number, got 0.0"),
    ({"resolve_after_s": math.inf}, "grouping: resolve_after_s must be a positive number, "
                                    "got inf"),
    ({"window_s": math.nan}, "grouping: window_s must be a positive number, got nan"),
])
def test_bad_grouping_spec(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        GroupingSpec(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_bad_inhibit_rule() -> None:
    with pytest.raises(ValueError) as err:
        InhibitRule("r", source={}, target={"metric": "*"})
    assert str(err.value) == "inhibit rule 'r': source and target must each have at least " \
                             "one matcher"


def test_incident_key_is_the_documented_hash() -> None:
    group = (("service", "checkout"), ("metric_family", "http_latency"), ("region", "eu"))
    assert incident_key(group, 7) == key(7)
    assert group_id(group) != group_id(group[:2])


_PAGES = st.lists(st.tuples(st.sampled_from(["checkout", "api"]),
                            st.sampled_from([LAT, "error_ratio"]),
                            st.integers(0, 5000)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(raw=_PAGES, cuts=st.lists(st.integers(0, 30), max_size=4))
def test_any_batching_in_time_order_gives_the_same_incidents(
        raw: list[tuple[str, str, int]], cuts: list[int]) -> None:
    pages = sorted((page(float(ts), svc, m) for svc, m, ts in raw), key=lambda p: p.ts)
    whole = IncidentBook(SPEC)
    one = whole.observe(pages, 0.0)
    split = IncidentBook(SPEC)
    bounds = [0, *sorted(c for c in cuts if c < len(pages)), len(pages)]
    many = [e for lo, hi in itertools.pairwise(bounds)
            for e in split.observe(pages[lo:hi], 0.0)]
    # Pages of one instant may be taken in any order across groups; what must not change is
    # which incidents open and which pages attach to them.
    def events(evs: list[IncidentEvent]) -> list[tuple[str, str]]:
        return sorted((e.kind.value, e.incident.key) for e in evs)

    assert events(one) == events(many)
    groups = {(p.service, metric_family(p.metric)) for p in pages}
    # One incident per group; a page repeated (an at-least-once duplicate) re-sends its
    # trigger under the same key, which the sender's delivered-set folds.
    assert len({e.incident.key for e in one if e.page is not None}) == len(groups)
    resolved = whole.tick(600.0)
    assert len(resolved) == len(groups) and whole.tick(601.0) == []


def test_an_outage_is_never_held_back_by_another_regions_outage() -> None:
    # As Alertmanager: a page matching the rule's source side is not inhibited by it.
    assert DOWN.inhibits({"metric": "up", "severity": "critical", "service": "auth"},
                         {"metric": "error_ratio", "service": "auth"})
    assert not DOWN.inhibits({"metric": "up", "severity": "critical", "service": "auth",
                              "region": "eu"},
                             {"metric": "up", "severity": "critical", "service": "auth",
                              "region": "us"})


def test_the_trigger_page_seen_again_sends_the_trigger_again_under_the_same_key() -> None:
    # A crash between committing the incident and writing the outbox: the finding is
    # replayed from Kafka and its trigger must go out then, under the same key.
    book = IncidentBook(SPEC)
    (first,) = book.observe([page(10.0)], 11.0)
    (again,) = book.observe([page(10.0)], 20.0)
    assert (again.kind, again.page) == (EventKind.TRIGGER, first.page)
    (other,) = book.observe([page(12.0)], 21.0)  # a new finding is only grouped
    assert (other.kind, other.page) == (EventKind.ATTACH, None)
