"""One typed facade over the Lua scripts: loaded once, called by SHA, reloaded on NOSCRIPT.

Services never build EVAL strings; they call a method per script and get a typed result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from dam_common.codes import (
    AdmitResult,
    CancelOutcome,
    ClaimResult,
    DispatchResult,
    FailResult,
    QueuePosition,
    parse_admit,
    parse_claim,
    parse_dispatch,
    parse_fail,
    parse_position,
)
from dam_common.keys import WORK_GROUP, Keys
from dam_common.settings import CommonSettings

SCRIPT_NAMES = (
    "admit_request",
    "dispatch_entries",
    "complete_request",
    "fail_entry",
    "claim_stale",
    "replay_dead_letter",
    "renew_lease",
    "record_backend_outcome",
    "cancel_request",
    "queue_position",
    "adjust_token_budget",
)

PRIORITY_LEVELS = 3
"""Priorities 0 (default) .. 2 (first); each tenant has one queue per level."""


def _read_sources() -> dict[str, str]:
    lua = resources.files("dam_common") / "lua"
    return {name: (lua / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES}


_SOURCES = _read_sources()
_SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in _SOURCES.items()}


@dataclass(frozen=True, slots=True)
class AdmitParams:
    """Bucket, cap and deadline parameters of one admission decision."""

    rate: float
    burst: int
    intake_rate: float
    intake_burst: int
    backlog_cap: int
    stream_maxlen: int
    deadline_ms: int
    idempotency_ttl_ms: int = 0
    enforce: bool = True  # False: shadow mode, over-rate requests are counted and let through
    tenant: str = "default"
    weight: float = 1.0
    tenant_backlog_cap: int = 0  # 0: the global cap alone
    priority: int = 0
    max_priority: int = 0  # the tier's highest: the tenant's backlog is counted up to it
    tokens_per_minute: int = 0  # 0: no token budget
    token_cost: int = 0  # tokens reserved: estimated prompt + max_tokens
    enforce_tokens: bool = True


ScriptCall = tuple[str, Sequence[str | bytes], Sequence[str | int | float | bytes]]


def _now(now_ms: int | None) -> str | int:
    return "" if now_ms is None else now_ms


@lru_cache(maxsize=65536)
def _encoded(key: str) -> bytes:
    """A key as the bytes redis-py would send (the hot ones are few and repeat)."""
    return key.encode()


def _packed_limits(base: str, p: AdmitParams) -> bytes:
    """ARGV[2] of admit_request.lua: the limits of a client, \\x1f-separated."""
    return _pack((p.rate, p.burst, p.intake_rate, p.intake_burst, p.backlog_cap,
                  p.stream_maxlen, p.deadline_ms, "1" if p.enforce else "0", p.tenant, p.weight,
                  p.tenant_backlog_cap, f"{base}queue:{p.tenant}:", p.max_priority,
                  p.tokens_per_minute, "1" if p.enforce_tokens else "0"))


@lru_cache(maxsize=4096)
def _pack(values: tuple[str | int | float, ...]) -> bytes:
    return "\x1f".join(str(v) for v in values).encode()


class LuaScripts:
    """The scripts of one pipeline, bound to one Redis client."""

    def __init__(self, redis: Redis, settings: CommonSettings) -> None:
        self._redis = redis
        self._s = settings
        self._k = k = settings.keys
        self._admit_keys_a = tuple(x.encode() for x in (k.intake_bucket, k.intake,
                                                        k.drain_window, k.counters))
        self._admit_keys_b = (k.sched_tenants.encode(), k.sched_ring.encode())
        self._circuit = k.circuit.encode()
        self._no_idempotency = k.idempotency("-", "-").encode()

    @property
    def keys(self) -> Keys:
        """The key builder of the pipeline these scripts serve."""
        return self._k

    async def load(self) -> None:
        """SCRIPT LOAD every script (idempotent); readiness waits for it."""
        for name, src in _SOURCES.items():
            sha = await self._redis.script_load(src)
            if sha != _SHAS[name]:  # pragma: no cover - would mean a broken server
                raise RuntimeError(f"server hashed {name}.lua differently")

    async def call(self, name: str, keys: Sequence[str | bytes], args: Sequence[Any]) -> Any:
        """EVALSHA one script, loading the scripts once if the server has forgotten them."""
        try:
            return await self._redis.evalsha(_SHAS[name], len(keys), *keys, *args)
        except NoScriptError:
            await self.load()
            return await self._redis.evalsha(_SHAS[name], len(keys), *keys, *args)

    async def call_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Send many script calls in one pipeline (one round trip); errors come back in place."""
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.evalsha(_SHAS[name], len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                await self.load()
                continue
            return results
        raise AssertionError("unreachable")  # pragma: no cover

    # -- admission -------------------------------------------------------------------------
    def admit_call(self, identity: str, params: AdmitParams, fields: Mapping[str, str],
                   now_ms: int | None = None, idempotency_digest: str = "") -> ScriptCall:
        """The admission call for one request, to be sent alone or in a batch.

        This runs for every admitted request, and redis-py spends more time encoding
        arguments than anything else here: the client's limits go as one packed argument
        (encoded once per distinct set of limits) and the keys as cached bytes.
        """
        k = self._k
        tenant = params.tenant
        if idempotency_digest:
            idem_key: str | bytes = k.idempotency(identity, idempotency_digest)
            idem_ttl = params.idempotency_ttl_ms
        else:
            idem_key, idem_ttl = self._no_idempotency, 0
        keys = (_encoded(k.client_bucket(identity)), *self._admit_keys_a, idem_key,
                self._circuit, _encoded(k.tenant_queue(tenant, params.priority)),
                *self._admit_keys_b, _encoded(k.token_bucket(tenant)))
        args: list[str | int | float | bytes] = [
            _now(now_ms), _packed_limits(k.base, params), params.priority, params.token_cost,
            idem_ttl]
        for name, value in fields.items():
            args += (name, value)
        return ("admit_request", keys, args)

    async def admit(self, identity: str, params: AdmitParams, fields: Mapping[str, str],
                    now_ms: int | None = None, idempotency_digest: str = "") -> AdmitResult:
        """Admit one request: buckets, backlog cap and XADD in one atomic call."""
        name, keys, args = self.admit_call(identity, params, fields, now_ms, idempotency_digest)
        return parse_admit(await self.call(name, keys, args))

    # -- dispatch --------------------------------------------------------------------------
    async def dispatch(self, max_batch: int, rate: float, burst: int,
                       now_ms: int | None = None, jitter_ms: int = 0) -> DispatchResult:
        """Move up to `credits` entries from intake to work (or expire them)."""
        k, s = self._k, self._s
        keys = (k.intake, k.work, k.worker_leases, k.worker_capacity, k.dispatch_bucket,
                k.drain_window, k.inflight, k.counters, k.dispatch_log, k.sched_ring,
                k.sched_tenants, k.sched_deficit, k.sched_turn, k.worker_token_capacity,
                k.inflight_cost)
        args = (_now(now_ms), max_batch, rate, burst, k.base,
                s.result_ttl_ms, s.reply_maxlen, s.reply_ttl_ms, PRIORITY_LEVELS, jitter_ms)
        return parse_dispatch(await self.call("dispatch_entries", keys, args))

    # -- completion and failure -------------------------------------------------------------
    def complete_call(self, entry_id: str, rid: str, ingress_id: str, completion: str,
                      now_ms: int | None = None) -> ScriptCall:
        """The completion call of one entry, to be sent alone or in a batch."""
        k, s = self._k, self._s
        keys = (k.work, k.request(rid), k.reply(ingress_id), k.inflight, k.counters,
                k.inflight_cost)
        args = (_now(now_ms), WORK_GROUP, entry_id, rid, completion, s.result_ttl_ms,
                s.reply_maxlen, s.reply_ttl_ms)
        return ("complete_request", keys, args)

    async def complete(self, entry_id: str, rid: str, ingress_id: str, completion: str,
                       now_ms: int | None = None) -> bool:
        """Store the result, XACK the work entry, wake the ingress. False if already terminal."""
        name, keys, args = self.complete_call(entry_id, rid, ingress_id, completion, now_ms)
        return int(await self.call(name, keys, args)) == 0

    async def fail(self, entry_id: str, rid: str, ingress_id: str, mode: str, error: str,
                   max_deliveries: int, now_ms: int | None = None) -> FailResult:
        """Requeue, hand back or dead-letter a delivery that did not complete."""
        k, s = self._k, self._s
        keys = (k.work, k.dlq, k.request(rid), k.reply(ingress_id), k.inflight, k.counters,
                k.inflight_cost)
        args = (_now(now_ms), WORK_GROUP, entry_id, mode, error, max_deliveries,
                s.result_ttl_ms, s.reply_maxlen, s.reply_ttl_ms, s.dlq_maxlen)
        return parse_fail(await self.call("fail_entry", keys, args))

    async def claim_stale(self, consumer: str, min_idle_ms: int, cursor: str, count: int,
                          now_ms: int | None = None) -> ClaimResult:
        """One XAUTOCLAIM step over entries idle longer than `min_idle_ms`."""
        k, s = self._k, self._s
        keys = (k.work, k.inflight, k.counters, k.inflight_cost)
        args = (_now(now_ms), WORK_GROUP, consumer, min_idle_ms, cursor, count, k.base,
                s.result_ttl_ms, s.reply_maxlen, s.reply_ttl_ms)
        return parse_claim(await self.call("claim_stale", keys, args))

    async def replay(self, dlq_id: str, rid: str, deadline_ms: int,
                     now_ms: int | None = None) -> str | None:
        """Move a dead-lettered entry back to intake; returns the new intake id or None."""
        k, s = self._k, self._s
        keys = (k.dlq, k.intake, k.request(rid), k.sched_tenants, k.sched_ring)
        args = (_now(now_ms), dlq_id, deadline_ms, s.result_ttl_ms, k.base)
        raw = await self.call("replay_dead_letter", keys, args)
        return str(raw[1]) if int(raw[0]) == 0 else None

    # -- worker leases ---------------------------------------------------------------------
    async def renew_lease(self, worker_id: str, capacity: int, ttl_ms: int,
                          now_ms: int | None = None, token_capacity: int = 0) -> int:
        """Heartbeat: keep `capacity` slots (and `token_capacity` tokens, if > 0) counted for
        `ttl_ms`; capacity 0 removes the lease."""
        k = self._k
        keys = (k.worker_leases, k.worker_capacity, k.worker_token_capacity)
        return int(await self.call("renew_lease", keys, (_now(now_ms), worker_id, capacity,
                                                         ttl_ms, token_capacity)))

    # -- backend circuit -------------------------------------------------------------------
    def backend_outcome_call(self, ok: bool, threshold: int, cooldown_ms: int) -> ScriptCall:
        """The circuit breaker's report of one backend outcome, to be sent alone or in a batch."""
        k = self._k
        return ("record_backend_outcome", (k.backend_failures, k.circuit),
                ("ok" if ok else "fail", threshold, cooldown_ms))

    async def record_backend_outcome(self, ok: bool, threshold: int, cooldown_ms: int) -> bool:
        """Close the circuit on a success; count a failure. True if this opened it."""
        return int(await self.call(*self.backend_outcome_call(ok, threshold, cooldown_ms))) == 1

    async def cancel(self, rid: str, tenant: str, priority: int,
                     now_ms: int | None = None) -> CancelOutcome:
        """The client left: a queued request ends `cancelled`, a running one is aborted."""
        k = self._k
        keys = (k.intake, k.request(rid), k.counters, k.tenant_queue(tenant, priority))
        args = (_now(now_ms), rid, self._s.result_ttl_ms, k.abort_channel)
        return CancelOutcome(int(await self.call("cancel_request", keys, args)))

    async def position(self, rid: str, now_ms: int | None = None) -> QueuePosition | None:
        """Where a queued request stands under the fair schedule; None once it left the queue."""
        k = self._k
        raw = await self.call("queue_position", (k.intake, k.sched_tenants, k.drain_window),
                              (_now(now_ms), rid, k.base, PRIORITY_LEVELS))
        return parse_position(raw)

    def adjust_tokens_call(self, tenant: str, delta: int, tokens_per_minute: int,
                           now_ms: int | None = None) -> ScriptCall:
        """Refund (delta > 0) or charge (delta < 0) a tenant's token budget after the fact."""
        args = (_now(now_ms), delta, tokens_per_minute)
        return ("adjust_token_budget", (self._k.token_bucket(tenant),), args)
