"""The `dam` command as a user runs it: clear output, clear errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from dam_common.scripts import LuaScripts
from dam_common.settings import CommonSettings
from tests.integration.helpers import admit_n


def _dam(settings: CommonSettings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DAM_REDIS_URL": settings.redis_url,
                "DAM_KEY_PREFIX": settings.key_prefix, **env}
    return subprocess.run([sys.executable, "-m", "dam_cli", *args], env=full_env, text=True,
                          capture_output=True, timeout=60, check=False)


async def test_status_reports_backlog_workers_and_credits(scripts: LuaScripts,
                                                          settings: CommonSettings) -> None:
    await admit_n(scripts, 3, now_ms=None)  # the server's clock: status reads it too
    await scripts.renew_lease("w1", 4, 60_000)
    out = _dam(settings, "status", "--json", "--interval", "0.1")
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout)
    assert doc["intake_backlog"] == 3
    assert doc["live_workers"] == {"w1": 4}
    assert (doc["capacity"], doc["credits"]) == (4, 4)
    assert doc["totals"]["accepted"] == 3
    text = _dam(settings, "status", "--interval", "0.1")
    assert "intake backlog" in text.stdout and "credits 4" in text.stdout


def test_invalid_setting_is_one_clear_line(settings: CommonSettings) -> None:
    out = _dam(settings, "worker", DAM_WORKER_CAPACITY="lots")
    assert out.returncode == 2
    assert "invalid setting worker_capacity" in out.stderr
    assert "Traceback" not in out.stderr


def test_replay_of_a_malformed_id_is_refused_clearly(settings: CommonSettings) -> None:
    out = _dam(settings, "dlq", "replay", "not-an-id")
    assert out.returncode == 2
    assert "not a stream id: not-an-id" in out.stderr
    assert "Traceback" not in out.stderr


def test_unreachable_redis_is_reported_not_raised(settings: CommonSettings) -> None:
    out = _dam(settings, "status", DAM_REDIS_URL="redis://127.0.0.1:1/0")
    assert out.returncode == 1
    assert out.stderr.startswith("dam: cannot reach Redis")


def test_bad_limits_file_stops_the_ingress_with_its_reason(settings: CommonSettings,
                                                          tmp_path: Path) -> None:
    config = tmp_path / "limits.toml"
    config.write_text('[[keys]]\nname = "x"\nkey_sha256 = "short"\n')
    out = _dam(settings, "ingress", DAM_CONFIG_FILE=str(config), DAM_INGRESS_PORT="0")
    assert out.returncode == 2
    assert "key_sha256" in out.stderr and "Traceback" not in out.stderr
