"""`dam dlq list | replay`: inspect the dead-letter stream and requeue from it."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from dam_common.records import REQUEST_ID
from dam_common.scripts import LuaScripts
from dam_common.settings import CommonSettings


async def list_entries(redis: Redis, settings: CommonSettings, count: int) -> list[dict[str, Any]]:
    """The oldest `count` dead letters, without their bodies."""
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
        settings.keys.dlq, count=count)
    return [{"dlq_id": eid, "rid": f.get("rid", ""), "client": f.get("client", ""),
             "deliveries": int(f.get("deliveries", 0)), "last_error": f.get("last_error", "")}
            for eid, f in entries]


async def replay(redis: Redis, settings: CommonSettings, ids: list[str],
                 deadline_s: float) -> tuple[list[tuple[str, str]], list[str]]:
    """Requeue the given dead letters (all if none given); returns (replayed, missing)."""
    bad = [i for i in ids if not REQUEST_ID.match(i)]
    if bad:
        raise ValueError(f"not a stream id: {', '.join(bad)}")
    if not ids:
        everything: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
            settings.keys.dlq)
        ids = [eid for eid, _ in everything]
    scripts = LuaScripts(redis, settings)
    replayed, missing = [], []
    for dlq_id in ids:
        found: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
            settings.keys.dlq, dlq_id, dlq_id)
        if not found:
            missing.append(dlq_id)
            continue
        rid = found[0][1].get("rid", dlq_id)
        deadline_ms = int((time.time() + deadline_s) * 1000)
        new_id = await scripts.replay(dlq_id, rid, deadline_ms)
        if new_id is None:
            missing.append(dlq_id)
        else:
            replayed.append((dlq_id, rid))
    return replayed, missing
