"""The error hierarchy shared by the services; turned into HTTP answers only at the edge."""

from __future__ import annotations


class DamError(Exception):
    """Base of every error the dam raises on purpose."""


class ConfigError(DamError):
    """A settings value or the limits file is invalid."""


class BackendError(DamError):
    """The LLM backend failed a call."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class TransientBackendError(BackendError):
    """Worth retrying: connect error, timeout, 429 or 5xx."""


class PermanentBackendError(BackendError):
    """Retrying cannot help (4xx other than 429, malformed answer)."""
