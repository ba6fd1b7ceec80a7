"""The compose stack keeps its promises: every dam service is independent, limited, healthy
by /readyz, restarted on failure, and configured with settings that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from dam_common.settings import CommonSettings
from dam_dispatcher.settings import DispatcherSettings
from dam_ingress.settings import IngressSettings
from dam_mock_llm.settings import MockSettings
from dam_worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DAM = {"ingress": (IngressSettings, 2), "dispatcher": (DispatcherSettings, 2),
       "llm_worker": (WorkerSettings, 3), "mock-llm": (MockSettings, 1)}


def _env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        names |= {alias} if isinstance(alias, str) else {prefix + name.upper()}
        names |= set(getattr(alias, "choices", ()))
    return names


@pytest.mark.parametrize("name", sorted(DAM))
def test_dam_service_is_healthchecked_limited_and_restarted(name: str) -> None:
    svc = SERVICES[name]
    assert svc["restart"] == "unless-stopped"
    limits = svc["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and limits["memory"].endswith("M")
    probe = " ".join(svc["healthcheck"]["test"])
    assert "/readyz" in probe or name == "mock-llm"
    assert svc["deploy"].get("replicas", 1) == DAM[name][1]
    depends = svc.get("depends_on") or {}
    assert set(depends) <= {"redis"}, "a dam service may wait for Redis, nothing else"


@pytest.mark.parametrize("name", sorted(DAM))
def test_environment_names_settings_that_exist(name: str) -> None:
    cls = DAM[name][0]
    known = _env_names(cls) | _env_names(CommonSettings)
    assert set(SERVICES[name].get("environment", {})) <= known


@pytest.mark.parametrize("name, port_var", [("ingress", "DAM_INGRESS_PORT"),
                                            ("dispatcher", "DAM_DISPATCHER_PORT"),
                                            ("llm_worker", "DAM_WORKER_PORT")])
def test_ports_agree_between_settings_healthcheck_and_scrape_config(name: str,
                                                                    port_var: str) -> None:
    port = SERVICES[name]["environment"][port_var]
    cls = DAM[name][0]
    default = next(f.default for f in cls.model_fields.values()
                   if f.validation_alias == port_var)
    assert int(port) == default
    assert f"127.0.0.1:{port}/readyz" in " ".join(SERVICES[name]["healthcheck"]["test"])
    prom = (ROOT / "infra" / "prometheus" / "prometheus.yml").read_text()
    assert re.search(rf"names: \[{name}\], type: A, port: {port}", prom)


def test_redis_keeps_data_and_refuses_eviction() -> None:
    command = SERVICES["redis"]["command"]
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "--maxmemory " in command
    assert SERVICES["redis"]["healthcheck"]


def test_image_runs_as_non_root_from_a_slim_base() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim AS build" in dockerfile
    assert re.search(r"^USER dam$", dockerfile, re.M)


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI")
        pytest.skip("promtool not installed here")
    config = (ROOT / "infra/prometheus/prometheus.yml").read_text().replace(
        "/etc/prometheus/alerts.yml", str(ROOT / "infra/prometheus/alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(config)
    run = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
