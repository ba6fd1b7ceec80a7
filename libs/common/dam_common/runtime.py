"""Process-level setup shared by the services."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
from collections.abc import Callable


def install_uvloop() -> None:
    """Use uvloop where it is installed: it roughly halves the event loop's own overhead."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on non-Linux platforms
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def on_stop_signals(callback: Callable[[], None]) -> None:
    """Call `callback` on SIGTERM and SIGINT (for loops that are not aiohttp apps)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)


def default_consumer_name() -> str:
    """host-pid-random: unique per process, readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
