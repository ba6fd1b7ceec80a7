"""summary.json: per group and phase, what was offered and what came back; per phase, what the
backend and every process went through. Computed from the run's raw rows and samples only."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

from dam_load.runner import PhaseResult
from dam_load.scenario import Scenario

OFFERED_OK = 0.95


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _group_summary(rows: list[dict[str, Any]], target_rate: float,
                   duration_s: float) -> dict[str, Any]:
    statuses = Counter(int(r["status"]) for r in rows)
    total = len(rows)
    latencies = [float(r["latency_s"]) for r in rows]
    ok_latencies = [float(r["latency_s"]) for r in rows if r["status"] == "200"]
    rejections = [float(r["latency_s"]) for r in rows if r["status"] in ("429", "503")]
    offered = total / duration_s if duration_s else 0.0
    return {
        "requests": total,
        "target_rate": target_rate,
        "offered_rate": round(offered, 1),
        "offered_ok": offered >= OFFERED_OK * target_rate,
        "success_ratio": round(statuses[200] / total, 4) if total else None,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "count_429": statuses[429], "count_503": statuses[503],
        "count_5xx_other": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
        "connection_errors": statuses[0],
        "latency_p50_s": percentile(latencies, 0.50),
        "latency_p95_s": percentile(latencies, 0.95),
        "latency_p99_s": percentile(latencies, 0.99),
        "success_latency_p95_s": percentile(ok_latencies, 0.95),
        "rejection_latency_p99_s": percentile(rejections, 0.99),
    }


def _backend_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    totals = [(s["t"], s["backend"]["requests_total"]) for s in samples if s.get("backend")]
    per_second = [max(0, b - a) for (_, a), (_, b) in itertools.pairwise(totals)]
    queued = [s["backend"].get("queued", 0) for s in samples if s.get("backend")]
    # The backend counts its starts per wall-clock second itself; a sample interval of 1.05 s
    # would overstate them, so the maximum is the backend's own (per incarnation).
    own = [s["backend"].get("max_started_per_second", 0) for s in samples if s.get("backend")]
    return {"max_started_per_second": max(own, default=0),
            "mean_started_per_second": round(sum(per_second) / len(per_second), 1)
            if per_second else 0,
            "max_queued": max(queued, default=0),
            "unreachable_samples": sum(1 for s in samples if not s.get("backend"))}


def _process_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = {name for s in samples for name in s["processes"]}
    for name in sorted(names):
        series = [(s["t"], s["processes"][name]) for s in samples if name in s["processes"]]
        rss = [p["rss_mb"] for _, p in series]
        at_10s = next((p["rss_mb"] for t, p in series if t >= 10), rss[0] if rss else 0)
        out[name] = {"peak_rss_mb": max(rss, default=0), "rss_at_10s_mb": at_10s,
                     "final_rss_mb": rss[-1] if rss else 0,
                     "peak_fds": max((p["fds"] for _, p in series), default=0),
                     "mean_cpu_percent": round(sum(p["cpu"] for _, p in series)
                                               / max(1, len(series)), 1)}
    return out


def summarise(scenario: Scenario, results: list[PhaseResult], machine: str) -> dict[str, Any]:
    """The whole summary document."""
    doc: dict[str, Any] = {"scenario": scenario.name, "version": scenario.version,
                           "duration_s": scenario.duration_s, "machine": machine, "phases": {}}
    for res in results:
        groups = {}
        for g in scenario.groups:
            rows = [r for r in res.rows if r["group"] == g.name]
            groups[g.name] = _group_summary(rows, g.rate,
                                            g.duration_s or scenario.duration_s - g.start_s)
        pipeline = [s["pipeline"] for s in res.samples if s.get("pipeline")]
        doc["phases"][res.phase] = {
            "groups": groups,
            "backend": _backend_summary(res.samples),
            "max_backlog": max((p["intake_backlog"] for p in pipeline), default=None),
            "queue_wait": res.queue_wait,
            "processes": _process_summary(res.samples),
            "restarts": res.restarts,
        }
        if res.gone_clients:
            doc["phases"][res.phase]["gone_clients"] = res.gone_clients
        if res.records:
            doc["phases"][res.phase]["records_after_10s"] = res.records
    return doc
