"""Reading a request's state: its record once dispatched, its intake entry while queued."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from dam_common.keys import Keys

REQUEST_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
POSITION_SCAN_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class RequestView:
    """What GET /v1/requests/{id} reports."""

    rid: str
    status: str
    position: int | None = None
    result: Any = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The response body."""
        doc: dict[str, Any] = {"id": self.rid, "object": "dam.request", "status": self.status}
        if self.position is not None:
            doc["position"] = self.position
        if self.result is not None:
            doc["completion"] = self.result
        if self.error is not None:
            doc["error"] = {"message": self.error, "type": "dam_error", "code": self.status}
        return doc


async def read_request(redis: Redis, keys: Keys, rid: str) -> RequestView | None:
    """The state of `rid`, or None if it is unknown (never admitted, or its record expired)."""
    # One MULTI/EXEC: a dispatch between two separate reads would move the request out of
    # intake before its record exists, and it would look unknown.
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(keys.request(rid))
    pipe.xrange(keys.intake, rid, rid)
    record, queued = await pipe.execute()
    if record:
        status = record.get("status", "unknown")
        result = orjson.loads(record["result"]) if "result" in record else None
        position = await queue_position(redis, keys, rid) if status == "queued" else None
        return RequestView(rid, status, position, result, record.get("error"))
    if queued:
        return RequestView(rid, "queued", await queue_position(redis, keys, rid))
    return None


async def queue_position(redis: Redis, keys: Keys, rid: str) -> int:
    """Entries waiting ahead of `rid` in the intake stream (FIFO order)."""
    ahead = await redis.xrange(keys.intake, "-", f"({rid}", count=POSITION_SCAN_LIMIT)
    return len(ahead or ())
