"""Adaptive concurrency: how many backend calls this worker may have in flight right now.

AIMD, as TCP and Netflix's concurrency-limits do it: every call that succeeds within the
latency target adds 1/limit (about +1 per round trip); an overload signal (a 429/503 from
the backend, a timeout, or a call slower than the target) multiplies the limit by `backoff`,
at most once per round trip (the smoothed call latency, or `cooldown_s` if given) so that
the failures of one round count once, as TCP halves its window once per RTT. The
limit stays within [min_limit, max_limit]. The worker advertises int(limit) as its capacity
in its lease, so the dispatcher's credits follow the backend's health.
"""

from __future__ import annotations

import math


class AimdLimit:
    """The adaptive limit; `observe_*` return True when the integer limit changed."""

    def __init__(self, min_limit: int, max_limit: int, latency_target_s: float = 0.0,
                 backoff: float = 0.5, cooldown_s: float | None = None) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        self._min, self._max = min_limit, max_limit
        self._target = latency_target_s
        self._backoff = backoff
        self._cooldown = cooldown_s
        self._limit = float(max_limit)
        self._last_decrease = -math.inf
        self._rtt = 0.1  # smoothed latency of successful calls, seconds

    @property
    def current(self) -> int:
        """Calls this worker may have in flight now."""
        return int(self._limit)

    def observe_success(self, latency_s: float, now: float) -> bool:
        """A call that completed; slower than the target counts as overload."""
        if self._target and latency_s > self._target:
            return self.observe_overload(now)
        self._rtt += 0.2 * (latency_s - self._rtt)
        before = self.current
        self._limit = min(float(self._max), self._limit + 1 / self._limit)
        return self.current != before

    def observe_overload(self, now: float) -> bool:
        """The backend pushed back (429/503, timeout, or too slow)."""
        cooldown = self._rtt if self._cooldown is None else self._cooldown
        if now - self._last_decrease < cooldown:
            return False
        self._last_decrease = now
        before = self.current
        self._limit = max(float(self._min), self._limit * self._backoff)
        return self.current != before
