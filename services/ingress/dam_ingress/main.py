"""`dam ingress`: run one ingress process."""

from __future__ import annotations

import asyncio

from dam_common.logs import setup_logging
from dam_common.runtime import install_uvloop
from dam_ingress.app import build_policy, create_app
from dam_ingress.listener import serve
from dam_ingress.settings import IngressSettings


def run(settings: IngressSettings) -> None:
    """Serve until SIGINT/SIGTERM; open requests get DAM_SHUTDOWN_GRACE_S to finish."""
    setup_logging("ingress", settings.log_level)
    policy = build_policy(settings)
    install_uvloop()

    async def main() -> None:
        await serve(create_app(settings, policy), settings)

    asyncio.run(main())
