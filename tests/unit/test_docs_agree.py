"""The README documents every setting, and the example limits file loads."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from dam_common.settings import CommonSettings
from dam_dispatcher.settings import DispatcherSettings
from dam_ingress.access import Anonymous, Client, load_policy
from dam_ingress.settings import IngressSettings
from dam_mock_llm.settings import MockSettings
from dam_worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


def _env_names(cls: type[BaseSettings]) -> list[str]:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names = []
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        names.append(alias if isinstance(alias, str) else prefix + name.upper())
    return names


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    classes = (CommonSettings, IngressSettings, DispatcherSettings, WorkerSettings, MockSettings)
    missing = [n for cls in classes for n in _env_names(cls) if f"`{n}" not in readme]
    assert missing == []


def test_example_limits_file_loads_and_requires_keys() -> None:
    policy = load_policy(ROOT / "infra" / "limits.example.toml", Anonymous(1, 1),
                         Client("key", 1, 1), [])
    assert policy.requires_key
    demo = policy.resolve("Bearer sk-demo-123", "127.0.0.1", None)
    assert (demo.identity, demo.tenant, demo.tier.name, demo.tier.weight) == (
        "key:demo", "key:demo", "pro", 8.0)
