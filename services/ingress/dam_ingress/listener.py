"""The listening socket: a cap on open connections, and client timeouts.

At the cap, the connections idle the longest (holding no request, no request half received)
are closed to make room, as nginx reuses keep-alive connections when it runs out: a burst's
clients parked on keep-alive must not lock a newcomer out. Only when every open connection is
busy is the newcomer refused, with a clear 503.

aiohttp closes a connection that has not completed a request `keepalive_timeout` after it was
opened, which also ends slowloris-style header trickling; a body that trickles is cut by the
handler's own read timeout (408).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import signal
from typing import cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from dam_common.errors import ConfigError
from dam_common.runtime import on_stop_signals
from dam_ingress.app import build_policy
from dam_ingress.fast_deny import FastDenyProtocol, aiohttp_idle, keepalive_deadline
from dam_ingress.handlers import CORE, IngressCore, local_denial
from dam_ingress.metrics import IDLE_CONNECTIONS_CLOSED, OPEN_CONNECTIONS, REFUSED_CONNECTIONS
from dam_ingress.responses import Answer, error_body, raw_answer
from dam_ingress.settings import IngressSettings

log = logging.getLogger(__name__)
EVICTION_SHARE = 64  # at the cap, close up to cap/64 idle connections per scan

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
    fewer than `cap` are open or idle ones can be closed to make room."""

    def __init__(self, server: web.Server, core: IngressCore) -> None:
        self._server = server
        self._cap = core.settings.max_connections
        self._batch = max(1, self._cap // EVICTION_SHARE)
        self._decide = functools.partial(local_denial, core)
        self._max_line = core.settings.max_header_bytes
        self._max_body = core.settings.max_body_bytes
        self._fast_deny = core.settings.fast_deny
        self._framers: dict[RequestHandler, FastDenyProtocol] = {}
        self._room = 0  # connections closed to make room whose close is still under way
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) < self._cap:
            self._room = 0
        elif self._room:
            self._room -= 1
        elif (closed := self._close_idle()) > 0:
            self._room = closed - 1
        else:
            self.refused += 1
            REFUSED_CONNECTIONS.inc()
            return _Refuse()
        handler = self._server()
        if not self._fast_deny:
            return handler
        framer = FastDenyProtocol(handler, self._decide, self._max_line, self._max_body,
                                  on_lost=self._forget)
        self._framers[handler] = framer
        return framer

    def _forget(self, handler: RequestHandler) -> None:
        self._framers.pop(handler, None)

    def _close_idle(self) -> int:
        """Close the `batch` longest-idle connections (one scan for many newcomers): those
        whose last request was answered longest ago, holding no request. How many it closed."""
        idle = [h for h in self._server.connections if self._between_requests(h)]
        oldest = heapq.nsmallest(self._batch, idle, key=keepalive_deadline)
        for handler in oldest:
            handler.force_close()
        IDLE_CONNECTIONS_CLOSED.inc(len(oldest))
        return len(oldest)

    def _between_requests(self, handler: RequestHandler) -> bool:
        framer = self._framers.get(handler)
        return aiohttp_idle(handler) and (framer is None or framer.between_requests)


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
