"""Liveness, readiness and metrics endpoints that every service exposes."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@dataclass
class Readiness:
    """Ready means: Redis answered recently and the scripts are loaded."""

    redis_ok: bool = False
    scripts_loaded: bool = False
    draining: bool = False
    last_error: str = ""

    @property
    def ready(self) -> bool:
        """True when the service can do its work now."""
        return self.redis_ok and self.scripts_loaded and not self.draining

    def mark_ok(self) -> None:
        """Redis just answered."""
        self.redis_ok = True
        self.last_error = ""

    def mark_down(self, error: BaseException) -> None:
        """Redis did not answer; keep the reason for /readyz."""
        self.redis_ok = False
        self.last_error = f"{type(error).__name__}: {error}"


READINESS_KEY = web.AppKey("readiness", Readiness)


async def healthz(_: web.Request) -> web.Response:
    """The process is alive and its event loop turns."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when ready, 503 with the reason otherwise."""
    state = request.app[READINESS_KEY]
    body: dict[str, bool | str] = {
        "ready": state.ready,
        "redis": state.redis_ok,
        "scripts": state.scripts_loaded,
        "draining": state.draining,
    }
    if state.last_error:
        body["error"] = state.last_error
    return web.json_response(body, status=200 if state.ready else 503)


async def metrics(_: web.Request) -> web.Response:
    """Prometheus text exposition of this process's registry (process metrics included)."""
    resp = web.Response(body=generate_latest())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def add_probe_routes(app: web.Application, readiness: Readiness) -> None:
    """Mount /healthz, /readyz and /metrics on an application."""
    app[READINESS_KEY] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def start_probe_server(host: str, port: int, readiness: Readiness) -> web.AppRunner:
    """A small HTTP server with only the probe routes (dispatcher, worker)."""
    app = web.Application()
    add_probe_routes(app, readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
