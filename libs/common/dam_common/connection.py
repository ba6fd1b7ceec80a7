"""Redis clients with reconnect and backoff, and the idempotent creation of consumer groups."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dam_common.keys import INTAKE_GROUP, WORK_GROUP, Keys

log = logging.getLogger(__name__)

TRANSIENT_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def make_redis(url: str, *, max_connections: int = 64, socket_timeout: float | None = 5.0,
               name: str = "dam") -> Redis:
    """A client that retries a command a few times on a dropped connection, with jitter.

    Services add their own outer loop with backoff for longer outages (see each service's run
    loop); this covers the blip of a reconnect. `socket_timeout=None` is for clients that issue
    blocking reads (XREAD BLOCK), whose replies may take longer than any fixed timeout.
    """
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3)
    return Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=15,
        client_name=name,
    )


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and stream) unless it exists; only BUSYGROUP is ignored."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def ensure_groups(redis: Redis, keys: Keys) -> None:
    """Both consumer groups of a pipeline."""
    await ensure_group(redis, keys.intake, INTAKE_GROUP)
    await ensure_group(redis, keys.work, WORK_GROUP)
