"""Shared by the benchmarks: a Redis-compatible server of their own and the machine line."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dam_cli.redis_server import EmbeddedServer
from dam_load.flood import machine
from dam_load.runner import free_port

__all__ = ["free_port", "machine", "median", "platform", "redis_server"]


@contextmanager
def redis_server() -> Iterator[str]:
    """REDIS_URL if set, else a fresh embedded server for the benchmark."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(free_port(), Path(tmp), appendfsync="everysec")
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def median(values: list[float]) -> float:
    """Median of repeated measurements."""
    return statistics.median(values)
