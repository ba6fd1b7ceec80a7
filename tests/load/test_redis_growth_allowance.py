"""The flood report's Redis memory check allows for what the dam was asked to keep during the
run, and nothing else: counted against a real server."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from dam_common.keys import Keys
from dam_load.runner import records_since

SINCE_MS = 1_000_000


async def test_only_state_written_after_the_mark_is_allowed_for(redis: Redis,
                                                                 redis_url: str) -> None:
    prefix = f"g{uuid.uuid4().hex[:8]}:"
    keys = Keys(prefix=prefix)
    result = "x" * 4000
    await redis.hset(keys.request(f"{SINCE_MS - 5}-0"), mapping={"status": "queued"})
    await redis.hset(keys.request(f"{SINCE_MS - 3}-0"),  # dispatched since: no result yet
                     mapping={"status": "running", "updated_ms": SINCE_MS + 40})
    await redis.hset(keys.request(f"{SINCE_MS - 4}-0"),
                     mapping={"status": "completed", "result": result,
                              "updated_ms": SINCE_MS + 50})
    await redis.hset(keys.request(f"{SINCE_MS + 7}-0"),
                     mapping={"status": "completed", "result": result,
                              "updated_ms": SINCE_MS + 60})
    reply = keys.reply("ingress-a")
    for ms in (SINCE_MS - 2, SINCE_MS + 1, SINCE_MS + 2):
        await redis.xadd(reply, {"rid": "r", "data": result}, id=f"{ms}-0")

    grown = await records_since(redis_url, SINCE_MS, prefix=prefix)

    assert (grown["count"], grown["completed"], grown["replies"]) == (1, 1, 2)
    # one whole record, one result, two of the three reply entries: about 4 x 4,000 bytes
    assert 4 * 4000 <= grown["mb"] * 2**20 <= 6 * 4000 + 2048


async def test_a_store_untouched_since_the_mark_is_allowed_nothing(redis: Redis,
                                                                   redis_url: str) -> None:
    prefix = f"g{uuid.uuid4().hex[:8]}:"
    keys = Keys(prefix=prefix)
    await redis.hset(keys.request(f"{SINCE_MS - 5}-0"),
                     mapping={"status": "completed", "result": "done", "updated_ms": SINCE_MS})
    await redis.xadd(keys.reply("ingress-a"), {"rid": "r"}, id=f"{SINCE_MS}-0")

    grown = await records_since(redis_url, SINCE_MS, prefix=prefix)

    assert grown == {"count": 0, "completed": 0, "replies": 0, "mb": 0.0}
