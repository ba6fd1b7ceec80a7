"""The listening socket: a cap on open connections with a clear refusal, and client timeouts.

aiohttp closes a connection that has not completed a request `keepalive_timeout` after it was
opened, which also ends slowloris-style header trickling; a body that trickles is cut by the
handler's own read timeout (408).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from typing import cast

from aiohttp import web

from dam_common.errors import ConfigError
from dam_common.runtime import on_stop_signals
from dam_ingress.app import build_policy
from dam_ingress.fast_deny import FastDenyProtocol
from dam_ingress.handlers import CORE, IngressCore, local_denial
from dam_ingress.metrics import OPEN_CONNECTIONS, REFUSED_CONNECTIONS
from dam_ingress.responses import Answer, error_body, raw_answer
from dam_ingress.settings import IngressSettings

log = logging.getLogger(__name__)

REFUSAL: Answer = (503, error_body("Too many open connections; retry shortly.",
                                   "server_overloaded", "too_many_connections"),
                   {"Retry-After": "1"})


class _Refuse(asyncio.Protocol):
    """Answers 503 and closes at once: the connection never reaches the HTTP parser."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they write the same.
        cast(asyncio.Transport, transport).write(raw_answer(REFUSAL, close=True))
        transport.close()


class CappedFactory:
    """Protocol factory handing connections to aiohttp, behind the fast deny path, while
    fewer than `cap` are open."""

    def __init__(self, server: web.Server, core: IngressCore) -> None:
        self._server = server
        self._cap = core.settings.max_connections
        self._decide = functools.partial(local_denial, core)
        self._max_line = core.settings.max_header_bytes
        self._max_body = core.settings.max_body_bytes
        self._fast_deny = core.settings.fast_deny
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) >= self._cap:
            self.refused += 1
            REFUSED_CONNECTIONS.inc()
            return _Refuse()
        if not self._fast_deny:
            return self._server()
        return FastDenyProtocol(self._server(), self._decide, self._max_line, self._max_body)


def reload_limits(core: IngressCore) -> bool:
    """SIGHUP: read the limits file again; a bad file is refused and the old limits stay."""
    try:
        core.policy = build_policy(core.settings)
    except ConfigError as exc:
        log.error("limits file refused; the previous limits stay in force",
                  extra={"error": str(exc)})
        return False
    core.deny_cache.clear()
    log.info("limits reloaded", extra={"file": str(core.settings.config_file)})
    return True


async def serve(app: web.Application, settings: IngressSettings) -> None:
    """Listen until SIGTERM/SIGINT, then drain within DAM_SHUTDOWN_GRACE_S."""
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.client_timeout_s,
                           shutdown_timeout=settings.shutdown_grace_s,
                           max_field_size=settings.max_header_bytes,
                           max_line_size=settings.max_header_bytes)
    await runner.setup()
    assert runner.server is not None
    factory = CappedFactory(runner.server, app[CORE])
    server = runner.server
    OPEN_CONNECTIONS.set_function(lambda: len(server.connections))
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(factory, settings.host, settings.port, backlog=2048,
                                        reuse_address=True)
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_limits, app[CORE])
    log.info("ingress listening", extra={"host": settings.host, "port": settings.port})
    try:
        await stop.wait()
    finally:
        listener.close()
        await listener.wait_closed()
        await runner.cleanup()
        log.info("ingress stopped", extra={"refused_connections": factory.refused})
