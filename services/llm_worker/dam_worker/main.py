"""`dam worker`: run one LLM worker process."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from dam_common.connection import make_redis
from dam_common.logs import setup_logging
from dam_common.probes import Readiness, start_probe_server
from dam_common.runtime import default_consumer_name, install_uvloop, on_stop_signals
from dam_worker.backend import LLMBackend
from dam_worker.settings import WorkerSettings
from dam_worker.worker import Worker

log = logging.getLogger(__name__)


async def serve(settings: WorkerSettings) -> None:
    """Work until SIGTERM/SIGINT, then finish or hand back in-flight entries."""
    consumer = settings.worker_id or default_consumer_name()
    readiness = Readiness()
    redis = make_redis(settings.redis_url, max_connections=settings.worker_capacity + 8,
                       name="dam-worker")
    blocking = make_redis(settings.redis_url, max_connections=3, socket_timeout=None,
                          name="dam-worker-read")
    timeout = aiohttp.ClientTimeout(total=settings.llm_timeout_s,
                                    sock_connect=settings.llm_connect_timeout_s)
    connector = aiohttp.TCPConnector(limit=settings.worker_capacity * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        backend = LLMBackend(session, settings.llm_base_url, settings.llm_api_key,
                             settings.llm_model_map)
        worker = Worker(settings, redis, blocking, backend, readiness, consumer)
        on_stop_signals(worker.stop)
        runner = None
        if settings.ops_port:
            runner = await start_probe_server(settings.ops_host, settings.ops_port, readiness)
        log.info("worker started", extra={"consumer": consumer,
                                          "capacity": settings.worker_capacity})
        try:
            await worker.run()
        finally:
            readiness.draining = True
            if runner is not None:
                await runner.cleanup()
            await redis.aclose()
            await blocking.aclose()
            log.info("worker stopped", extra={"consumer": consumer})


def run(settings: WorkerSettings) -> None:
    """Entry point of `dam worker`."""
    setup_logging("worker", settings.log_level)
    install_uvloop()
    asyncio.run(serve(settings))
