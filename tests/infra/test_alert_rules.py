"""The alert rules parse and their promtool unit tests pass (each alert firing and not)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"


def promtool() -> str:
    """promtool from Debian's prometheus package (.ci/run installs it)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI: .ci/run should have installed prometheus")
        pytest.skip("promtool not installed here (apt-get install prometheus)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT)


def test_alert_rules_are_valid() -> None:
    run = _run("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 8 rules found" in run.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = (PROMETHEUS / "alerts.yml").read_text()
    tests = (PROMETHEUS / "tests" / "alerts_test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines()
             if line.strip().startswith("- alert:")]
    assert len(names) == 8
    assert [n for n in names if f"alertname: {n}" not in tests] == []


def test_alert_unit_tests_pass() -> None:
    run = _run("test", "rules", str(PROMETHEUS / "tests" / "alerts_test.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
