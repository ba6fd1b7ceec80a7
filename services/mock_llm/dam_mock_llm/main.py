"""`dam mock-llm`: run the mock backend."""

from __future__ import annotations

from aiohttp import web

from dam_common.runtime import install_uvloop
from dam_mock_llm.server import create_app
from dam_mock_llm.settings import MockSettings


def run(settings: MockSettings) -> None:
    """Serve until SIGINT/SIGTERM."""
    install_uvloop()
    web.run_app(create_app(settings), host=settings.host, port=settings.port,
                access_log=None, print=None, shutdown_timeout=2.0,
                handler_cancellation=True)  # a caller that hangs up stops its generation
