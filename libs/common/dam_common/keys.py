"""The one place Redis key names come from.

Every key of a pipeline carries the same hash tag (``{pipeline}``) so that each Lua script
touches a single slot and runs unchanged on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

WORK_GROUP = "workers"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one pipeline, e.g. ``dam:{main}:intake``."""

    prefix: str = "dam:"
    pipeline: str = "main"

    @property
    def base(self) -> str:
        """Prefix of every key of this pipeline; scripts build per-request keys from it."""
        return f"{self.prefix}{{{self.pipeline}}}:"

    @property
    def intake(self) -> str:
        """Stream of admitted requests waiting for dispatch (its length is the backlog)."""
        return self.base + "intake"

    @property
    def work(self) -> str:
        """Stream of dispatched requests (its length is the work in flight)."""
        return self.base + "work"

    @property
    def dlq(self) -> str:
        """Stream of dead-lettered requests with their last error."""
        return self.base + "dlq"

    @property
    def worker_leases(self) -> str:
        """Sorted set: worker id -> lease expiry (ms). A lapsed lease drops its capacity."""
        return self.base + "workers:lease"

    @property
    def worker_capacity(self) -> str:
        """Hash: worker id -> capacity in slots."""
        return self.base + "workers:capacity"

    @property
    def intake_bucket(self) -> str:
        """Token bucket shared by all clients (global intake rate)."""
        return self.base + "bucket:intake"

    @property
    def dispatch_bucket(self) -> str:
        """Token bucket of the dispatch rate towards the backend."""
        return self.base + "bucket:dispatch"

    @property
    def dispatch_log(self) -> str:
        """Dispatches of the last second (sorted set), the hard cap of the dispatch rate."""
        return self.base + "dispatch:log"

    @property
    def drain_window(self) -> str:
        """Dispatches in the current and previous second, for Retry-After on a full backlog."""
        return self.base + "drain"

    @property
    def inflight(self) -> str:
        """Hash: work entry id -> request id, so a vanished entry can still be named."""
        return self.base + "inflight"

    @property
    def circuit(self) -> str:
        """Exists (with a TTL) while the backend circuit is open: admissions get 503."""
        return self.base + "backend:circuit"

    @property
    def backend_failures(self) -> str:
        """Consecutive transient backend failures seen by the workers."""
        return self.base + "backend:failures"

    @property
    def counters(self) -> str:
        """Hash of running totals (accepted, rejected_*, dispatched, completed, ...)."""
        return self.base + "counters"

    @property
    def sched_ring(self) -> str:
        """List of tenants with queued requests, in deficit-round-robin order (head = next)."""
        return self.base + "sched:ring"

    @property
    def sched_tenants(self) -> str:
        """Hash: tenant -> weight, holding exactly the tenants that are in the ring."""
        return self.base + "sched:tenants"

    @property
    def sched_deficit(self) -> str:
        """Hash: tenant -> deficit (requests it may still send in its current turn)."""
        return self.base + "sched:deficit"

    @property
    def sched_turn(self) -> str:
        """The tenant at the head of the ring whose turn a dispatch call left unfinished."""
        return self.base + "sched:turn"

    @property
    def inflight_cost(self) -> str:
        """Hash: work entry id -> estimated tokens (prompt + max_tokens) it holds."""
        return self.base + "inflight:tokens"

    @property
    def worker_token_capacity(self) -> str:
        """Hash: worker id -> tokens it may hold in flight (absent: counted in slots only)."""
        return self.base + "workers:tokens"

    @property
    def abort_channel(self) -> str:
        """Pub/sub channel: ids of running requests whose client went away."""
        return self.base + "abort"

    def tenant_queue(self, tenant: str, priority: int) -> str:
        """Sorted set of one tenant's queued request ids at one priority (score: arrival)."""
        return f"{self.base}queue:{tenant}:{priority}"

    def token_bucket(self, tenant: str) -> str:
        """A tenant's tokens-per-minute budget (LLM tokens, reserved at admission)."""
        return f"{self.base}bucket:tokens:{tenant}"

    def client_bucket(self, identity: str) -> str:
        """Token bucket of one client identity (API key name or client address)."""
        return f"{self.base}bucket:client:{identity}"

    def idempotency(self, identity: str, key_digest: str) -> str:
        """Request id admitted under one client's Idempotency-Key (hashed)."""
        return f"{self.base}idem:{identity}:{key_digest}"

    def request(self, rid: str) -> str:
        """Hash holding a request's state and, once terminal, its result or error."""
        return f"{self.base}req:{rid}"

    def reply(self, ingress_id: str) -> str:
        """Stream through which workers answer the ingress that holds the waiting client."""
        return f"{self.base}reply:{ingress_id}"
