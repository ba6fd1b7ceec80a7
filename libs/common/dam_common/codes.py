"""Reply codes of the Lua scripts and the typed results they map to."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class AdmitCode(IntEnum):
    """Outcome of ``admit_request.lua``."""

    ADMITTED = 0
    RATE_LIMITED = 1
    INTAKE_RATE = 2
    BACKLOG_FULL = 3
    DUPLICATE = 4
    CIRCUIT_OPEN = 5
    TOKENS_LIMITED = 6
    TENANT_BACKLOG_FULL = 7


class DispatchCode(IntEnum):
    """Outcome of ``dispatch_entries.lua``."""

    MOVED = 0
    NO_CREDITS = 1
    RATE_LIMITED = 2
    EMPTY = 3


class CancelOutcome(IntEnum):
    """Outcome of ``cancel_request.lua``."""

    TOO_LATE = 0  # terminal already, or unknown
    CANCELLED = 1  # was queued: never dispatched
    ABORTING = 2  # was running: the worker holding it was told to abort the call


class FailCode(IntEnum):
    """Outcome of ``fail_entry.lua``."""

    REQUEUED = 0
    DEAD_LETTERED = 1
    ALREADY_TERMINAL = 2
    NOT_FOUND = 3
    CANCELLED = 4


class FailMode:
    """How ``fail_entry.lua`` treats a delivery that did not complete."""

    RETRY = "retry"
    HANDBACK = "handback"
    BURY = "bury"
    CANCEL = "cancel"  # the client left during generation: terminal `cancelled`, no DLQ


TERMINAL_STATES = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(slots=True)
class AdmitResult:
    """Admission decision, with what the 429/503 headers need.

    Not frozen: one is built for every denied request of a flood, and a frozen dataclass's
    __init__ (object.__setattr__ per field) costs about four times as much.
    """

    code: AdmitCode
    rid: str = ""
    backlog: int = 0
    remaining: int = 0
    reset_ms: int = 0
    retry_ms: int = 0
    drain_per_s: int = 0
    shadowed: bool = False
    tokens_left: int = 0
    tokens_reset_ms: int = 0


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """A queued request's place under the fair schedule, and the drain rate behind its ETA."""

    position: int
    drain_per_s: int
    ahead_in_tenant: int

    @property
    def eta_s(self) -> float | None:
        """Seconds until dispatch if the queue keeps draining as it did over the last second."""
        if not self.drain_per_s:
            return None
        return round((self.position + 1) / self.drain_per_s, 2)


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What one dispatch call moved, and how long to wait before the next when nothing moved."""

    code: DispatchCode
    dispatched: int = 0
    expired: int = 0
    credits_left: int = 0
    wait_ms: int = 0


@dataclass(frozen=True, slots=True)
class FailResult:
    """Where a failed delivery went."""

    code: FailCode
    entry_id: str = ""


@dataclass(frozen=True, slots=True)
class ClaimedEntry:
    """A work entry taken over from a dead or frozen worker."""

    entry_id: str
    fields: dict[str, str]
    deliveries: int


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """One XAUTOCLAIM step: cursor to continue from, entries claimed, entries that vanished."""

    cursor: str
    claimed: list[ClaimedEntry] = field(default_factory=list)
    vanished: int = 0


def parse_admit(raw: list[object]) -> AdmitResult:
    """Map ``admit_request.lua``'s reply to an ``AdmitResult``."""
    code = AdmitCode(int(_num(raw[0])))
    if code is AdmitCode.ADMITTED:
        return AdmitResult(code, rid=_str(raw[1]), backlog=_num(raw[2]),
                           remaining=_num(raw[3]), reset_ms=_num(raw[4]),
                           shadowed=_num(raw[5]) == 1, drain_per_s=_num(raw[6]),
                           tokens_left=_num(raw[7]), tokens_reset_ms=_num(raw[8]))
    if code is AdmitCode.RATE_LIMITED:
        return AdmitResult(code, retry_ms=_num(raw[1]), remaining=_num(raw[2]),
                           reset_ms=_num(raw[3]))
    if code is AdmitCode.TOKENS_LIMITED:
        return AdmitResult(code, retry_ms=_num(raw[1]), tokens_left=_num(raw[2]),
                           tokens_reset_ms=_num(raw[3]))
    if code in (AdmitCode.INTAKE_RATE, AdmitCode.CIRCUIT_OPEN):
        return AdmitResult(code, retry_ms=_num(raw[1]))
    if code is AdmitCode.DUPLICATE:
        return AdmitResult(code, rid=_str(raw[1]))
    return AdmitResult(code, backlog=_num(raw[1]), drain_per_s=_num(raw[2]))


def parse_position(raw: list[object]) -> QueuePosition | None:
    """Map ``queue_position.lua``'s reply; None when the request is no longer queued."""
    if _num(raw[0]) == 0:
        return None
    return QueuePosition(_num(raw[1]), _num(raw[2]), _num(raw[3]))


def parse_dispatch(raw: list[object]) -> DispatchResult:
    """Map ``dispatch_entries.lua``'s reply to a ``DispatchResult``."""
    return DispatchResult(DispatchCode(_num(raw[0])), _num(raw[1]), _num(raw[2]),
                          _num(raw[3]), _num(raw[4]))


def parse_fail(raw: list[object]) -> FailResult:
    """Map ``fail_entry.lua``'s reply to a ``FailResult``."""
    code = FailCode(_num(raw[0]))
    return FailResult(code, _str(raw[1]) if len(raw) > 1 else "")


def parse_claim(raw: list[object]) -> ClaimResult:
    """Map ``claim_stale.lua``'s reply to a ``ClaimResult``."""
    entries = []
    for item in raw[1]:  # type: ignore[attr-defined]
        entry_id, flat, deliveries = item
        fields = {_str(flat[i]): _str(flat[i + 1]) for i in range(0, len(flat), 2)}
        entries.append(ClaimedEntry(_str(entry_id), fields, _num(deliveries)))
    return ClaimResult(_str(raw[0]), entries, _num(raw[2]))


def _num(value: object) -> int:
    return int(value)  # type: ignore[call-overload,no-any-return]


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
