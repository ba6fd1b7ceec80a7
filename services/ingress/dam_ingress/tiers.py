"""Tiers: what share of the backend a tenant gets (weight), how far it may queue (backlog),
how urgent its requests may be (max priority) and how many LLM tokens a minute it may spend.

Configured in the limits file under `[tiers.<name>]`; keys and the anonymous class name
their tier. Without a file every tenant is in the default tier built from DAM_* settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dam_common.errors import ConfigError
from dam_common.scripts import PRIORITY_LEVELS

MIN_WEIGHT, MAX_WEIGHT = 0.1, 1000.0


@dataclass(frozen=True, slots=True)
class Tier:
    """Scheduling and budget limits shared by every tenant of the tier."""

    name: str = "default"
    weight: float = 1.0
    max_priority: int = 0
    backlog: int = 250  # queued requests per tenant (0: the global cap alone)
    tokens_per_minute: int = 0  # 0: no token budget
    enforce_tokens: bool = True  # False: shadow mode for the token budget

    def priority(self, asked: int | None) -> int:
        """The priority a request gets: what it asked for, bounded by what the tier allows."""
        return min(asked or 0, self.max_priority)


def parse_tiers(doc: dict[str, Any], default: Tier) -> dict[str, Tier]:
    """`[tiers.<name>]` tables; unset fields take the default tier's values."""
    raw = doc.get("tiers", {})
    if not isinstance(raw, dict):
        raise ConfigError("limits file: 'tiers' must be a table of [tiers.<name>] tables")
    tiers = {default.name: default}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"limits file: tiers.{name} must be a table")
        tiers[name] = _parse_tier(name, table, default)
    return tiers


def _parse_tier(name: str, table: dict[str, Any], default: Tier) -> Tier:
    where = f"limits file: tiers.{name}"
    if not name or not name.isprintable() or any(c in name for c in " {}:"):
        raise ConfigError(f"{where}: a tier name must have no spaces, braces or colons")
    unknown = set(table) - {"weight", "max_priority", "backlog", "tokens_per_minute",
                            "enforce_tokens"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    weight = _number(table.get("weight", default.weight), f"{where}.weight")
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise ConfigError(f"{where}.weight must be between {MIN_WEIGHT} and {MAX_WEIGHT}")
    max_priority = _integer(table.get("max_priority", 0), f"{where}.max_priority")
    if not 0 <= max_priority < PRIORITY_LEVELS:
        raise ConfigError(f"{where}.max_priority must be 0 to {PRIORITY_LEVELS - 1}")
    backlog = _integer(table.get("backlog", default.backlog), f"{where}.backlog")
    tpm = _integer(table.get("tokens_per_minute", 0), f"{where}.tokens_per_minute")
    enforce = table.get("enforce_tokens", True)
    if backlog < 0 or tpm < 0 or not isinstance(enforce, bool):
        raise ConfigError(f"{where}: backlog and tokens_per_minute must be >= 0, "
                          "enforce_tokens true or false")
    return Tier(name, weight, max_priority, backlog, tpm, enforce)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number")
    return float(value)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer")
    return value
