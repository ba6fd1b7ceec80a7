"""Settings every service shares. Each service extends ``CommonSettings`` with its own fields.

Configuration enters once: a service's ``main`` builds its settings from ``DAM_*`` environment
variables and passes them down; nothing else reads the environment.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dam_common.keys import Keys

DEFAULT_REDIS_URL = "redis://127.0.0.1:6399/0"


class CommonSettings(BaseSettings):
    """Connection, key layout and record lifetimes, identical for every service."""

    model_config = SettingsConfigDict(env_prefix="DAM_", extra="ignore", frozen=True)

    redis_url: str = Field(
        DEFAULT_REDIS_URL,
        validation_alias=AliasChoices("DAM_REDIS_URL", "REDIS_URL"),
        description="Redis-compatible server (redis://, rediss:// for TLS, user:password@).",
    )
    key_prefix: str = Field("dam:", description="Prefix of every Redis key.")
    pipeline: str = Field("main", min_length=1, description="Hash tag of this pipeline's keys.")
    log_level: str = Field("INFO", description="Python log level of the service.")
    log_prompts: bool = Field(False, description="Log prompt text (never API keys). Off: logs "
                              "carry ids, clients, outcomes and timings only.")
    result_ttl_s: float = Field(3600, gt=0, description="How long terminal records stay readable.")
    reply_maxlen: int = Field(10_000, ge=100, description="Cap (~) of each ingress reply stream.")
    reply_ttl_s: float = Field(300, gt=0, description="A reply stream nobody reads expires after.")
    shutdown_grace_s: float = Field(20, ge=0, description="On SIGTERM, time to finish in-flight "
                                    "work (answers, generations) before handing it back.")
    dlq_maxlen: int = Field(100_000, ge=100, description="Cap (~) of the dead-letter stream.")

    @property
    def keys(self) -> Keys:
        """The key builder of this pipeline."""
        return Keys(prefix=self.key_prefix, pipeline=self.pipeline)

    @property
    def result_ttl_ms(self) -> int:
        """Terminal record TTL in milliseconds, as the scripts take it."""
        return int(self.result_ttl_s * 1000)

    @property
    def reply_ttl_ms(self) -> int:
        """Reply stream TTL in milliseconds, as the scripts take it."""
        return int(self.reply_ttl_s * 1000)

    @model_validator(mode="after")
    def _check_prefix(self) -> CommonSettings:
        if any(c in self.pipeline for c in "{}"):
            raise ValueError("DAM_PIPELINE must not contain braces: it becomes the hash tag")
        return self
