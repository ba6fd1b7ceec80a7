"""Aborting a generation whose client left: the ingress publishes the request id, the worker
holding it cancels the backend call (closing the connection is how an OpenAI-compatible
server such as vLLM learns to stop generating)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from dam_common.connection import TRANSIENT_REDIS_ERRORS

log = logging.getLogger(__name__)


async def listen_for_aborts(redis: Redis, channel: str, abort: Callable[[str], None],
                            stopping: asyncio.Event) -> None:
    """Call `abort(rid)` for every id published on `channel`, resubscribing after outages.

    Pub/sub delivers at most once: an abort lost to an outage only means the generation runs
    to its end, as it would without this.
    """
    backoff = 0.1
    while not stopping.is_set():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            backoff = 0.1
            while not stopping.is_set():
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and isinstance(message.get("data"), str):
                    abort(message["data"])
        except TRANSIENT_REDIS_ERRORS as exc:
            log.warning("abort channel unavailable", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
        finally:
            with contextlib.suppress(*TRANSIENT_REDIS_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
