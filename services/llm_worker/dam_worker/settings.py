"""Worker settings: DAM_* environment variables, read once in main."""

from __future__ import annotations

from pydantic import Field, model_validator

from dam_common.settings import CommonSettings


class WorkerSettings(CommonSettings):
    """Every knob of the worker, with its default."""

    worker_capacity: int = Field(4, ge=1, description="Concurrent backend calls (slots); the "
                                 "most the adaptive limit may reach.")
    worker_min_capacity: int = Field(1, ge=1, description="The least the adaptive limit may "
                                     "fall to under backend pushback.")
    adaptive_capacity: bool = Field(True, description="Lower the concurrency on backend "
                                    "429/503/timeouts (or calls slower than the latency "
                                    "target) and raise it back as calls succeed (AIMD).")
    backend_latency_target_s: float = Field(0, ge=0, description="A call slower than this "
                                            "counts as backend overload (0: latency is not "
                                            "a signal, only errors are).")
    worker_token_capacity: int = Field(0, ge=0, description="Estimated tokens (prompt + "
                                       "max_tokens) this worker's backend share may hold in "
                                       "flight, as a KV cache does (0: slots only).")
    worker_id: str = Field("", description="Consumer name in the work group; random if empty.")
    llm_base_url: str = Field("http://127.0.0.1:8090/v1", description="OpenAI-compatible "
                              "backend; /chat/completions is appended.")
    llm_api_key: str = Field("", description="Bearer key sent to the backend (never logged).")
    llm_model_map: dict[str, str] = Field(default_factory=dict, description="JSON object "
                                          "mapping client model names to backend ones.")
    llm_timeout_s: float = Field(120, gt=0, description="Total time of one backend call.")
    llm_connect_timeout_s: float = Field(5, gt=0, description="Connect timeout to the backend.")
    llm_max_attempts: int = Field(3, ge=1, description="Tries per delivery on transient errors "
                                  "(connect, timeout, 429, 5xx).")
    llm_backoff_base_s: float = Field(0.2, gt=0, description="Exponential backoff base "
                                      "(with full jitter).")
    llm_backoff_max_s: float = Field(5, gt=0, description="Longest wait between tries, "
                                     "Retry-After included.")
    circuit_failures: int = Field(5, ge=0, description="Consecutive failed deliveries (after "
                                  "retries) that open the backend circuit (0: never).")
    circuit_cooldown_s: float = Field(10, gt=0, description="How long an open circuit makes "
                                      "the ingress answer 503 before trying the backend again.")
    visibility_timeout_s: float = Field(30, gt=0, description="An entry idle this long in a "
                                        "worker's hands is reclaimed by another worker.")
    max_deliveries: int = Field(3, ge=1, description="Deliveries before an entry is "
                                "dead-lettered.")
    heartbeat_ttl_s: float = Field(5, gt=0, description="A worker silent this long loses its "
                                   "capacity from the credits.")
    ops_host: str = Field("127.0.0.1", validation_alias="DAM_WORKER_HOST",
                          description="Address of /healthz, /readyz, /metrics.")
    ops_port: int = Field(8082, ge=0, le=65535, validation_alias="DAM_WORKER_PORT",
                          description="Port of /healthz, /readyz, /metrics (0: off).")

    @model_validator(mode="after")
    def _bounds(self) -> WorkerSettings:
        if self.worker_min_capacity > self.worker_capacity:
            raise ValueError("DAM_WORKER_MIN_CAPACITY must not exceed DAM_WORKER_CAPACITY")
        return self
