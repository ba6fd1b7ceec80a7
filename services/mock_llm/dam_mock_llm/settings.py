"""Mock LLM settings: DAM_MOCK_* environment variables, overridable by `dam mock-llm` flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MockSettings(BaseSettings):
    """How the mock behaves: latency, answer length, errors."""

    model_config = SettingsConfigDict(env_prefix="DAM_MOCK_", extra="ignore")

    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8090, ge=0, le=65535, description="Listen port.")
    ttft_ms: float = Field(50, ge=0, description="Time to first token.")
    tokens: int = Field(16, ge=1, description="Tokens in an answer (capped by max_tokens).")
    tokens_per_s: float = Field(200, gt=0, description="Generation speed after the first token.")
    error_rate: float = Field(0, ge=0, le=1, description="Share of requests answered with "
                              "`status` instead.")
    status: int = Field(500, ge=400, le=599, description="Status of the injected errors.")
    slots: int = Field(16, ge=0, description="Concurrent generations (0: unlimited). Beyond "
                       "them requests wait in an unbounded queue, as a real server's do.")
    queue_memory_kb: int = Field(256, ge=0, description="Memory held per waiting request "
                                 "(the cost a real server pays for a queued prompt).")
    crash_at_queue: int = Field(0, ge=0, description="Exit like an OOM kill when more than "
                                "this many requests wait (0: never).")
    retry_after_s: float | None = Field(None, ge=0, description="Retry-After sent with errors.")
    max_queue: int | None = Field(None, ge=0, description="With all slots busy, at most this "
                                  "many requests wait; more get 429 'overloaded', as a hosted "
                                  "API does (unset: the queue is unbounded).")
