"""The "before": an aiohttp proxy that forwards every request straight to the backend, as the
service was before the dam. `python -m dam_load.naive_gateway --port P --backend URL`."""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

BACKEND = web.AppKey("backend", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    """Pass the body through and the answer back; a dead backend becomes 502."""
    body = await request.read()
    try:
        async with request.app[SESSION].post(
                request.app[BACKEND] + "/v1/chat/completions", data=body,
                headers={"Content-Type": "application/json"}) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status,
                                content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json_response({"error": {"message": f"backend unreachable: {exc}",
                                            "type": "upstream_error", "code": "bad_gateway"}},
                                 status=502)


async def _session(app: web.Application):  # type: ignore[no-untyped-def]
    app[SESSION] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120))
    yield
    await app[SESSION].close()


def create_app(backend: str) -> web.Application:
    """The naive gateway app."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[BACKEND] = backend.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_post("/v1/chat/completions", forward)
    return app


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="e.g. http://127.0.0.1:8090")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    web.run_app(create_app(args.backend), host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
