"""The worker loop: read within free slots, call the backend, settle each entry exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from dam_common.batching import TickBatcher
from dam_common.codes import FailCode, FailMode
from dam_common.connection import TRANSIENT_REDIS_ERRORS, ensure_groups
from dam_common.entries import ReplyKind, WorkItem, stream_entries
from dam_common.errors import PermanentBackendError, TransientBackendError
from dam_common.keys import WORK_GROUP
from dam_common.probes import Readiness
from dam_common.scripts import LuaScripts
from dam_worker.backend import LLMBackend
from dam_worker.completion import StreamAssembler
from dam_worker.metrics import (
    CAPACITY,
    COMPLETED,
    DEAD_LETTERED,
    INFLIGHT,
    LLM_CALLS,
    LLM_SECONDS,
    QUEUE_WAIT_SECONDS,
    REQUEUED,
    TOKENS_OUT,
)
from dam_worker.reclaim import Reclaimer
from dam_worker.retry_policy import backend_retrying
from dam_worker.settings import WorkerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_BLOCK_MS = 500


class Worker:
    """Owns at most `capacity` entries at a time; everything else waits in Redis."""

    def __init__(self, settings: WorkerSettings, redis: Redis, blocking: Redis,
                 backend: LLMBackend, readiness: Readiness, consumer: str) -> None:
        self._s = self.settings = settings
        self._redis = self.redis = redis
        self._blocking = blocking
        self._backend = backend
        self._readiness = readiness
        self.consumer = consumer
        self.scripts = LuaScripts(redis, settings)
        self._items: dict[str, tuple[WorkItem, asyncio.Task[None]]] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._reclaimer = Reclaimer(self)
        self._settle_batcher = TickBatcher(self.scripts)  # completions of a tick: one pipeline
        CAPACITY.set(settings.worker_capacity)

    # -- slots -----------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        """Slots not taken by an entry."""
        return self._s.worker_capacity - len(self._items)

    @property
    def held_ids(self) -> list[str]:
        """Work entry ids this worker is working on."""
        return list(self._items)

    @property
    def stopping(self) -> bool:
        """True once SIGTERM (or stop()) arrived."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop reading; run() then finishes or hands back what it holds."""
        self._stopping.set()
        self._slot_freed.set()

    def start(self, entry_id: str, fields: dict[str, str]) -> None:
        """Begin work on an entry this worker now owns."""
        item = WorkItem.from_fields(entry_id, fields)
        task = asyncio.create_task(self._handle(item), name=f"work-{entry_id}")
        self._items[entry_id] = (item, task)
        INFLIGHT.set(len(self._items))
        task.add_done_callback(lambda _: self._release(entry_id))

    def _release(self, entry_id: str) -> None:
        self._items.pop(entry_id, None)
        INFLIGHT.set(len(self._items))
        self._slot_freed.set()

    # -- main loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Read and work until stopped, then drain; background loops run alongside."""
        background = [asyncio.create_task(c) for c in (
            self._heartbeat_loop(), self._reclaimer.refresh_loop(), self._reclaimer.reclaim_loop())]
        try:
            await self._read_loop()
        finally:
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.wait(background, timeout=3.0)
            await self._retry_redis(lambda: self.scripts.renew_lease(self.consumer, 0, 0),
                                    attempts=3)

    async def _read_loop(self) -> None:
        backoff = 0.1
        while not self.stopping:
            if self.free_slots <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                await self._prepare()
                resp = await self._blocking.xreadgroup(
                    WORK_GROUP, self.consumer, {self._s.keys.work: ">"},
                    count=self.free_slots, block=READ_BLOCK_MS)
            except TRANSIENT_REDIS_ERRORS as exc:
                self._readiness.mark_down(exc)
                self._readiness.scripts_loaded = False
                await self.pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self._readiness.mark_ok()
            for entry_id, fields in stream_entries(resp):
                self.start(entry_id, fields)

    async def _prepare(self) -> None:
        if not self._readiness.scripts_loaded:
            await self.scripts.load()
            await ensure_groups(self._redis, self._s.keys)
            await self._renew_lease()
            self._readiness.scripts_loaded = True

    async def pause(self, seconds: float) -> None:
        """Sleep, cut short by stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _renew_lease(self) -> None:
        await self.scripts.renew_lease(self.consumer, self._s.worker_capacity,
                                       int(self._s.heartbeat_ttl_s * 1000))

    async def _heartbeat_loop(self) -> None:
        while not self.stopping:
            try:
                await self._renew_lease()
                self._readiness.mark_ok()
            except TRANSIENT_REDIS_ERRORS as exc:
                self._readiness.mark_down(exc)
            await self.pause(self._s.heartbeat_ttl_s / 3)

    async def _drain(self) -> None:
        """Leave the credits at once, finish within the grace period, hand back the rest."""
        await self._retry_redis(lambda: self.scripts.renew_lease(self.consumer, 0, 0), attempts=3)
        pending = [task for _, task in self._items.values()]
        if pending:
            log.info("draining", extra={"inflight": len(pending)})
            await asyncio.wait(pending, timeout=self._s.shutdown_grace_s)
        leftovers = list(self._items.values())
        for _, task in leftovers:
            task.cancel()
        await asyncio.gather(*(t for _, t in leftovers), return_exceptions=True)
        await self._settle_batcher.close()
        for item, _ in leftovers:
            await self._retry_redis(lambda i=item: self.scripts.fail(  # type: ignore[misc]
                i.entry_id, i.rid, i.ingress, FailMode.HANDBACK, "worker shut down",
                self._s.max_deliveries), attempts=5)
        if leftovers:
            log.info("handed back", extra={"entries": len(leftovers)})

    # -- one entry -------------------------------------------------------------------------
    async def _handle(self, item: WorkItem) -> None:
        QUEUE_WAIT_SECONDS.observe(max(0.0, time.time() - item.accepted_ms / 1000))
        started = time.perf_counter()
        try:
            completion = await self._call(item, orjson.loads(item.body))
        except PermanentBackendError as exc:
            LLM_CALLS.labels("permanent_error").inc()
            await self.settle_failure(item, FailMode.BURY, str(exc))
        except TransientBackendError as exc:
            LLM_CALLS.labels("transient_error").inc()
            await self._backend_outcome(ok=False)
            await self.settle_failure(item, FailMode.RETRY, str(exc))
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            await self.settle_failure(item, FailMode.BURY, f"unreadable entry: {exc}")
        else:
            LLM_CALLS.labels("ok").inc()
            await self._backend_outcome(ok=True)
            LLM_SECONDS.observe(time.perf_counter() - started)
            usage = completion.get("usage") or {}
            TOKENS_OUT.inc(int(usage.get("completion_tokens", 0) or 0))
            await self._settle_completion(item, completion, time.perf_counter() - started)

    async def _backend_outcome(self, ok: bool) -> None:
        """Feed the circuit breaker; losing one report to a Redis blip is harmless."""
        if not self._s.circuit_failures:
            return
        try:
            opened = await self.scripts.record_backend_outcome(
                ok, self._s.circuit_failures, int(self._s.circuit_cooldown_s * 1000))
        except TRANSIENT_REDIS_ERRORS:
            return
        if opened:
            log.error("backend circuit opened: the ingress answers 503 for a while",
                      extra={"cooldown_s": self._s.circuit_cooldown_s})

    async def _call(self, item: WorkItem, body: dict[str, Any]) -> dict[str, Any]:
        async for attempt in backend_retrying(self._s.llm_max_attempts,
                                              self._s.llm_backoff_base_s,
                                              self._s.llm_backoff_max_s):
            with attempt:
                if item.stream:
                    return await self._stream_call(item, body)
                return await self._backend.complete(body)
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True

    async def _stream_call(self, item: WorkItem, body: dict[str, Any]) -> dict[str, Any]:
        """Relay chunks to the waiting ingress as they come; retried only before the first."""
        keys, assembler, sent = self._s.keys, StreamAssembler(), 0
        reply = keys.reply(item.ingress)
        # Tags this delivery's chunks: a reclaimed entry keeps its id, so the ingress needs
        # this to tell a peer's restart from the same generation going on.
        delivery = secrets.token_hex(6)
        try:
            async for chunk in self._backend.stream(body):
                await self._redis.xadd(reply, {"rid": item.rid, "kind": ReplyKind.CHUNK.value,
                                               "data": chunk, "delivery": delivery},
                                       maxlen=self._s.reply_maxlen, approximate=True)
                sent += 1
                assembler.add(chunk)
        except TransientBackendError as exc:
            if sent:
                raise PermanentBackendError(
                    f"stream interrupted after {sent} chunks: {exc}") from exc
            raise
        return assembler.completion()

    async def _settle_completion(self, item: WorkItem, completion: dict[str, Any],
                                 llm_s: float) -> None:
        call = self.scripts.complete_call(item.entry_id, item.rid, item.ingress,
                                          orjson.dumps(completion).decode())
        raw = await self._retry_redis(lambda: self._settle_batcher.call(call))
        first = raw is not None and int(raw) == 0
        if first:
            COMPLETED.inc()
        extra: dict[str, Any] = {"rid": item.rid, "client": item.client, "first": first,
                                 "llm_ms": round(llm_s * 1000, 1),
                                 "queue_wait_ms": int(time.time() * 1000) - item.accepted_ms}
        if self._s.log_prompts:
            extra["prompt"] = orjson.loads(item.body).get("messages")
        log.info("completed", extra=extra)

    async def settle_failure(self, item: WorkItem, mode: str, error: str) -> None:
        """Requeue, or dead-letter, an entry whose delivery did not complete."""
        result = await self._retry_redis(lambda: self.scripts.fail(
            item.entry_id, item.rid, item.ingress, mode, error[:2000], self._s.max_deliveries))
        if result is None:
            return
        if result.code is FailCode.DEAD_LETTERED:
            DEAD_LETTERED.inc()
        elif result.code is FailCode.REQUEUED:
            REQUEUED.inc()
        log.warning("delivery failed", extra={"rid": item.rid, "client": item.client, "mode": mode,
                                              "outcome": result.code.name, "error": error[:300]})

    async def _retry_redis(self, op: Callable[[], Awaitable[T]], attempts: int = 0) -> T | None:
        """Run a Redis step until it succeeds (or `attempts` runs out; 0: until stopped+grace).

        A result the worker cannot store stays pending in the work group, so giving up loses
        nothing: another worker reclaims the entry after the visibility timeout.
        """
        backoff, tries = 0.05, 0
        deadline = None
        while True:
            try:
                return await op()
            except TRANSIENT_REDIS_ERRORS as exc:
                self._readiness.mark_down(exc)
                tries += 1
                if attempts and tries >= attempts:
                    return None
                if self.stopping:
                    deadline = deadline or time.monotonic() + self._s.shutdown_grace_s
                    if time.monotonic() > deadline:
                        return None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
