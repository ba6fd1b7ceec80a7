"""Dispatcher settings: DAM_* environment variables, read once in main."""

from __future__ import annotations

from pydantic import Field

from dam_common.settings import CommonSettings


class DispatcherSettings(CommonSettings):
    """Every knob of the dispatcher, with its default."""

    dispatch_rate: float = Field(100, ge=0, description="Max requests/s handed to the backend "
                                 "(0: only worker credits limit it).")
    dispatch_jitter_ms: int = Field(50, ge=0, le=1000, description="The rate cap holds over "
                                    "any window of 1000 ms plus this, so that the spread "
                                    "between a dispatch and the backend call it causes cannot "
                                    "put more than DAM_DISPATCH_RATE calls into one second at "
                                    "the backend (costs rate x jitter/1000 of throughput).")
    dispatch_burst: int = Field(10, ge=1, description="Dispatches the pacing bucket lets "
                                "through at once, so a late wake-up is caught up; no sliding "
                                "second ever holds more than the rate, whatever the burst.")
    dispatch_batch: int = Field(64, ge=1, description="Max entries moved by one script call.")
    dispatcher_id: str = Field("", description="Name of this dispatcher in its logs; random if "
                               "empty.")
    idle_poll_ms: float = Field(10, gt=0, description="Pause when every worker slot is taken.")
    ops_host: str = Field("127.0.0.1", validation_alias="DAM_DISPATCHER_HOST",
                          description="Address of /healthz, /readyz, /metrics.")
    ops_port: int = Field(8081, ge=0, le=65535, validation_alias="DAM_DISPATCHER_PORT",
                          description="Port of /healthz, /readyz, /metrics (0: off).")
