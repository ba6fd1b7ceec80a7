"""report.md: the before/after story of one run, every number taken from summary.json."""

from __future__ import annotations

from typing import Any

from dam_load.scenario import Scenario

RED = '<span style="color:red">**{}**</span>'


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 1000:.1f} ms" if unit == "s" else f"{value:.4g}{unit}"
    return f"{value}{unit}"


def _checks(scenario: Scenario, after: dict[str, Any]) -> list[tuple[str, bool]]:
    rate = float(scenario.dam.get("DAM_DISPATCH_RATE", "100"))
    checks = [(f"backend never above {rate:g} starts in any second",
               after["backend"]["max_started_per_second"] <= rate),
              ("zero restarts", not any(after["restarts"].values()))]
    gone = after.get("gone_clients")
    if gone:
        checks.append(("no LLM call for a client who left while queued "
                       f"({gone['left_while_queued']} left while queued)",
                       gone["llm_calls_for_clients_gone_while_queued"] == 0))
    for name, g in after["groups"].items():
        legit = next(x.legitimate for x in scenario.groups if x.name == name)
        if legit:
            checks.append((f"{name}: success ≥ 99.5%", (g["success_ratio"] or 0) >= 0.995))
        else:
            checks.append((f"{name}: every request answered (no connection errors)",
                           g["connection_errors"] == 0))
    records = after.get("records_after_10s")
    for name, p in after["processes"].items():
        if name.startswith("generator") or not p["rss_at_10s_mb"]:
            continue
        label, allowed = f"{name}: RSS within 10% of its value at 10 s", 0.0
        if name == "redis" and records:
            # The store keeps each accepted request's record for DAM_RESULT_TTL_S and each
            # completion in a capped reply stream: that growth is the work done, not a leak;
            # everything else must stay as flat as a service.
            label += (f", besides the {records['count']:,} request records, "
                      f"{records.get('completed', 0):,} results and "
                      f"{records.get('replies', 0):,} reply entries written since "
                      f"({records['mb']:g} MiB by MEMORY USAGE)")
            allowed = records["mb"]
        checks.append((label, p["peak_rss_mb"] <= 1.10 * p["rss_at_10s_mb"] + allowed))
    return checks


def _group_rows(summary: dict[str, Any], phases: list[str]) -> list[str]:
    lines = ["| group | phase | offered/s (target) | success | 429 | 503 | other 5xx "
             "| conn. errors | p50 | p95 | p99 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for group in summary["phases"][phases[0]]["groups"]:
        for phase in phases:
            g = summary["phases"][phase]["groups"][group]
            offered = f"{g['offered_rate']:g} ({g['target_rate']:g})"
            if not g["offered_ok"]:
                offered = RED.format(offered + " below 95% of target")
            ratio = "-" if g["success_ratio"] is None else f"{g['success_ratio']:.2%}"
            lines.append(f"| {group} | {phase} | {offered} | {ratio} | {g['count_429']} | "
                         f"{g['count_503']} | {g['count_5xx_other']} | {g['connection_errors']} | "
                         f"{_fmt(g['latency_p50_s'], 's')} | {_fmt(g['latency_p95_s'], 's')} | "
                         f"{_fmt(g['latency_p99_s'], 's')} |")
    return lines


def _process_rows(summary: dict[str, Any], phases: list[str]) -> list[str]:
    lines = ["| phase | process | mean CPU % | RSS at 10 s | peak RSS | peak FDs |",
             "|---|---|---|---|---|---|"]
    for phase in phases:
        for name, p in summary["phases"][phase]["processes"].items():
            lines.append(f"| {phase} | {name} | {p['mean_cpu_percent']:.1f} | "
                         f"{p['rss_at_10s_mb']:.1f} MiB | {p['peak_rss_mb']:.1f} MiB | "
                         f"{p['peak_fds']:.0f} |")
    return lines


def render(scenario: Scenario, summary: dict[str, Any], charts: list[str]) -> str:
    """The report as Markdown."""
    phases = list(summary["phases"])
    lines = [f"# Flood report: {scenario.name} (v{scenario.version})", "",
             scenario.description.replace("\n", " "), "",
             f"Machine: {summary['machine']}. Duration {summary['duration_s']:g} s per phase. "
             "Before = a naive aiohttp gateway forwarding everything to the backend; after = "
             "the dam. Every figure below is computed from this run's raw data "
             "(`requests.csv`, `samples.jsonl`).", ""]
    if "after" in summary["phases"]:
        lines += ["## Checks (after)", ""]
        for text, ok in _checks(scenario, summary["phases"]["after"]):
            lines.append(f"- {'PASS' if ok else RED.format('FAIL')} {text}")
        lines.append("")
    lines += ["## Clients", "", *_group_rows(summary, phases), "", "## Backend", "",
              "| phase | max starts in a second | mean starts/s | max backend queue | "
              "max dam backlog | queue wait mean / p95 ≤ | restarts |",
              "|---|---|---|---|---|---|---|"]
    for phase in phases:
        ph = summary["phases"][phase]
        b, qw = ph["backend"], ph["queue_wait"]
        wait = f"{_fmt(qw.get('mean_s'), 's')} / {_fmt(qw.get('p95_le_s'), 's')}" if qw else "-"
        restarts = ", ".join(f"{k} {v}" for k, v in ph["restarts"].items() if v) or "none"
        lines.append(f"| {phase} | {b['max_started_per_second']} | {b['mean_started_per_second']}"
                     f" | {b['max_queued']} | {_fmt(ph['max_backlog'])} | {wait} | {restarts} |")
    gone = summary["phases"].get("after", {}).get("gone_clients")
    if gone:
        lines += ["", "## Callers who left before their answer (after)", "",
                  f"- left while queued: {gone['left_while_queued']} (cancelled; LLM calls "
                  f"spent on them: {gone['llm_calls_for_clients_gone_while_queued']})",
                  f"- left while their generation ran: {gone['left_while_running']} "
                  f"(backend calls aborted: {gone['backend_calls_aborted']})"]
    lines += ["", "## Processes", "", *_process_rows(summary, phases), "", "## Charts", ""]
    lines += [f"![{c[:-4]}]({c})" for c in charts]
    return "\n".join(lines) + "\n"
