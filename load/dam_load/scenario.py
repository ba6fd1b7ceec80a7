"""A named, versioned flood scenario (load/scenarios/*.toml), validated on load."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"


class Group(BaseModel):
    """Clients that behave alike: a total arrival rate spread over identities."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    rate: float = Field(gt=0, description="requests/s offered by the whole group")
    identities: int = Field(1, ge=1)
    identify_by: str = Field("key", pattern="^(key|forwarded_for)$")
    key_rate: float = Field(5, gt=0, description="each identity's bucket rate in the dam")
    key_burst: int = Field(10, ge=1)
    legitimate: bool = False
    tier: str | None = Field(None, description="the dam tier of its identities (see tiers)")
    stream: bool = False
    start_s: float = Field(0, ge=0, description="the group starts this long into the phase")
    connections: int = Field(128, ge=1, description="keep-alive connections per generator "
                             "process (a synchronous client holds one while it waits)")
    duration_s: float | None = Field(None, gt=0, description="default: until the phase ends")


class Backend(BaseModel):
    """The mock backend's capacity model."""

    model_config = ConfigDict(extra="forbid")
    slots: int = 16
    ttft_ms: float = 50
    tokens: int = 16
    tokens_per_s: float = 200
    queue_memory_kb: int = 256
    crash_at_queue: int = 2000


class Scenario(BaseModel):
    """One scenario: groups of clients, a backend, and the dam's settings for the after run."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = Field(ge=1)
    description: str
    duration_s: float = Field(gt=0)
    drain_s: float = Field(10, ge=0, description="time after the load for answers to arrive")
    client_timeout_s: float = Field(30, gt=0, description="a client gives up on an answer after")
    backend: Backend = Backend()
    dam: dict[str, str] = Field(default_factory=dict, description="DAM_* settings (after)")
    tiers: dict[str, dict[str, int | float | bool]] = Field(
        default_factory=dict, description="[tiers.<name>] tables of the dam's limits file")
    groups: list[Group] = Field(min_length=1)


class ScenarioError(Exception):
    """A scenario file that cannot be used, with the reason."""


def load_scenario(name_or_path: str, duration_s: float | None = None) -> Scenario:
    """By name from load/scenarios/, or by path; `duration_s` shortens it (the smoke run)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
        raise ScenarioError(f"no scenario {name_or_path!r} (known: {known})")
    try:
        scenario = Scenario.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if duration_s is not None:
        factor = duration_s / scenario.duration_s
        groups = [g.model_copy(update={
            "start_s": g.start_s * factor,
            "duration_s": g.duration_s * factor if g.duration_s else None})
            for g in scenario.groups]
        scenario = scenario.model_copy(update={"duration_s": duration_s, "groups": groups})
    return scenario
