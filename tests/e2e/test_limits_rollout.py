"""Rolling out limits safely: shadow mode per limit, and reloading the file on SIGHUP."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from dam_ingress.access import hash_key
from tests.support.stack import DamStack, Proc

pytestmark = pytest.mark.e2e

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def _post(ingress: Proc, key: str) -> int:
    req = urllib.request.Request(f"{ingress.url}/v1/chat/completions", data=BODY,
                                 headers={"Authorization": f"Bearer {key}",
                                          "Prefer": "respond-async"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def _key(name: str, secret: str, extra: str = "") -> str:
    return (f'[[keys]]\nname = "{name}"\nkey_sha256 = "{hash_key(secret)}"\n'
            f"rate = 1\nburst = 2\n{extra}\n")


def test_shadow_mode_counts_would_be_rejections_but_lets_them_through(
        stack: DamStack, tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(_key("strict", "sk-strict") + _key("trial", "sk-trial", "enforce = false"))
    ingress = stack.ingress(DAM_CONFIG_FILE=str(limits))
    assert [_post(ingress, "sk-strict") for _ in range(4)] == [202, 202, 429, 429]
    assert [_post(ingress, "sk-trial") for _ in range(4)] == [202, 202, 202, 202]
    with urllib.request.urlopen(f"{ingress.url}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert "dam_ingress_shadow_rejections_total 2.0" in metrics
    stack.stop_all()
    assert ingress.log.read_text().count("would reject") == 2


def test_sighup_reloads_limits_and_refuses_a_bad_file(stack: DamStack, tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(_key("alice", "sk-alice"))
    ingress = stack.ingress(DAM_CONFIG_FILE=str(limits))
    assert _post(ingress, "sk-bob") == 401
    limits.write_text(_key("alice", "sk-alice") + _key("bob", "sk-bob"))
    ingress.process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert _post(ingress, "sk-bob") == 202
    limits.write_text("[[keys]]\nname = 'broken'\n")  # no key_sha256
    ingress.process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert _post(ingress, "sk-bob") == 202  # the old limits stay
    assert ingress.process.poll() is None
    stack.stop_all()
    log = ingress.log.read_text()
    assert "limits reloaded" in log and "limits file refused" in log
