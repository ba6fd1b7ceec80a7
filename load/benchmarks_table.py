"""Prints the before/after tables of docs/benchmarks.md from flood runs' summary.json files.

    .venv/bin/python load/benchmarks_table.py out/single-abuser-*/summary.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"


def table(path: Path) -> str:
    doc = json.loads(path.read_text())
    lines = [f"### {doc['scenario']} (v{doc['version']}, {doc['duration_s']:g} s per phase)", "",
             "| group | phase | offered/s (target) | success | 429 | 503 | other 5xx | "
             "client errors | p50 | p95 | p99 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    phases = doc["phases"]
    for group in next(iter(phases.values()))["groups"]:
        for phase, ph in phases.items():
            g = ph["groups"][group]
            flag = "" if g["offered_ok"] else " ⚠"
            ratio = "-" if g["success_ratio"] is None else f"{g['success_ratio']:.1%}"
            lines.append(f"| {group} | {phase} | {g['offered_rate']:,.0f} ({g['target_rate']:,.0f})"
                         f"{flag} | {ratio} | {g['count_429']:,} | {g['count_503']:,} | "
                         f"{g['count_5xx_other']:,} | {g['connection_errors']:,} | "
                         f"{ms(g['latency_p50_s'])} | {ms(g['latency_p95_s'])} | "
                         f"{ms(g['latency_p99_s'])} |")
    lines += ["", "| phase | backend max starts/s | mean starts/s | max backend queue | "
              "max dam backlog | restarts | peak RSS: ingress / gateway, backend |",
              "|---|---|---|---|---|---|---|"]
    for phase, ph in phases.items():
        b, p = ph["backend"], ph["processes"]
        front = p.get("ingress") or p.get("gateway") or {}
        restarts = ", ".join(f"{k} {v}" for k, v in ph["restarts"].items() if v) or "none"
        backlog = "-" if ph["max_backlog"] is None else ph["max_backlog"]
        lines.append(f"| {phase} | {b['max_started_per_second']} | {b['mean_started_per_second']}"
                     f" | {b['max_queued']} | {backlog}"
                     f" | {restarts} | {front.get('peak_rss_mb', '-')} MiB, "
                     f"{p.get('backend', {}).get('peak_rss_mb', '-')} MiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(table(Path(arg)) for arg in sys.argv[1:]))
