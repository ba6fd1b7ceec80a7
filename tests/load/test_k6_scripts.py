"""The k6 scripts parse as ES modules (Node's parser; k6 itself is not needed) and cover every
named scenario."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
K6 = ROOT / "load" / "k6"


def test_every_scenario_has_a_k6_script() -> None:
    scenarios = {p.stem for p in (ROOT / "load" / "scenarios").glob("*.toml")}
    assert scenarios <= {p.stem for p in K6.glob("*.js")}


@pytest.mark.parametrize("script", sorted(p.name for p in K6.glob("*.js")))
def test_script_parses_as_an_es_module(script: str, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing in CI")
        pytest.skip("node not installed here")
    copy = tmp_path / (Path(script).stem + ".mjs")
    copy.write_text((K6 / script).read_text())
    run = subprocess.run([node, "--check", str(copy)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "export const options" in copy.read_text() or script == "lib.js"
