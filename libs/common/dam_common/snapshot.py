"""A point-in-time reading of a pipeline from Redis: `dam status` and the dispatcher's gauges."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dam_common.keys import WORK_GROUP, Keys


@dataclass(frozen=True, slots=True)
class GroupState:
    """A consumer group: entries delivered and not acknowledged, entries not yet delivered."""

    pending: int = 0
    lag: int = 0
    oldest_pending_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Backlog (and the tenants it belongs to), work in flight, its group, live workers and
    credits, dead letters.

    Intake has no consumer group: the dispatcher picks entries by tenant (fair order), so
    everything in the intake stream is undelivered and its length is the consumer lag.
    """

    intake_backlog: int
    active_tenants: int
    work_in_flight: int
    work_group: GroupState
    live_workers: dict[str, int] = field(default_factory=dict)
    dlq_length: int = 0

    @property
    def capacity(self) -> int:
        """Slots of the workers whose lease is current."""
        return sum(self.live_workers.values())

    @property
    def credits(self) -> int:
        """Free slots: derived exactly as dispatch_entries.lua derives them."""
        return max(0, self.capacity - self.work_in_flight)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form."""
        doc = asdict(self)
        doc["capacity"], doc["credits"] = self.capacity, self.credits
        return doc


async def _group(redis: Redis, stream: str, group: str, now_ms: int) -> GroupState:
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # the stream does not exist yet
        return GroupState()
    pending = lag = 0
    for g in groups:
        if g["name"] == group:
            pending, lag = int(g.get("pending", 0)), int(g.get("lag") or 0)
    summary = await redis.xpending(stream, group)
    oldest = None
    if summary and summary.get("min"):
        oldest = round((now_ms - int(summary["min"].split("-")[0])) / 1000, 3)
    return GroupState(pending, lag, oldest)


async def take_snapshot(redis: Redis, keys: Keys) -> Snapshot:
    """Read the pipeline's state (a handful of O(1) or O(groups) commands)."""
    sec, usec = await redis.time()
    now_ms = sec * 1000 + usec // 1000
    leases: list[tuple[str, float]] = await redis.zrangebyscore(  # type: ignore[assignment]
        keys.worker_leases, now_ms, "+inf", withscores=True)
    capacity: dict[str, str] = await redis.hgetall(  # type: ignore[assignment]
        keys.worker_capacity)
    return Snapshot(
        intake_backlog=await redis.xlen(keys.intake),
        active_tenants=await redis.llen(keys.sched_ring),
        work_in_flight=await redis.xlen(keys.work),
        work_group=await _group(redis, keys.work, WORK_GROUP, now_ms),
        live_workers={wid: int(capacity.get(wid, 0)) for wid, _ in leases},
        dlq_length=await redis.xlen(keys.dlq),
    )
