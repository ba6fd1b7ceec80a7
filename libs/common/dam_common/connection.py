"""Redis clients with reconnect and backoff, and the idempotent creation of consumer groups."""

from __future__ import annotations

import logging

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dam_common.keys import WORK_GROUP, Keys

log = logging.getLogger(__name__)

TRANSIENT_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def make_redis(url: str, *, max_connections: int = 64, socket_timeout: float | None = 5.0,
               name: str = "dam") -> Redis:
    """A client that retries a command a few times on a dropped connection, with jitter.

    Its pool *waits* (up to 5 s) for a free connection when all are busy, instead of failing
    the command as redis-py's default pool does: a burst of admissions queues for a moment
    rather than turning into 503s. Services add their own outer loop with backoff for longer
    outages; `socket_timeout=None` is for clients that issue blocking reads (XREAD BLOCK).
    """
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5.0,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=15,
        client_name=name,
    )
    return Redis.from_pool(pool)


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and stream) unless it exists; only BUSYGROUP is ignored."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def ensure_groups(redis: Redis, keys: Keys) -> None:
    """The work stream's consumer group (intake is read by tenant, without a group)."""
    await ensure_group(redis, keys.work, WORK_GROUP)
