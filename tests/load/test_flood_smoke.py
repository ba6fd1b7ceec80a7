"""The flood runner end to end on a tiny scenario: every number in the report comes from the
run's own raw data (this checks the bookkeeping, not the speed)."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from dam_load.flood import run_flood
from dam_load.scenario import ScenarioError, load_scenario

pytestmark = pytest.mark.e2e
SMOKE = Path(__file__).with_name("smoke.toml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_flood(str(SMOKE), tmp_path_factory.mktemp("out"))


def test_report_files_are_written(run_dir: Path) -> None:
    for name in ("summary.json", "report.md", "requests.csv", "samples.jsonl", "rates.png",
                 "status.png", "latency.png", "backlog.png", "processes.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_counts_come_from_the_raw_rows(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = list(csv.DictReader((run_dir / "requests.csv").read_text().splitlines()))
    for phase in ("before", "after"):
        for group, g in summary["phases"][phase]["groups"].items():
            mine = [r for r in rows if r["phase"] == phase and r["group"] == group]
            assert g["requests"] == len(mine) > 0
            assert g["status_counts"] == {k: v for k, v in sorted(
                Counter(str(int(r["status"])) for r in mine).items(), key=lambda kv: int(kv[0]))}
            assert g["count_429"] == sum(r["status"] == "429" for r in mine)


def test_backend_figures_come_from_the_samples(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    for phase in ("before", "after"):
        own = [s["backend"]["max_started_per_second"] for s in samples
               if s["phase"] == phase and s.get("backend")]
        totals = [s["backend"]["requests_total"] for s in samples
                  if s["phase"] == phase and s.get("backend")]
        steps = [max(0, b - a) for a, b in itertools.pairwise(totals)]
        backend = summary["phases"][phase]["backend"]
        assert backend["max_started_per_second"] == max(own)
        assert backend["mean_started_per_second"] == round(sum(steps) / len(steps), 1)
    after = summary["phases"]["after"]
    assert after["backend"]["max_started_per_second"] <= 20  # the dispatch rate


def test_report_quotes_the_summary(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    report = (run_dir / "report.md").read_text()
    for phase in ("before", "after"):
        g = summary["phases"][phase]["groups"]["abuser"]
        offered = f"{g['offered_rate']:g} ({g['target_rate']:g})"
        if not g["offered_ok"]:
            offered = f'<span style="color:red">**{offered} below 95% of target**</span>'
        ratio = f"{g['success_ratio']:.2%}"
        assert (f"| abuser | {phase} | {offered} | {ratio} | {g['count_429']} | "
                f"{g['count_503']} | {g['count_5xx_other']} | {g['connection_errors']} |"
                ) in report
        backend = summary["phases"][phase]["backend"]
        assert (f"| {phase} | {backend['max_started_per_second']} | "
                f"{backend['mean_started_per_second']} | {backend['max_queued']} |") in report


def test_gone_clients_are_read_from_the_dams_counters(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    gone = summary["phases"]["after"]["gone_clients"]
    assert set(gone) == {"left_while_queued", "left_while_running", "backend_calls_aborted",
                         "llm_calls_for_clients_gone_while_queued"}
    assert gone["llm_calls_for_clients_gone_while_queued"] == 0
    assert "gone_clients" not in summary["phases"]["before"]  # the naive gateway has no queue
    report = (run_dir / "report.md").read_text()
    assert f"- left while queued: {gone['left_while_queued']} (cancelled;" in report


def test_unknown_scenario_is_a_clear_error() -> None:
    with pytest.raises(ScenarioError, match="no scenario 'nope'"):
        load_scenario("nope")
    for name in ("single-abuser", "distributed-flood", "burst", "steady"):
        assert load_scenario(name).name == name
