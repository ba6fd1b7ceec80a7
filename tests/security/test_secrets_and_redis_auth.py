"""Secrets stay out of logs; Redis access with a password works and fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from dam_cli.redis_server import EmbeddedServer
from dam_ingress.access import hash_key
from tests.support.ports import free_port
from tests.support.stack import DamStack

pytestmark = pytest.mark.e2e

SECRET_KEY = "sk-canary-7f3a9c"
PROMPT = "PROMPT-canary-51d2: my password is hunter2"


def _post(url: str, key: str) -> int:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]})
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                 headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def _logs(stack: DamStack) -> str:
    stack.stop_all()
    return "".join(p.log.read_text() for p in stack.procs)


@pytest.mark.parametrize("log_prompts", [False, True])
def test_logs_never_hold_api_keys_and_prompts_only_when_asked(
        stack: DamStack, tmp_path: Path, log_prompts: bool) -> None:
    config = tmp_path / "limits.toml"
    config.write_text(f'[[keys]]\nname = "canary"\nkey_sha256 = "{hash_key(SECRET_KEY)}"\n')
    stack.env.update({"DAM_CONFIG_FILE": str(config), "DAM_LOG_LEVEL": "DEBUG",
                      "DAM_LOG_PROMPTS": str(log_prompts).lower()})
    mock = stack.mock_llm("--ttft-ms", "10")
    ingress = stack.ingress()
    stack.dispatcher()
    stack.worker(mock)
    assert _post(ingress.url, SECRET_KEY) == 200
    assert _post(ingress.url, "sk-wrong-" + SECRET_KEY) == 401
    logs = _logs(stack)
    events = [orjson.loads(line) for line in logs.splitlines() if line.strip()]  # all JSON
    accepted = next(e for e in events if e["msg"] == "accepted")
    completed = next(e for e in events if e["msg"] == "completed")
    assert accepted["service"] == "ingress" and accepted["client"] == "key:canary"
    assert completed["rid"] == accepted["rid"] and completed["client"] == "key:canary"
    assert completed["llm_ms"] > 0 and "queue_wait_ms" in completed
    assert SECRET_KEY not in logs
    assert ("PROMPT-canary-51d2" in logs) is log_prompts


def test_password_protected_redis(stack: DamStack, tmp_path: Path) -> None:
    server = EmbeddedServer(free_port(), tmp_path / "redis",
                            extra_args=("--requirepass", "s3cret-pw"))
    server.start()
    try:
        stack.redis_url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
        ingress = stack.ingress()  # waits for /readyz: authenticated, scripts loaded
        env = {**os.environ, "DAM_REDIS_URL": f"redis://:wrong@127.0.0.1:{server.port}/0"}
        status = subprocess.run([sys.executable, "-m", "dam_cli", "status"], env=env, text=True,
                                capture_output=True, timeout=30, check=False)
        assert status.returncode == 1
        assert status.stderr.startswith("dam: cannot reach Redis")
        assert "Traceback" not in status.stderr
        with urllib.request.urlopen(f"{ingress.url}/readyz", timeout=5) as resp:
            assert orjson.loads(resp.read())["ready"] is True
        stack.redis_url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        port = free_port()
        bad = stack._spawn("ingress-bad", ["ingress"], {"DAM_INGRESS_PORT": str(port)}, port)
        time.sleep(2.5)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{bad.url}/readyz", timeout=5)
        assert err.value.code == 503
        assert "Authentication" in orjson.loads(err.value.read())["error"]
    finally:
        stack.stop_all()
        server.stop()
