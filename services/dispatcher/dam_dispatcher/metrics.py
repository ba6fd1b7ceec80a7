"""Dispatcher metrics: what it does, and the pipeline's state as it reads it every second."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from dam_common.snapshot import Snapshot

DISPATCHED = Counter("dam_dispatcher_dispatched_total", "Entries moved from intake to work.")
EXPIRED = Counter("dam_dispatcher_expired_total", "Entries that expired before dispatch.")
CREDITS = Gauge("dam_dispatcher_credits", "Free worker slots seen at the last dispatch call.")
RATE_LIMITED = Counter("dam_dispatcher_rate_limited_total",
                       "Dispatch calls held back by the dispatch rate.")
NO_CREDITS = Counter("dam_dispatcher_no_credits_total",
                     "Dispatch calls that found every worker slot taken.")
BACKLOG = Gauge("dam_dispatcher_intake_backlog", "Entries waiting in the intake stream.")
IN_FLIGHT = Gauge("dam_pipeline_work_in_flight", "Entries in the work stream (dispatched, "
                  "not settled).")
LAG = Gauge("dam_pipeline_consumer_lag", "Entries not yet delivered to the group.", ["stream"])
PENDING = Gauge("dam_pipeline_pending", "Entries delivered and not acknowledged.", ["stream"])
OLDEST_PENDING = Gauge("dam_pipeline_oldest_pending_age_seconds",
                       "Age of the oldest unacknowledged entry (0 when none).", ["stream"])
LIVE_WORKERS = Gauge("dam_pipeline_live_workers", "Workers whose lease is current.")
CAPACITY = Gauge("dam_pipeline_capacity", "Slots of the live workers.")
ACTIVE_TENANTS = Gauge("dam_pipeline_active_tenants", "Tenants with requests queued (the "
                       "fair scheduler's ring).")
DLQ_LENGTH = Gauge("dam_pipeline_dlq_length", "Entries in the dead-letter stream.")


def record_snapshot(snap: Snapshot) -> None:
    """Copy a pipeline snapshot into the gauges."""
    BACKLOG.set(snap.intake_backlog)
    IN_FLIGHT.set(snap.work_in_flight)
    LAG.labels("intake").set(snap.intake_backlog)  # nothing in intake is delivered yet
    LAG.labels("work").set(snap.work_group.lag)
    PENDING.labels("work").set(snap.work_group.pending)
    OLDEST_PENDING.labels("work").set(snap.work_group.oldest_pending_age_s or 0)
    ACTIVE_TENANTS.set(snap.active_tenants)
    LIVE_WORKERS.set(len(snap.live_workers))
    CAPACITY.set(snap.capacity)
    DLQ_LENGTH.set(snap.dlq_length)
