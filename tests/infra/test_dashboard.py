"""The committed dashboard is what the generator builds, and every panel says what it shows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "grafana"))
from build_dashboard import dashboard  # noqa: E402


def test_committed_json_matches_the_generator() -> None:
    committed = json.loads((ROOT / "infra/grafana/dashboards/traffic-dam.json").read_text())
    assert committed == dashboard(), "run: python infra/grafana/build_dashboard.py"


def test_every_panel_has_title_description_unit_and_a_query() -> None:
    for panel in dashboard()["panels"]:
        assert panel["title"] and len(panel["description"]) > 20
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        if panel["type"] == "timeseries":
            assert panel["fieldConfig"]["defaults"]["unit"]


def test_panels_do_not_overlap() -> None:
    cells = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, panel["title"]
        cells |= area
