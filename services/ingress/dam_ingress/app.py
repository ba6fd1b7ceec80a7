"""The ingress application: create_app(settings) wires clients, routes and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from dam_common.connection import TRANSIENT_REDIS_ERRORS, ensure_groups, make_redis
from dam_common.probes import Readiness, add_probe_routes
from dam_common.runtime import default_consumer_name
from dam_common.scripts import LuaScripts
from dam_ingress.access import AccessPolicy, Anonymous, Client, load_policy, parse_trusted
from dam_ingress.admission import AdmissionBatcher, DenyCache
from dam_ingress.handlers import CORE, IngressCore, chat_completions, get_request
from dam_ingress.metrics import response_counter
from dam_ingress.openapi import openapi_document
from dam_ingress.replies import ReplyRouter
from dam_ingress.responses import error_response
from dam_ingress.settings import IngressSettings
from dam_ingress.tiers import Tier

log = logging.getLogger(__name__)

def build_policy(settings: IngressSettings) -> AccessPolicy:
    """The access policy from settings and the optional limits file (ConfigError if bad)."""
    default_tier = Tier(backlog=settings.tenant_backlog_cap)
    return load_policy(
        settings.config_file,
        anonymous=Anonymous(settings.anon_rate, settings.anon_burst, tier=default_tier,
                            buckets=settings.anon_buckets),
        key_default=Client("key", settings.key_rate, settings.key_burst),
        trusted=parse_trusted(settings.trusted_proxies),
    )


def _ingress_id(settings: IngressSettings) -> str:
    return settings.ingress_id or default_consumer_name()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE]
    stop = asyncio.Event()
    tasks = {asyncio.create_task(core.router.run(stop), name="reply-router"),
             asyncio.create_task(_probe_loop(core, stop), name="redis-probe")}
    yield
    # Loops end on `stop`; the cancel is for a loop caught in a Redis call. redis-py can
    # swallow a cancellation mid-command, so the loops must not rely on it alone.
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=3.0)
    await core.batcher.close()
    await core.redis.aclose()
    await core.blocking_redis.aclose()


async def _probe_loop(core: IngressCore, stop: asyncio.Event) -> None:
    """Keep readiness true to Redis: ping, and load scripts and groups once reachable."""
    while not stop.is_set():
        try:
            await core.redis.ping()
            if not core.readiness.scripts_loaded:
                await core.scripts.load()
                await ensure_groups(core.redis, core.settings.keys)
                core.readiness.scripts_loaded = True
            core.readiness.mark_ok()
        except TRANSIENT_REDIS_ERRORS as exc:
            core.readiness.mark_down(exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _start_draining(app: web.Application) -> None:
    """SIGTERM: refuse new requests (503) while the waiting ones get their answers."""
    app[CORE].readiness.draining = True


async def _count_response(_: web.Request, response: web.StreamResponse) -> None:
    """Every answer counted by status (a signal, not a middleware: cheaper on the hot path)."""
    response_counter(response.status).inc()


async def not_found(request: web.Request) -> web.Response:
    """Unknown routes and methods as OpenAI-style errors (405 where only the method is wrong)."""
    known = {"/v1/chat/completions": "POST", "/openapi.json": "GET", "/healthz": "GET",
             "/readyz": "GET", "/metrics": "GET"}
    allowed = known.get(request.path) or (
        "GET" if request.path.startswith("/v1/requests/") else None)
    if allowed:
        return error_response(405, f"{request.method} is not allowed here; use {allowed}.",
                              "invalid_request_error", "method_not_allowed",
                              headers={"Allow": allowed})
    return error_response(404, f"No route {request.path[:100]}.", "invalid_request_error",
                          "not_found")


def create_app(settings: IngressSettings, policy: AccessPolicy | None = None) -> web.Application:
    """The ingress app; Redis clients live as long as the app (cleanup context)."""
    readiness = Readiness()
    redis = make_redis(settings.redis_url, name="dam-ingress")
    blocking = make_redis(settings.redis_url, max_connections=2, socket_timeout=None,
                          name="dam-ingress-replies")
    scripts = LuaScripts(redis, settings)
    ingress_id = _ingress_id(settings)
    core = IngressCore(
        settings=settings,
        policy=policy or build_policy(settings),
        redis=redis,
        blocking_redis=blocking,
        scripts=scripts,
        batcher=AdmissionBatcher(scripts),
        deny_cache=DenyCache(settings.deny_cache_ms),
        router=ReplyRouter(blocking, settings.keys.reply(ingress_id), readiness),
        readiness=readiness,
        ingress_id=ingress_id,
    )
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[CORE] = core
    app.cleanup_ctx.append(_redis_ctx)
    app.on_shutdown.append(_start_draining)
    add_probe_routes(app, readiness)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/requests/{rid}", get_request)
    document = openapi_document()

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/openapi.json", openapi)
    app.router.add_route("*", "/{tail:.*}", not_found)  # last: only what nothing else took
    app.on_response_prepare.append(_count_response)
    return app
