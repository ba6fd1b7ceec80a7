"""`dam flood SCENARIO`: run before and after, write out/<scenario>-<timestamp>/."""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path

from dam_load.charts import draw_all
from dam_load.generator import FIELDS
from dam_load.report import render
from dam_load.runner import Phase, PhaseResult
from dam_load.scenario import load_scenario
from dam_load.summary import summarise


def machine() -> str:
    """What the run ran on, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()}"


def run_flood(name: str, out_root: Path, duration_s: float | None = None,
              phases: tuple[str, ...] = ("before", "after")) -> Path:
    """Run the scenario's phases one after the other; returns the output folder."""
    scenario = load_scenario(name, duration_s)
    outdir = out_root / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    outdir.mkdir(parents=True)
    results: list[PhaseResult] = []
    for phase in phases:
        print(f"[{scenario.name}] {phase}: {scenario.duration_s:g} s of load...", flush=True)
        results.append(Phase(scenario, phase, outdir / "raw").run())
    with (outdir / "requests.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("phase", *FIELDS))
        for res in results:
            writer.writerows((res.phase, *(row[f] for f in FIELDS)) for row in res.rows)
    with (outdir / "samples.jsonl").open("w") as out:
        for res in results:
            for sample in res.samples:
                out.write(json.dumps({"phase": res.phase, **sample}) + "\n")
    summary = summarise(scenario, results, machine())
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    charts = draw_all(results, outdir)
    (outdir / "report.md").write_text(render(scenario, summary, charts))
    print(f"[{scenario.name}] report: {outdir / 'report.md'}", flush=True)
    return outdir
