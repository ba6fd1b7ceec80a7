"""Ingress metrics. Label sets are bounded: an outcome, never a client or a request."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "dam_ingress_requests_total",
    "Chat requests by outcome.",
    ["outcome"],
)
ADMISSION_SECONDS = Histogram(
    "dam_ingress_admission_seconds",
    "Time of the admission decision (deny cache or Redis script).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
END_TO_END_SECONDS = Histogram(
    "dam_ingress_end_to_end_seconds",
    "Accept to answer for callers that waited for their completion.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
DENY_CACHE_HITS = Counter("dam_ingress_deny_cache_hits_total", "429s answered locally.")
WAITING = Gauge("dam_ingress_waiting_requests", "Accepted requests whose caller is waiting.")

# Children bound once: `labels()` takes a lock and a dict lookup, too much for the hot path.
ACCEPTED = REQUESTS.labels("accepted")
REJECTED_RATE_LIMIT = REQUESTS.labels("rejected_rate_limit")
REJECTED_BACKLOG = REQUESTS.labels("rejected_backlog")
BAD_REQUEST = REQUESTS.labels("bad_request")
UNAUTHORIZED = REQUESTS.labels("unauthorized")
UNAVAILABLE = REQUESTS.labels("unavailable")
