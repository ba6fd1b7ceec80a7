"""Builds dashboards/traffic-dam.json: the "Traffic Dam" dashboard, as code.

Run `python infra/grafana/build_dashboard.py` after editing; a test checks the JSON is current
and a real Prometheus evaluates every query (tests/infra/test_real_prometheus.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
DAM_JOBS = 'job=~"dam-.*"'


def q(expr: str, legend: str) -> dict[str, Any]:
    """One Prometheus query of a panel."""
    return {"expr": expr, "legendFormat": legend, "datasource": PROM}


def quantiles(metric: str, label: str) -> list[dict[str, Any]]:
    """p50 / p95 / p99 of a histogram over 5 minutes."""
    return [q(f"histogram_quantile({p}, sum by (le) (rate({metric}_bucket[5m])))",
              f"{label} p{int(p * 100)}") for p in (0.5, 0.95, 0.99)]


# (title, unit, description, queries): every panel's story during an attack.
PANELS: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    ("Incoming vs admitted vs backend", "reqps",
     "Requests reaching the ingress, admitted into the backlog, and started on the LLM backend. "
     "During a flood the first line towers over the other two: the dam is holding.",
     [q("sum(rate(dam_ingress_requests_total[1m]))", "incoming"),
      q('sum(rate(dam_ingress_requests_total{outcome="accepted"}[1m]))', "admitted"),
      q("sum(rate(dam_dispatcher_dispatched_total[1m]))", "dispatched to backend"),
      q("sum(rate(dam_worker_llm_calls_total[1m]))", "backend calls")]),
    ("Rejections by reason", "percentunit",
     "Share of incoming requests refused, by reason. 429 = a client over its bucket; backlog "
     "full = 503 load shedding; unauthorized = bad keys.",
     [q('sum by (outcome) (rate(dam_ingress_requests_total{outcome!="accepted"}[1m])) '
        "/ scalar(sum(rate(dam_ingress_requests_total[1m])))", "{{outcome}}")]),
    ("Rejections by tenant class", "reqps",
     "Who is refused: anonymous clients (by address) or API keys. Keys refused while anonymous "
     "traffic floods means legitimate users are hurt.",
     [q('sum by (tenant_class) (rate(dam_ingress_requests_total{outcome!="accepted"}[1m]))',
        "{{tenant_class}}")]),
    ("Intake backlog and lag", "short",
     "Requests waiting for dispatch, and entries not yet delivered per stream. Flat near the cap "
     "under attack is fine; growing with no cap in sight is not.",
     [q("max(dam_dispatcher_intake_backlog)", "backlog"),
      q("max by (stream) (dam_pipeline_consumer_lag)", "lag {{stream}}")]),
    ("Oldest pending entry", "s",
     "Age of the oldest delivered-but-unacknowledged entry. Above 2x the visibility timeout "
     "means workers are stuck or nobody reclaims.",
     [q("max by (stream) (dam_pipeline_oldest_pending_age_seconds)", "{{stream}}")]),
    ("Queue wait (accept to start)", "s",
     "How long admitted requests wait before a worker starts them.",
     quantiles("dam_worker_queue_wait_seconds", "wait")),
    ("End-to-end latency (synchronous callers)", "s",
     "Accept to answer for callers that waited for their completion.",
     quantiles("dam_ingress_end_to_end_seconds", "e2e")),
    ("Admission latency", "s",
     "Time of the admission decision; sub-millisecond when Redis keeps up.",
     quantiles("dam_ingress_admission_seconds", "admission")),
    ("Worker utilisation", "percentunit",
     "Busy slots over all slots of live workers.",
     [q("sum(dam_worker_inflight) / sum(dam_worker_capacity)", "busy"),
      q("max(dam_pipeline_live_workers)", "live workers")]),
    ("Credits", "short",
     "Free worker slots the dispatcher sees: 0 while saturated is expected.",
     [q("max(dam_dispatcher_credits)", "credits"), q("max(dam_pipeline_capacity)", "capacity")]),
    ("LLM error rate", "percentunit",
     "Share of backend calls failing, by kind; retries and the DLQ absorb them.",
     [q('sum by (status) (rate(dam_worker_llm_calls_total{status!="ok"}[5m])) '
        "/ scalar(sum(rate(dam_worker_llm_calls_total[5m])))", "{{status}}"),
      q("sum(rate(dam_worker_llm_retries_total[5m]))", "retries/s")]),
    ("LLM latency", "s",
     "Backend time to first token and total call time (p95).",
     [q("histogram_quantile(0.95, sum by (le) (rate(dam_worker_llm_ttft_seconds_bucket[5m])))",
        "ttft p95"),
      q("histogram_quantile(0.95, sum by (le) (rate(dam_worker_llm_seconds_bucket[5m])))",
        "total p95")]),
    ("Dead letters", "short",
     "Entries in the DLQ: inspect with `dam dlq list`, requeue with `dam dlq replay`.",
     [q("max(dam_pipeline_dlq_length)", "DLQ"),
      q("sum(increase(dam_worker_dead_lettered_total[5m]))", "new in 5m")]),
    ("CPU per service", "percentunit",
     "CPU of each dam process (from the services) and each container (from cAdvisor).",
     [q(f"sum by (job, instance) (rate(process_cpu_seconds_total{{{DAM_JOBS}}}[1m]))",
        "{{job}} {{instance}}"),
      q('sum by (name) (rate(container_cpu_usage_seconds_total{name=~".+"}[1m]))',
        "container {{name}}")]),
    ("Memory per service", "bytes",
     "Resident memory: it must stay flat under any load (the backlog lives in Redis).",
     [q(f"sum by (job, instance) (process_resident_memory_bytes{{{DAM_JOBS}}})",
        "{{job}} {{instance}}"),
      q('sum by (name) (container_memory_working_set_bytes{name=~".+"})',
        "container {{name}}")]),
    ("Open file descriptors", "short", "Per process; the ingress's follow its connections.",
     [q(f"sum by (job, instance) (process_open_fds{{{DAM_JOBS}}})", "{{job}} {{instance}}"),
      q("sum(dam_ingress_open_connections)", "ingress connections")]),
    ("Restarts", "short", "Process restarts in the last hour (start time changes).",
     [q(f"sum by (job) (changes(process_start_time_seconds{{{DAM_JOBS}}}[1h]))", "{{job}}")]),
    ("Redis memory", "bytes", "Used vs maxmemory (redis_exporter); with noeviction, admissions "
     "fail when full.",
     [q("max(redis_memory_used_bytes)", "used"), q("max(redis_memory_max_bytes)", "max")]),
    ("Deny cache and the connection cap", "reqps",
     "Refusals answered without Redis (of them, those written straight to the socket by the "
     "fast deny path); at the connection cap, idle connections closed to make room and "
     "connections refused because every open one was busy.",
     [q("sum(rate(dam_ingress_deny_cache_hits_total[1m]))", "deny-cache hits"),
      q("sum(rate(dam_ingress_fast_denials_total[1m]))", "of them, fast path"),
      q("sum(rate(dam_ingress_idle_connections_closed_total[1m]))", "idle connections closed"),
      q("sum(rate(dam_ingress_refused_connections_total[1m]))", "refused connections")]),
]


def panel(i: int, title: str, unit: str, description: str,
          targets: list[dict[str, Any]]) -> dict[str, Any]:
    """A time-series panel on a 2-column grid."""
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        target["refId"] = ref
    return {"id": i + 1, "type": "timeseries", "title": title, "description": description,
            "datasource": PROM, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "gridPos": {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8}}


def logs_panel(i: int) -> dict[str, Any]:
    """Logs of one request id across services (Loki, fed by promtail)."""
    return {"id": i + 1, "type": "logs", "title": "Logs of a request id",
            "description": "Every service's JSON log lines mentioning the request id typed in "
                           "the 'request_id' box (x-dam-request-id of an answer).",
            "datasource": LOKI,
            "targets": [{"refId": "A", "datasource": LOKI,
                         "expr": '{job="traffic-dam"} |= "$request_id"'}],
            "gridPos": {"x": 0, "y": (i // 2) * 8, "w": 24, "h": 8}}


def dashboard() -> dict[str, Any]:
    """The whole dashboard document."""
    panels = [panel(i, *spec) for i, spec in enumerate(PANELS)]
    panels.append(logs_panel(len(PANELS) + (len(PANELS) % 2)))
    return {
        "uid": "traffic-dam", "title": "Traffic Dam", "schemaVersion": 39, "version": 1,
        "time": {"from": "now-30m", "to": "now"}, "refresh": "10s", "tags": ["traffic-dam"],
        "templating": {"list": [{"name": "request_id", "type": "textbox", "label": "request id",
                                 "query": ""}]},
        "panels": panels,
    }


def prometheus_queries() -> list[str]:
    """Every Prometheus expression of the dashboard (the tests evaluate them)."""
    return [t["expr"] for _, _, _, targets in PANELS for t in targets]


if __name__ == "__main__":
    out = Path(__file__).parent / "dashboards" / "traffic-dam.json"
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {out}")
