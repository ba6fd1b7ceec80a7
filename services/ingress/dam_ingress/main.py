"""`dam ingress`: run one ingress process."""

from __future__ import annotations

import logging

from aiohttp import web

from dam_common.logs import setup_logging
from dam_common.runtime import install_uvloop
from dam_ingress.app import build_policy, create_app
from dam_ingress.settings import IngressSettings

log = logging.getLogger(__name__)


def run(settings: IngressSettings) -> None:
    """Serve until SIGINT/SIGTERM; aiohttp drains open requests on shutdown."""
    setup_logging("ingress", settings.log_level)
    policy = build_policy(settings)
    install_uvloop()
    app = create_app(settings, policy)
    log.info("ingress listening", extra={"host": settings.host, "port": settings.port})
    web.run_app(app, host=settings.host, port=settings.port, access_log=None,
                print=None, shutdown_timeout=settings.shutdown_grace_s, backlog=2048)
