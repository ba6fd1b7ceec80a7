"""`dam dispatcher`: run one dispatcher process."""

from __future__ import annotations

import asyncio
import logging

from dam_common.connection import make_redis
from dam_common.logs import setup_logging
from dam_common.probes import Readiness, start_probe_server
from dam_common.runtime import default_consumer_name, install_uvloop, on_stop_signals
from dam_dispatcher.dispatch import Dispatcher
from dam_dispatcher.settings import DispatcherSettings

log = logging.getLogger(__name__)


async def serve(settings: DispatcherSettings) -> None:
    """Dispatch until SIGTERM/SIGINT. Nothing is held in memory, so stopping loses nothing."""
    consumer = settings.dispatcher_id or default_consumer_name()
    readiness = Readiness()
    redis = make_redis(settings.redis_url, max_connections=8, name="dam-dispatcher")
    blocking = make_redis(settings.redis_url, max_connections=2, socket_timeout=None,
                          name="dam-dispatcher-wait")
    dispatcher = Dispatcher(settings, redis, blocking, readiness)
    on_stop_signals(dispatcher.stop)
    runner = None
    if settings.ops_port:
        runner = await start_probe_server(settings.ops_host, settings.ops_port, readiness)
    log.info("dispatcher started", extra={"consumer": consumer, "rate": settings.dispatch_rate})
    sampler = asyncio.create_task(dispatcher.sample_pipeline())
    try:
        await dispatcher.run()
    finally:
        readiness.draining = True
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        await redis.aclose()
        await blocking.aclose()
        log.info("dispatcher stopped", extra={"consumer": consumer})


def run(settings: DispatcherSettings) -> None:
    """Entry point of `dam dispatcher`."""
    setup_logging("dispatcher", settings.log_level)
    install_uvloop()
    asyncio.run(serve(settings))
