"""How a worker retries a backend call within one delivery (tenacity)."""

from __future__ import annotations

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from dam_common.errors import BackendError, TransientBackendError
from dam_worker.metrics import RETRIES


class WaitHonouringRetryAfter(wait_base):
    """The backend's Retry-After when it gave one (capped), else exponential with full jitter."""

    def __init__(self, base_s: float, cap_s: float) -> None:
        self._cap = cap_s
        self._exp = wait_random_exponential(multiplier=base_s, max=cap_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, BackendError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self._cap)
        return float(self._exp(retry_state))


def _count_retry(_: RetryCallState) -> None:
    RETRIES.inc()


def backend_retrying(attempts: int, base_s: float, cap_s: float) -> AsyncRetrying:
    """Bounded retries of transient backend errors; permanent ones surface at once."""
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=WaitHonouringRetryAfter(base_s, cap_s),
        retry=retry_if_exception_type(TransientBackendError),
        before_sleep=_count_retry,
        reraise=True,
    )
