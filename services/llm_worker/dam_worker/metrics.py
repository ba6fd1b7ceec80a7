"""Worker metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LLM_CALLS = Counter("dam_worker_llm_calls_total", "Backend calls by result.", ["status"])
RETRIES = Counter("dam_worker_llm_retries_total", "Backend calls retried within a delivery.")
RECLAIMED = Counter("dam_worker_reclaimed_total", "Entries taken over from dead workers.")
VANISHED = Counter("dam_worker_vanished_total", "Pending entries found deleted (failed).")
DEAD_LETTERED = Counter("dam_worker_dead_lettered_total", "Entries moved to the DLQ.")
REQUEUED = Counter("dam_worker_requeued_total", "Failed deliveries put back for another try.")
COMPLETED = Counter("dam_worker_completed_total", "Requests completed.")
INFLIGHT = Gauge("dam_worker_inflight", "Entries being worked on.")
CAPACITY = Gauge("dam_worker_capacity", "Slots of this worker now (the adaptive limit).")
TTFT_SECONDS = Histogram("dam_worker_llm_ttft_seconds", "Backend time to first token.",
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
LLM_SECONDS = Histogram("dam_worker_llm_seconds", "Backend call duration.",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
QUEUE_WAIT_SECONDS = Histogram("dam_worker_queue_wait_seconds", "Accept to start of work.",
                               buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
TOKENS_OUT = Counter("dam_worker_tokens_out_total", "Completion tokens reported by the backend.")
ABORTED = Counter("dam_worker_aborted_total", "Backend calls aborted because the client left.")
TOKENS_SETTLED = Counter("dam_worker_tokens_settled_total", "Tokens returned to (refund) or "
                         "taken from (charge) tenant budgets after the backend's usage.",
                         ["direction"])
