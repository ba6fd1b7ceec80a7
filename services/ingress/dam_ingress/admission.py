"""Admission on the hot path: a local deny cache, and one Redis pipeline per event-loop tick.

Admissions issued in the same loop tick go to Redis as one pipeline (dam_common.batching).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from dam_common.batching import TickBatcher
from dam_common.codes import AdmitCode, AdmitResult, parse_admit
from dam_common.scripts import AdmitParams, LuaScripts


@dataclass(frozen=True, slots=True)
class Denial:
    """A cached rejection: until when it holds (monotonic s), the bucket's reset time, and
    what the answer needs (its code, and the backlog and drain rate of a full one). A probing
    denial is one whose hold ran out: one caller went on to Redis, the others wait for it."""

    until: float
    reset_at: float
    code: AdmitCode = AdmitCode.RATE_LIMITED
    backlog: int = 0
    drain_per_s: int = 0
    probing: bool = False


GLOBAL_SCOPE = "*"


def tenant_scope(tenant: str) -> str:
    """Deny-cache key of a tenant whose own backlog is full (identities never start so)."""
    return f"tenant {tenant}"


class DenyCache:
    """Answers a request known to be refused without a Redis round trip: a client over its
    rate (429), a tenant whose backlog is full, or a full global backlog (503).

    Holding a denial only for the bucket's own retry time (about 10 ms at 100/s) barely saves
    any call; holding it for at least `hold_ms` (default 100 ms) cuts Redis calls several-fold
    under a flood, at the price of denying a client at most `hold_ms` longer than its bucket
    (or a full backlog) alone would. 0 turns the cache off.

    When a hold runs out, one caller asks Redis (the probe) and the others are still refused
    until its answer, for at most `probe_ms`: letting them all through at once sent a whole
    flood's worth of requests down the slow path each time a hold ended (at 5,000/s over 200
    connections, 200 answers of 20-50 ms every second). The probe's rejection is remembered
    as usual; its admission (`admitted`) lifts the denial.
    """

    def __init__(self, hold_ms: float, max_entries: int = 100_000,
                 probe_ms: float = 50) -> None:
        self._hold = hold_ms / 1000
        self._probe = probe_ms / 1000
        self._max = max_entries
        self._denials: dict[str, Denial] = {}

    def check(self, identity: str, now: float, probe: bool = True) -> AdmitResult | None:
        """A 429 result if `identity` is held as denied at `now` (monotonic seconds); None
        lets the caller ask Redis, as the probe if the hold has just run out. `probe=False`
        only looks (the fast deny path, which hands such a request to the handler)."""
        denial = self._denials.get(identity)
        if denial is None:
            return None
        if now >= denial.until:
            if probe:
                self._denials[identity] = Denial(now + self._probe, denial.reset_at,
                                                 denial.code, denial.backlog,
                                                 denial.drain_per_s, probing=True)
            return None
        left_ms = int((denial.until - now) * 1000) + 1
        reset_ms = max(left_ms, int((denial.reset_at - now) * 1000))
        return AdmitResult(denial.code, retry_ms=left_ms, reset_ms=reset_ms,
                           backlog=denial.backlog, drain_per_s=denial.drain_per_s)

    def remember(self, identity: str, result: AdmitResult, now: float,
                 exact: bool = False) -> None:
        """Hold a fresh rejection for max(its retry time, hold_ms), or (`exact`) for its
        retry time alone: a denial foreseen, not yet met, must not outlast the bucket's."""
        if self._hold <= 0:
            return
        if len(self._denials) >= self._max:
            self._evict(now)
        hold = result.retry_ms / 1000 if exact else max(result.retry_ms / 1000, self._hold)
        self._denials[identity] = Denial(now + hold, now + result.reset_ms / 1000, result.code,
                                         result.backlog, result.drain_per_s)

    def admitted(self, *scopes: str) -> None:
        """An admission went through: the probing denials of its scopes are lifted."""
        for scope in scopes:
            denial = self._denials.get(scope)
            if denial is not None and denial.probing:
                del self._denials[scope]

    def _evict(self, now: float) -> None:
        expired = [k for k, d in self._denials.items() if d.until <= now]
        for k in expired:
            del self._denials[k]
        if len(self._denials) >= self._max:
            self._denials.clear()

    def clear(self) -> None:
        """Forget every denial (the limits changed)."""
        self._denials.clear()

    def __len__(self) -> int:
        return len(self._denials)


class AdmissionBatcher:
    """Admissions of one loop tick, sent as one pipeline (see dam_common.batching)."""

    def __init__(self, scripts: LuaScripts, max_batch: int = 512) -> None:
        self._scripts = scripts
        self._batcher = TickBatcher(scripts, max_batch)

    async def admit(self, identity: str, params: AdmitParams, fields: Mapping[str, str],
                    idempotency_digest: str = "") -> AdmitResult:
        """Queue one admission for this tick's pipeline and wait for its result."""
        call = self._scripts.admit_call(identity, params, fields,
                                        idempotency_digest=idempotency_digest)
        return parse_admit(await self._batcher.call(call))

    async def close(self) -> None:
        """Wait for batches already sent."""
        await self._batcher.close()


def monotonic() -> float:
    """The clock of the deny cache (a parameter in tests)."""
    return time.monotonic()
