"""Ingress metrics. Label sets are bounded: an outcome and a tenant class, never a client."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTCOMES = ("accepted", "rejected_rate_limit", "rejected_backlog", "bad_request",
            "unauthorized", "unavailable", "duplicate", "rejected_tokens")
TENANT_CLASSES = ("anonymous", "key", "unknown")

REQUESTS = Counter(
    "dam_ingress_requests_total",
    "Chat requests by outcome and tenant class (anonymous: by address; key: API key).",
    ["outcome", "tenant_class"],
)
RESPONSES = Counter("dam_ingress_http_responses_total", "HTTP answers by status.", ["status"])
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
SHADOW_REJECTIONS = Counter("dam_ingress_shadow_rejections_total",
                            "Requests over a limit in shadow mode (enforce = false): let "
                            "through, counted and logged.")
CANCELLED = Counter("dam_ingress_cancelled_total",
                    "Queued requests cancelled because their caller went away.")
ABORT_REQUESTS = Counter("dam_ingress_abort_requests_total",
                         "Running requests whose caller went away: the worker was told to "
                         "abort the backend call.")
DENY_CACHE_HITS = Counter("dam_ingress_deny_cache_hits_total",
                          "Refusals (429, or 503 for a full backlog) answered from the local "
                          "deny cache, without Redis.")
FAST_DENIALS = Counter("dam_ingress_fast_denials_total",
                       "Deny-cache refusals written straight to the socket, before aiohttp "
                       "built a request (a subset of dam_ingress_deny_cache_hits_total).")
WAITING = Gauge("dam_ingress_waiting_requests", "Accepted requests whose caller is waiting.")
OPEN_CONNECTIONS = Gauge("dam_ingress_open_connections", "Client connections open now.")
REFUSED_CONNECTIONS = Counter("dam_ingress_refused_connections_total",
                              "Connections refused at DAM_MAX_CONNECTIONS.")
IDLE_CONNECTIONS_CLOSED = Counter("dam_ingress_idle_connections_closed_total",
                                  "Idle keep-alive connections closed at DAM_MAX_CONNECTIONS "
                                  "to make room for new ones.")

# Children bound once: `labels()` takes a lock and a dict lookup, too much for the hot path.
_BOUND = {(o, c): REQUESTS.labels(o, c) for o in OUTCOMES for c in TENANT_CLASSES}


_BY_STATUS: dict[int, Counter] = {}


def response_counter(status: int) -> Counter:
    """The bound counter of one HTTP status (bound once: every 429 of a flood passes here)."""
    counter = _BY_STATUS.get(status)
    if counter is None:
        counter = _BY_STATUS[status] = RESPONSES.labels(str(status))
    return counter


def count(outcome: str, identity: str | None) -> None:
    """Count one request; the tenant class is read off the identity's prefix."""
    if identity is None:
        tenant_class = "unknown"
    else:
        tenant_class = "key" if identity.startswith("key:") else "anonymous"
    _BOUND[(outcome, tenant_class)].inc()
