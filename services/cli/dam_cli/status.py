"""`dam status`: the pipeline on one screen, read from Redis alone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dam_common.keys import Keys
from dam_common.snapshot import take_snapshot

RATE_FIELDS = ("accepted", "rejected_rate", "rejected_tokens", "rejected_intake",
               "rejected_tenant_backlog", "rejected_backlog", "dispatched", "completed",
               "failed", "expired", "cancelled")


async def _totals(redis: Redis, keys: Keys) -> dict[str, str]:
    """The counters hash, with `accepted` read from the intake stream's own entries-added
    (the admission script does not spend a command per request counting it)."""
    totals: dict[str, str] = await redis.hgetall(keys.counters)  # type: ignore[assignment]
    try:
        info = await redis.xinfo_stream(keys.intake)
        totals["accepted"] = str(info.get("entries-added", 0))
    except ResponseError:  # no stream yet: nothing admitted
        totals["accepted"] = "0"
    return totals


async def collect(redis: Redis, keys: Keys, interval_s: float = 1.0) -> dict[str, Any]:
    """The snapshot, plus totals and rates over `interval_s`."""
    before = await _totals(redis, keys)
    t0 = time.monotonic()
    doc = (await take_snapshot(redis, keys)).to_json()
    await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - t0)))
    after = await _totals(redis, keys)
    elapsed = max(1e-3, time.monotonic() - t0)
    doc["totals"] = {f: int(after.get(f, 0)) for f in RATE_FIELDS}
    doc["rates_per_s"] = {f: round((int(after.get(f, 0)) - int(before.get(f, 0))) / elapsed, 1)
                          for f in RATE_FIELDS}
    return doc


def render(doc: dict[str, Any]) -> str:
    """The one-screen text form."""
    rates, totals = doc["rates_per_s"], doc["totals"]
    wg = doc["work_group"]
    lines = [
        f"intake backlog     {doc['intake_backlog']:>8}   from {doc['active_tenants']} tenants",
        f"work in flight     {doc['work_in_flight']:>8}   pending {wg['pending']}, "
        f"lag {wg['lag']}, oldest pending {wg['oldest_pending_age_s'] or 0}s",
        f"live workers       {len(doc['live_workers']):>8}   capacity {doc['capacity']}, "
        f"credits {doc['credits']}",
        f"dead letters       {doc['dlq_length']:>8}",
        "",
        f"{'':18} {'per s':>8} {'total':>10}",
    ]
    for field in RATE_FIELDS:
        lines.append(f"{field:18} {rates[field]:>8} {totals[field]:>10}")
    return "\n".join(lines)
