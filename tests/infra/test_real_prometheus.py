"""A real Prometheus scrapes the real dam on loopback; every dashboard query and every metric
the alert rules use must come back with data (cAdvisor's container metrics only parse here:
there are no containers)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.stack import DamStack

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "grafana"))
from build_dashboard import prometheus_queries  # noqa: E402

pytestmark = pytest.mark.e2e
CONTAINER_ONLY = re.compile(r"\bcontainer_")


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed ({package}); .ci/run installs it"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return found


def _api(port: int, query: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as resp:
        return dict(json.loads(resp.read()))


@pytest.fixture
def prometheus(stack: DamStack, tmp_path: Path) -> Iterator[int]:
    prom = _binary("prometheus", "Debian package prometheus")
    exporter = _binary("prometheus-redis-exporter", "Debian package prometheus-redis-exporter")
    mock = stack.mock_llm("--ttft-ms", "20", "--tokens", "3")
    ingress = stack.ingress(DAM_ANON_RATE="5", DAM_ANON_BURST="5")
    dispatcher = stack.dispatcher()
    worker = stack.worker(mock)
    exporter_port = free_port()
    redis_addr = stack.redis_url.split("//", 1)[1].split("/", 1)[0]
    procs = [subprocess.Popen([exporter, f"--redis.addr=redis://{redis_addr}",
                               f"--web.listen-address=127.0.0.1:{exporter_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    port = free_port()
    config = tmp_path / "prometheus.yml"
    jobs = {"dam-ingress": ingress.port, "dam-dispatcher": dispatcher.port,
            "dam-worker": worker.port, "redis": exporter_port}
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "infra" / "prometheus" / "alerts.yml")],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
                           for job, p in jobs.items()]}))
    procs.append(subprocess.Popen(
        [prom, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        _drive_traffic(ingress.url, mock.url)
        _wait_for_scrapes(port, len(jobs))
        yield port
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _set_mock(mock_url: str, **changes: object) -> None:
    req = urllib.request.Request(f"{mock_url}/config", data=json.dumps(changes).encode())
    urllib.request.urlopen(req, timeout=5).close()


def _drive_traffic(ingress_url: str, mock_url: str) -> None:
    """Admissions, 429s, and one request the backend refuses (an error, a dead letter)."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    _set_mock(mock_url, error_rate=1.0, status=400)
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(f"{ingress_url}/v1/chat/completions",
                                                      data=body), timeout=20).close()
    _set_mock(mock_url, error_rate=0.0)
    for _ in range(12):  # the bucket holds 5 (one spent): some admitted, the rest get 429
        req = urllib.request.Request(f"{ingress_url}/v1/chat/completions", data=body)
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=20).close()


def _wait_for_scrapes(port: int, jobs: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = _api(port, "count(up == 1)")["data"]["result"]
            if result and int(float(result[0]["value"][1])) == jobs:
                time.sleep(4)  # a few more samples, so rate() over 1m has two points
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("Prometheus did not scrape every target")


def test_every_dashboard_query_returns_data(prometheus: int) -> None:
    empty = []
    for expr in prometheus_queries():
        answer = _api(prometheus, expr)
        assert answer["status"] == "success", (expr, answer)
        if not answer["data"]["result"] and not CONTAINER_ONLY.search(expr):
            empty.append(expr)
    assert empty == []


def test_every_alert_expression_parses_and_its_metrics_exist(prometheus: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus}/api/v1/rules", timeout=10) as r:
        groups = json.loads(r.read())["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 8
    assert all(rule["health"] == "ok" for rule in rules), rules
    missing = []
    for rule in rules:
        assert _api(prometheus, rule["query"])["status"] == "success"
        for metric in set(re.findall(r"\b((?:dam|redis|process)_[a-z_]+)", rule["query"])):
            if not _api(prometheus, f"count({metric})")["data"]["result"]:
                missing.append(metric)
    assert missing == []
