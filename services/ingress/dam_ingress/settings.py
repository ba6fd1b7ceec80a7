"""Ingress settings: DAM_* environment variables, read once in main."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from dam_common.settings import CommonSettings


class IngressSettings(CommonSettings):
    """Every knob of the ingress, with its default."""

    host: str = Field("127.0.0.1", validation_alias="DAM_INGRESS_HOST",
                      description="Address the ingress listens on.")
    port: int = Field(8080, ge=0, le=65535, validation_alias="DAM_INGRESS_PORT",
                      description="Port of the ingress.")
    ingress_id: str = Field("", description="Name of this ingress's reply stream; random if empty.")
    wait_timeout_s: float = Field(30, gt=0, description="How long a synchronous caller waits "
                                  "for its answer before getting 202 and a Location.")
    queue_deadline_s: float = Field(120, gt=0, description="An admitted request not dispatched "
                                    "within this ends as expired.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger bodies get 413.")
    max_tokens_cap: int = Field(4096, ge=1, description="Larger max_tokens get 400.")
    anon_rate: float = Field(2.0, gt=0, description="Requests/s for a client without API key.")
    anon_burst: int = Field(10, ge=1, description="Bucket size of an anonymous client.")
    key_rate: float = Field(10.0, gt=0, description="Requests/s of an API key without its own.")
    key_burst: int = Field(20, ge=1, description="Bucket size of an API key without its own.")
    intake_rate: float = Field(0, ge=0, description="Global admissions/s over all clients "
                               "(0: off, the backlog cap alone bounds intake).")
    intake_burst: int = Field(1000, ge=1, description="Bucket size of the global intake bucket.")
    backlog_cap: int = Field(1000, ge=1, description="Max requests waiting in the intake stream; "
                             "beyond it 503.")
    tenant_backlog_cap: int = Field(250, ge=0, description="Max requests one tenant (an API "
                                    "key, or the anonymous class) may have waiting; beyond it "
                                    "503 for that tenant only (0: the global cap alone). "
                                    "Tiers in the limits file override it.")
    anon_buckets: int = Field(1, ge=1, le=1024, description="Anonymous clients share this many "
                              "tenants, by a hash of their address (the limits file's "
                              "[anonymous] buckets overrides it).")
    default_max_tokens: int = Field(512, ge=1, description="Completion tokens reserved from a "
                                    "token budget for a request that sets no max_tokens.")
    stream_maxlen: int = Field(0, ge=0, description="MAXLEN ~ of the intake stream, a safety net "
                               "above the backlog cap (0: 2 x backlog cap).")
    deny_cache_ms: float = Field(100, ge=0, description="How long a known denial is answered "
                                 "locally, without Redis (0: off).")
    fast_deny: bool = Field(True, description="Answer deny-cache refusals of plain requests "
                            "straight from the socket, before aiohttp builds a request "
                            "(false: every request goes through aiohttp).")
    trusted_proxies: str = Field("", description="Comma-separated addresses/CIDRs whose "
                                 "X-Forwarded-For is honoured.")
    client_timeout_s: float = Field(10, gt=0, description="A connection must complete a "
                                    "request's headers within this of opening, and a body "
                                    "within this of its headers (slow clients get cut / 408).")
    max_connections: int = Field(4096, ge=1, description="Most client connections open at "
                                 "once: at the cap, the longest-idle keep-alive connections are "
                                 "closed to make room; when all are busy, a newcomer is answered "
                                 "503 and closed at once.")
    max_header_bytes: int = Field(8190, ge=1024, description="Longest request line or header "
                                  "field; longer ones get 400.")
    idempotency_ttl_s: float = Field(3600, gt=0, description="A repeated Idempotency-Key "
                                     "from the same client within this returns the original "
                                     "request instead of enqueuing again.")
    config_file: Path | None = Field(None, description="TOML file with API keys and limits.")

    @property
    def intake_maxlen(self) -> int:
        """The effective stream cap; always above the backlog cap (invariant 6)."""
        return self.stream_maxlen or 2 * self.backlog_cap

    @model_validator(mode="after")
    def _cap_below_maxlen(self) -> IngressSettings:
        if self.stream_maxlen and self.stream_maxlen <= self.backlog_cap:
            raise ValueError("DAM_STREAM_MAXLEN must be above DAM_BACKLOG_CAP, or trimming "
                             "could delete entries that are not yet dispatched")
        return self
