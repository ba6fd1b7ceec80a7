"""Visibility: keep our own long generations claimed, and take over the dead's entries.

A live worker re-claims (XCLAIM ... JUSTID) what it holds well inside the visibility timeout,
so only a dead or frozen worker's entries ever go idle long enough for XAUTOCLAIM.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dam_common.codes import FailMode
from dam_common.connection import TRANSIENT_REDIS_ERRORS
from dam_common.entries import WorkItem
from dam_common.keys import WORK_GROUP
from dam_worker.metrics import RECLAIMED, VANISHED

if TYPE_CHECKING:
    from dam_worker.worker import Worker

log = logging.getLogger(__name__)


class Reclaimer:
    """The two visibility loops of one worker."""

    def __init__(self, worker: Worker) -> None:
        self._w = worker
        self._s = worker.settings
        self._visibility_ms = int(self._s.visibility_timeout_s * 1000)

    async def refresh_loop(self) -> None:
        """Reset the idle time of entries still being worked on, every third of the timeout."""
        period = max(0.2, self._s.visibility_timeout_s / 3)
        while not self._w.stopping:
            await self._w.pause(period)
            ids = self._w.held_ids
            if not ids:
                continue
            try:
                await self._w.redis.xclaim(self._s.keys.work, WORK_GROUP, self._w.consumer,
                                            min_idle_time=0, message_ids=ids, justid=True)  # type: ignore[arg-type]
            except TRANSIENT_REDIS_ERRORS as exc:
                log.warning("claim refresh failed", extra={"error": str(exc)})

    async def reclaim_loop(self) -> None:
        """Every half timeout, take over idle entries while there are free slots."""
        period = max(0.2, self._s.visibility_timeout_s / 2)
        while not self._w.stopping:
            await self._w.pause(period)
            try:
                await self.reclaim_once()
            except TRANSIENT_REDIS_ERRORS as exc:
                log.warning("reclaim failed", extra={"error": str(exc)})

    async def reclaim_once(self) -> int:
        """Loop XAUTOCLAIM on its cursor until 0-0 or no free slot; returns entries taken."""
        cursor, taken = "0-0", 0
        while self._w.free_slots > 0 and not self._w.stopping:
            step = await self._w.scripts.claim_stale(self._w.consumer, self._visibility_ms,
                                                     cursor, self._w.free_slots)
            if step.vanished:
                VANISHED.inc(step.vanished)
                log.error("pending entries vanished", extra={"count": step.vanished})
            for entry in step.claimed:
                taken += 1
                RECLAIMED.inc()
                await self._take(entry.entry_id, entry.fields, entry.deliveries)
            cursor = step.cursor
            if cursor == "0-0":
                break
        return taken

    async def _take(self, entry_id: str, fields: dict[str, str], deliveries: int) -> None:
        if deliveries > self._s.max_deliveries:
            item = WorkItem.from_fields(entry_id, fields)
            await self._w.settle_failure(
                item, FailMode.BURY,
                f"delivered {deliveries - 1} times without completing (workers died or froze)")
            return
        log.info("reclaimed", extra={"entry": entry_id, "deliveries": deliveries})
        self._w.start(entry_id, fields)
