"""One reader of this ingress's reply stream, handing each message to the request awaiting it.

Waiting clients cost an asyncio.Queue each, not a Redis connection: a single XREAD BLOCK loop
demultiplexes by request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from dam_common.connection import TRANSIENT_REDIS_ERRORS
from dam_common.entries import ReplyKind, stream_entries
from dam_common.probes import Readiness

log = logging.getLogger(__name__)

ORPHAN_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class Reply:
    """One message from a worker or dispatcher about a request."""

    kind: ReplyKind
    data: str
    delivery: str = ""  # which delivery of the request produced a chunk


class ReplyRouter:
    """Routes reply-stream messages to per-request queues."""

    def __init__(self, redis: Redis, stream: str, readiness: Readiness) -> None:
        self._redis = redis
        self._stream = stream
        self._readiness = readiness
        self._waiters: dict[str, asyncio.Queue[Reply]] = {}
        # Messages that arrived before their request subscribed (admit reply still in flight).
        self._orphans: dict[str, tuple[float, list[Reply]]] = {}

    def subscribe(self, rid: str) -> asyncio.Queue[Reply]:
        """A queue receiving every message about `rid`, including any that came early."""
        queue: asyncio.Queue[Reply] = asyncio.Queue()
        _, early = self._orphans.pop(rid, (0.0, []))
        for msg in early:
            queue.put_nowait(msg)
        self._waiters[rid] = queue
        return queue

    def unsubscribe(self, rid: str) -> None:
        """Stop routing messages about `rid`."""
        self._waiters.pop(rid, None)

    @property
    def waiting(self) -> int:
        """Requests currently waiting for an answer."""
        return len(self._waiters)

    async def run(self, stop: asyncio.Event) -> None:
        """Read the reply stream until `stop` is set, riding out Redis outages."""
        last_id, backoff = "0-0", 0.1
        while not stop.is_set():
            try:
                resp = await self._redis.xread({self._stream: last_id}, count=1000, block=1000)
            except TRANSIENT_REDIS_ERRORS as exc:
                self._readiness.mark_down(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            for msg_id, fields in stream_entries(resp):
                last_id = msg_id
                self._route(fields)
            self._purge_orphans()

    def _route(self, fields: dict[str, str]) -> None:
        rid = fields.get("rid", "")
        try:
            reply = Reply(ReplyKind(fields.get("kind", "")), fields.get("data", ""),
                          fields.get("delivery", ""))
        except ValueError:
            log.warning("unknown reply kind", extra={"rid": rid, "kind": fields.get("kind")})
            return
        queue = self._waiters.get(rid)
        if queue is not None:
            queue.put_nowait(reply)
        else:
            self._orphans.setdefault(rid, (time.monotonic(), []))[1].append(reply)

    def _purge_orphans(self) -> None:
        if not self._orphans:
            return
        cutoff = time.monotonic() - ORPHAN_TTL_S
        for rid in [r for r, (t, _) in self._orphans.items() if t < cutoff]:
            del self._orphans[rid]
