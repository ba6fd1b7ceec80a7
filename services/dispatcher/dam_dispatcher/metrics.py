"""Dispatcher metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DISPATCHED = Counter("dam_dispatcher_dispatched_total", "Entries moved from intake to work.")
EXPIRED = Counter("dam_dispatcher_expired_total", "Entries that expired before dispatch.")
CREDITS = Gauge("dam_dispatcher_credits", "Free worker slots seen at the last dispatch call.")
RATE_LIMITED = Counter("dam_dispatcher_rate_limited_total",
                       "Dispatch calls held back by the dispatch rate.")
NO_CREDITS = Counter("dam_dispatcher_no_credits_total",
                     "Dispatch calls that found every worker slot taken.")
BACKLOG = Gauge("dam_dispatcher_intake_backlog", "Entries waiting in the intake stream.")
