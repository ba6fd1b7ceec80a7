"""Rebuild summary.json, report.md and the charts of a flood run from its raw data.

    .venv/bin/python -m dam_load.resummarise out/<scenario>-<time> [SCENARIO]

Restarts, queue-wait histograms and the gone-clients counts (read from Redis at the end of
the after phase) are not in the raw rows; they are kept from the run's existing summary.json.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from dam_load.charts import draw_all
from dam_load.flood import machine
from dam_load.report import render
from dam_load.runner import PhaseResult
from dam_load.scenario import load_scenario
from dam_load.summary import summarise


def resummarise(outdir: Path, scenario_name: str | None = None) -> None:
    """Recompute everything derived from requests.csv and samples.jsonl."""
    old = json.loads((outdir / "summary.json").read_text())
    scenario = load_scenario(scenario_name or old["scenario"])
    scenario = scenario.model_copy(update={"duration_s": old["duration_s"]})
    rows = list(csv.DictReader((outdir / "requests.csv").read_text().splitlines()))
    samples = [json.loads(line) for line in (outdir / "samples.jsonl").read_text().splitlines()]
    results = []
    for phase, ph in old["phases"].items():
        results.append(PhaseResult(
            phase, [r for r in rows if r["phase"] == phase],
            [s for s in samples if s["phase"] == phase], ph["restarts"], ph["queue_wait"],
            ph.get("gone_clients", {}), ph.get("records_after_10s", {})))
    summary = summarise(scenario, results, old.get("machine") or machine())
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    charts = draw_all(results, outdir)
    (outdir / "report.md").write_text(render(scenario, summary, charts))


if __name__ == "__main__":
    resummarise(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
