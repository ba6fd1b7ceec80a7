"""The listening socket: a cap on open connections with a clear refusal, and client timeouts.

aiohttp closes a connection that has not completed a request `keepalive_timeout` after it was
opened, which also ends slowloris-style header trickling; a body that trickles is cut by the
handler's own read timeout (408).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import cast

from aiohttp import web

from dam_common.errors import ConfigError
from dam_common.runtime import on_stop_signals
from dam_ingress.app import build_policy
from dam_ingress.handlers import CORE, IngressCore
from dam_ingress.metrics import OPEN_CONNECTIONS, REFUSED_CONNECTIONS
from dam_ingress.settings import IngressSettings

log = logging.getLogger(__name__)

_REFUSAL_BODY = (b'{"error": {"message": "Too many open connections; retry shortly.", '
                 b'"type": "server_overloaded", "code": "too_many_connections"}}')
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
           + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY)


class _Refuse(asyncio.Protocol):
    """Answers 503 and closes at once: the connection never reaches the HTTP parser."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they write the same.
        cast(asyncio.Transport, transport).write(REFUSAL)
        transport.close()


class CappedFactory:
    """Protocol factory handing connections to aiohttp while fewer than `cap` are open."""

    def __init__(self, server: web.Server, cap: int) -> None:
        self._server = server
        self._cap = cap
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) >= self._cap:
            self.refused += 1
            REFUSED_CONNECTIONS.inc()
            return _Refuse()
        return self._server()


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
    factory = CappedFactory(runner.server, settings.max_connections)
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
