"""`dam status`: the pipeline on one screen, read from Redis alone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dam_common.keys import INTAKE_GROUP, WORK_GROUP, Keys

RATE_FIELDS = ("accepted", "rejected_rate", "rejected_intake", "rejected_backlog",
               "dispatched", "completed", "failed", "expired")


async def _group(redis: Redis, stream: str, group: str, now_ms: int) -> dict[str, Any]:
    info: dict[str, Any] = {"pending": 0, "lag": 0, "oldest_pending_age_s": None}
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return info
    for g in groups:
        if g["name"] == group:
            info["pending"] = int(g.get("pending", 0))
            info["lag"] = int(g.get("lag") or 0)
    summary = await redis.xpending(stream, group)
    if summary and summary.get("min"):
        info["oldest_pending_age_s"] = round((now_ms - int(summary["min"].split("-")[0])) / 1000, 1)
    return info


async def collect(redis: Redis, keys: Keys, interval_s: float = 1.0) -> dict[str, Any]:
    """Backlog, groups, workers, credits, DLQ and rates over `interval_s`."""
    before = await redis.hgetall(keys.counters)
    t0 = time.monotonic()
    sec, usec = await redis.time()
    now_ms = sec * 1000 + usec // 1000
    leases: list[tuple[str, float]] = await redis.zrangebyscore(  # type: ignore[assignment]
        keys.worker_leases, now_ms, "+inf", withscores=True)
    capacity: dict[str, str] = await redis.hgetall(  # type: ignore[assignment]
        keys.worker_capacity)
    live = {wid: int(capacity.get(wid, 0)) for wid, _ in leases}
    in_flight = await redis.xlen(keys.work)
    doc: dict[str, Any] = {
        "intake_backlog": await redis.xlen(keys.intake),
        "intake_group": await _group(redis, keys.intake, INTAKE_GROUP, now_ms),
        "work_in_flight": in_flight,
        "work_group": await _group(redis, keys.work, WORK_GROUP, now_ms),
        "live_workers": live,
        "capacity": sum(live.values()),
        "credits": max(0, sum(live.values()) - in_flight),
        "dlq_length": await redis.xlen(keys.dlq),
    }
    await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - t0)))
    after = await redis.hgetall(keys.counters)
    elapsed = max(1e-3, time.monotonic() - t0)
    doc["totals"] = {f: int(after.get(f, 0)) for f in RATE_FIELDS}
    doc["rates_per_s"] = {f: round((int(after.get(f, 0)) - int(before.get(f, 0))) / elapsed, 1)
                          for f in RATE_FIELDS}
    return doc


def render(doc: dict[str, Any]) -> str:
    """The one-screen text form."""
    rates, totals = doc["rates_per_s"], doc["totals"]
    wg, ig = doc["work_group"], doc["intake_group"]
    lines = [
        f"intake backlog     {doc['intake_backlog']:>8}   (lag {ig['lag']})",
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
