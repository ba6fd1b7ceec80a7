"""Reading a request's state: its record once dispatched, its intake entry while queued."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from dam_common.scripts import LuaScripts

REQUEST_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@dataclass(frozen=True, slots=True)
class RequestView:
    """What GET /v1/requests/{id} reports."""

    rid: str
    status: str
    position: int | None = None
    result: Any = None
    error: str | None = None
    eta_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The response body."""
        doc: dict[str, Any] = {"id": self.rid, "object": "dam.request", "status": self.status}
        if self.position is not None:
            doc["position"] = self.position
            doc["eta_s"] = self.eta_s
        if self.result is not None:
            doc["completion"] = self.result
        if self.error is not None:
            doc["error"] = {"message": self.error, "type": "dam_error", "code": self.status}
        return doc


async def read_request(redis: Redis, scripts: LuaScripts, rid: str) -> RequestView | None:
    """The state of `rid`, or None if it is unknown (never admitted, or its record expired)."""
    # One MULTI/EXEC: a dispatch between two separate reads would move the request out of
    # intake before its record exists, and it would look unknown.
    keys = scripts.keys
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(keys.request(rid))
    pipe.xrange(keys.intake, rid, rid)
    record, queued = await pipe.execute()
    status = record.get("status", "unknown") if record else ("queued" if queued else None)
    if status is None:
        return None
    position = await scripts.position(rid) if status == "queued" else None
    if status == "queued" and position is None and not record:
        # Dispatched between the two reads: it is running now.
        status = "running"
    result = orjson.loads(record["result"]) if record and "result" in record else None
    return RequestView(rid, status, position.position if position else None, result,
                       record.get("error") if record else None,
                       position.eta_s if position else None)
