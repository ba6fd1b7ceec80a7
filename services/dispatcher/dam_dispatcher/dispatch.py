"""The dispatch loop: call dispatch_entries.lua, then wait the right amount for the next call."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from dam_common.codes import DispatchCode, DispatchResult
from dam_common.connection import TRANSIENT_REDIS_ERRORS, ensure_groups
from dam_common.probes import Readiness
from dam_common.scripts import LuaScripts
from dam_common.snapshot import take_snapshot
from dam_dispatcher.metrics import (
    BACKLOG,
    CREDITS,
    DISPATCHED,
    EXPIRED,
    NO_CREDITS,
    RATE_LIMITED,
    record_snapshot,
)
from dam_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)

EMPTY_BLOCK_MS = 1000


class Dispatcher:
    """Moves work while there are credits and rate; sleeps on Redis, not in a busy loop."""

    def __init__(self, settings: DispatcherSettings, redis: Redis, blocking: Redis,
                 readiness: Readiness) -> None:
        self._s = settings
        self._redis = redis
        self._blocking = blocking
        self._scripts = LuaScripts(redis, settings)
        self._readiness = readiness
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Finish the current call and return from run()."""
        self._stop.set()

    async def run(self) -> None:
        """Dispatch until stopped, riding out Redis outages with backoff."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                await self._prepare()
                result = await self._scripts.dispatch(
                    self._s.dispatch_batch, self._s.dispatch_rate, self._s.dispatch_burst,
                    jitter_ms=self._s.dispatch_jitter_ms)
                self._readiness.mark_ok()
                backoff = 0.1
                await self._after(result)
            except TRANSIENT_REDIS_ERRORS as exc:
                self._readiness.mark_down(exc)
                log.warning("redis unavailable", extra={"error": str(exc), "retry_s": backoff})
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._readiness.scripts_loaded = False

    async def _prepare(self) -> None:
        if not self._readiness.scripts_loaded:
            await self._scripts.load()
            await ensure_groups(self._redis, self._s.keys)
            self._readiness.scripts_loaded = True

    async def _after(self, result: DispatchResult) -> None:
        """Record what happened and wait as long as the outcome says."""
        CREDITS.set(result.credits_left)
        if result.code is DispatchCode.MOVED:
            DISPATCHED.inc(result.dispatched)
            EXPIRED.inc(result.expired)
        elif result.code is DispatchCode.RATE_LIMITED:
            RATE_LIMITED.inc()
            await self._sleep(result.wait_ms / 1000)
        elif result.code is DispatchCode.NO_CREDITS:
            NO_CREDITS.inc()
            await self._sleep(self._s.idle_poll_ms / 1000)
        else:
            await self._wait_for_intake()

    async def _wait_for_intake(self) -> None:
        """Block until the intake stream has an entry (every entry in it is undispatched)."""
        BACKLOG.set(0)
        await self._blocking.xread({self._s.keys.intake: "0-0"}, count=1, block=EMPTY_BLOCK_MS)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def sample_pipeline(self) -> None:
        """Refresh the pipeline gauges every second (a few O(1) reads)."""
        while not self._stop.is_set():
            with contextlib.suppress(*TRANSIENT_REDIS_ERRORS):
                record_snapshot(await take_snapshot(self._redis, self._s.keys))
            await self._sleep(1.0)
