"""Script calls issued in the same event-loop tick go to Redis as one pipeline.

One EVALSHA round trip through redis.asyncio costs ~160 us of client CPU; a pipeline spreads
that over every call of the tick. The ingress batches admissions, the worker completions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dam_common.scripts import LuaScripts, ScriptCall


class TickBatcher:
    """Collects script calls until the loop turns (or `max_batch`), then sends one pipeline."""

    def __init__(self, scripts: LuaScripts, max_batch: int = 512) -> None:
        self._scripts = scripts
        self._max_batch = max_batch
        self._pending: list[tuple[ScriptCall, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, call: ScriptCall) -> Any:
        """Queue one call for this tick's pipeline; its raw reply (or its error) comes back."""
        return await self.submit(call)

    def submit(self, call: ScriptCall) -> asyncio.Future[Any]:
        """Queue one call for this tick's pipeline without waiting: the future of its reply."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((call, fut))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[ScriptCall, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._scripts.call_many([call for call, _ in batch])
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), raw in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(raw, Exception):
                fut.set_exception(raw)
            else:
                fut.set_result(raw)

    async def close(self) -> None:
        """Wait for batches already sent."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
