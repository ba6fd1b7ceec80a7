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
from dam_worker.abort import listen_for_aborts
from dam_worker.backend import LLMBackend
from dam_worker.completion import StreamAssembler, usage_tokens
from dam_worker.concurrency import AimdLimit
from dam_worker.metrics import (
    ABORTED,
    CAPACITY,
    COMPLETED,
    DEAD_LETTERED,
    INFLIGHT,
    LLM_CALLS,
    LLM_SECONDS,
    QUEUE_WAIT_SECONDS,
    REQUEUED,
    TOKENS_OUT,
    TOKENS_SETTLED,
)
from dam_worker.reclaim import Reclaimer
from dam_worker.retry_policy import backend_retrying
from dam_worker.settings import WorkerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_BLOCK_MS = 500
# Backend answers that mean "too much": the adaptive limit backs off. None is a connection
# error or a timeout.
OVERLOAD_STATUSES = frozenset({429, 503, None})


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
        floor = settings.worker_min_capacity if settings.adaptive_capacity else \
            settings.worker_capacity
        self.limit = AimdLimit(floor, settings.worker_capacity,
                               settings.backend_latency_target_s)
        self._lease_changed = asyncio.Event()
        self._aborted: set[str] = set()
        self._success_in_flight = False
        self._success_call = self.scripts.backend_outcome_call(
            True, settings.circuit_failures, int(settings.circuit_cooldown_s * 1000))
        CAPACITY.set(self.limit.current)

    # -- slots -----------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        """Slots of the current adaptive limit not taken by an entry."""
        return self.limit.current - len(self._items)

    def _limit_changed(self) -> None:
        """Advertise the new capacity at once: the dispatcher's credits follow it."""
        CAPACITY.set(self.limit.current)
        log.info("capacity changed", extra={"capacity": self.limit.current})
        self._lease_changed.set()
        self._slot_freed.set()

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
            self._heartbeat_loop(), self._reclaimer.refresh_loop(), self._reclaimer.reclaim_loop(),
            listen_for_aborts(self._blocking, self._s.keys.abort_channel, self.abort,
                              self._stopping))]
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
        """Slots = the adaptive limit; tokens scaled down with it."""
        s, current = self._s, self.limit.current
        tokens = s.worker_token_capacity * current // s.worker_capacity
        await self.scripts.renew_lease(self.consumer, current, int(s.heartbeat_ttl_s * 1000),
                                       token_capacity=tokens)

    async def _heartbeat_loop(self) -> None:
        while not self.stopping:
            try:
                self._lease_changed.clear()
                await self._renew_lease()
                self._readiness.mark_ok()
            except TRANSIENT_REDIS_ERRORS as exc:
                self._readiness.mark_down(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_changed.wait(), self._s.heartbeat_ttl_s / 3)

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

    def abort(self, rid: str) -> None:
        """The client of `rid` went away during its generation: stop the backend call."""
        for item, task in list(self._items.values()):
            if item.rid == rid and not task.done():
                self._aborted.add(item.entry_id)
                task.cancel()

    # -- one entry -------------------------------------------------------------------------
    async def _handle(self, item: WorkItem) -> None:
        QUEUE_WAIT_SECONDS.observe(max(0.0, time.time() - item.accepted_ms / 1000))
        started = time.perf_counter()
        try:
            completion = await self._call(item, orjson.loads(item.body))
        except asyncio.CancelledError:
            if item.entry_id not in self._aborted:
                raise  # shutting down: _drain hands the entry back
            self._aborted.discard(item.entry_id)
            ABORTED.inc()
            await self.settle_failure(item, FailMode.CANCEL, "the client went away during "
                                      "generation; the backend call was aborted")
            await self._refund(item, item.reserved_tokens)
        except PermanentBackendError as exc:
            LLM_CALLS.labels("permanent_error").inc()
            await self.settle_failure(item, FailMode.BURY, str(exc))
        except TransientBackendError as exc:
            LLM_CALLS.labels("transient_error").inc()
            await self._report_failure()
            await self.settle_failure(item, FailMode.RETRY, str(exc))
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            await self.settle_failure(item, FailMode.BURY, f"unreadable entry: {exc}")
        else:
            LLM_CALLS.labels("ok").inc()
            self._report_success()
            LLM_SECONDS.observe(time.perf_counter() - started)
            usage = completion.get("usage") or {}
            TOKENS_OUT.inc(int(usage.get("completion_tokens", 0) or 0))
            await self._settle_completion(item, completion, time.perf_counter() - started)

    def _report_success(self) -> None:
        """Tell the circuit breaker the backend answered, without a round trip of its own.

        The report rides the tick's settle pipeline (every completion used to cost a round
        trip of its own here), and while one is on its way the next successes are not sent:
        all a success does is zero the failure count. At worst a failure another worker
        counts in that millisecond stays counted, and losing a report to a Redis blip is
        harmless.
        """
        if not self._s.circuit_failures or self._success_in_flight:
            return
        self._success_in_flight = True
        self._settle_batcher.submit(self._success_call).add_done_callback(self._success_sent)

    def _success_sent(self, fut: asyncio.Future[Any]) -> None:
        self._success_in_flight = False
        if not fut.cancelled():
            fut.exception()  # retrieved, so that a Redis blip is not logged as unhandled

    async def _report_failure(self) -> None:
        """Count a transient backend failure towards opening the circuit."""
        if not self._s.circuit_failures:
            return
        try:
            opened = await self.scripts.record_backend_outcome(
                False, self._s.circuit_failures, int(self._s.circuit_cooldown_s * 1000))
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
                return await self._attempt(item, body)
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True

    async def _attempt(self, item: WorkItem, body: dict[str, Any]) -> dict[str, Any]:
        """One backend call; its outcome feeds the adaptive limit."""
        started = time.monotonic()
        try:
            if item.stream:
                result = await self._stream_call(item, body)
            else:
                result = await self._backend.complete(body)
        except TransientBackendError as exc:
            if exc.status in OVERLOAD_STATUSES and self.limit.observe_overload(time.monotonic()):
                self._limit_changed()
            raise
        now = time.monotonic()
        if self.limit.observe_success(now - started, now):
            self._limit_changed()
        return result

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
            used = usage_tokens(completion)
            if used is not None:
                await self._refund(item, item.reserved_tokens - used)
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
            await self._refund(item, item.reserved_tokens)
        elif result.code is FailCode.REQUEUED:
            REQUEUED.inc()
        log.warning("delivery failed", extra={"rid": item.rid, "client": item.client, "mode": mode,
                                              "outcome": result.code.name, "error": error[:300]})

    async def _refund(self, item: WorkItem, delta: int) -> None:
        """Settle the tenant's token budget: reserved minus used (a refund, or a charge)."""
        if not item.tokens_per_minute or not item.tenant or not delta:
            return
        call = self.scripts.adjust_tokens_call(item.tenant, delta, item.tokens_per_minute)
        if await self._retry_redis(lambda: self._settle_batcher.call(call), attempts=3) is not None:
            TOKENS_SETTLED.labels("refund" if delta > 0 else "charge").inc(abs(delta))

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
