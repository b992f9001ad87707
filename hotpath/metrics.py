"""hotpath's own Prometheus metrics, in a registry of their own (tests run several processors).

Every name is documented in README.md; label values are the enum reason strings, so a
dashboard can break decisions and DLQ traffic down by cause.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hotpath.bulk_histogram import BulkHistogram

# Batch processing is expected in the 0.1–50 ms range; the tail buckets catch stalls.
_BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# End-to-end lag (now − point ts) spans sub-second (healthy) to minutes (catching up).
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter("hotpath_messages", "Kafka messages consumed", registry=r)
        self.points = Counter("hotpath_points", "Telemetry points decoded", registry=r)
        self.dlq = Counter("hotpath_dlq_messages", "Messages sent to the DLQ, by reason",
                           ["reason"], registry=r)
        self.batch_seconds = Histogram("hotpath_batch_seconds",
                                       "Seconds to process one getmany batch",
                                       buckets=_BATCH_BUCKETS, registry=r)
        # Observed for every point: binned a batch at a time (see bulk_histogram).
        self.lag_seconds = BulkHistogram("hotpath_end_to_end_lag_seconds",
                                         "Decision time minus point timestamp, per point",
                                         _LAG_BUCKETS, registry=r)
        self.findings = Counter("hotpath_findings", "Findings raised by the detectors",
                                registry=r)
        self.decisions = Counter("hotpath_decisions", "Decisions, by kind and reason",
                                 ["kind", "reason"], registry=r)
        self.requests = Counter("hotpath_action_requests",
                                "Action requests through the control plane, by actor kind, "
                                "status and deciding check", ["actor", "status", "code"],
                                registry=r)
        self.approvals = Counter("hotpath_approvals", "Approval events (requested, approved, "
                                 "denied, expired, refused)", ["event"], registry=r)
        self.audit_mirror_lag = Gauge("hotpath_audit_mirror_lag_records",
                                      "Audit records durable in the file but not yet on the "
                                      "Kafka mirror topic", registry=r)
        self.audit_mirror_stopped = Gauge("hotpath_audit_mirror_stopped",
                                          "1 when the audit mirror gave up (the topic holds "
                                          "another chain)", registry=r)
        self.change_events = Counter("hotpath_change_events", "Change events read from the "
                                     "changes topic, by outcome", ["outcome"], registry=r)
        self.outbox_depth = Gauge("hotpath_outbox_pages",
                                  "Pages waiting in the outbox (Redis stream and spool)",
                                  registry=r)
        self.time_to_ack = Histogram("hotpath_time_to_ack_seconds",
                                     "From an incident's first page to its acknowledgement",
                                     buckets=(10, 30, 60, 120, 300, 600, 1200, 3600),
                                     registry=r)
        self.incident_events = Counter("hotpath_incident_events",
                                       "Incident events (trigger, attach, suppressed, stale, "
                                       "resolve)", ["kind"], registry=r)
        self.escalations = Counter("hotpath_escalations", "On-call escalation steps paged, "
                                   "by level", ["level"], registry=r)
        self.verifications = Counter("hotpath_verifications",
                                     "Finished verifications, by action and result",
                                     ["action", "result"], registry=r)
        self.pages = Counter("hotpath_pages", "Page deliveries, by pager and outcome",
                             ["pager", "outcome"], registry=r)
        self.page_latency = Histogram("hotpath_page_delivery_seconds",
                                      "Seconds per page delivery attempt", ["pager"],
                                      buckets=_LAG_BUCKETS, registry=r)
        self.actions = Counter("hotpath_actions", "Remediation actions, by outcome",
                               ["action", "outcome"], registry=r)
        self.consumer_lag = Gauge("hotpath_consumer_lag_messages",
                                  "High watermark minus position, per partition",
                                  ["topic", "partition"], registry=r)
        self.series = Gauge("hotpath_series", "Series tracked by this processor", registry=r)
        self.commits = Counter("hotpath_offset_commits", "Offset commits", registry=r)
        self.checkpoint_failures = Counter("hotpath_checkpoint_failures",
                                           "Detector checkpoints that could not be saved",
                                           registry=r)
