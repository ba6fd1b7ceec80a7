"""Redis clients with reconnect and backoff, and the idempotent creation of consumer groups."""

from __future__ import annotations

import logging
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
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
    pool.connection_class = hiredis_packing(pool.connection_class)
    return Redis.from_pool(pool)


def hiredis_packing(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """`cls` packing commands with hiredis's C packer.

    redis-py's synchronous client packs with hiredis when it is installed; its asyncio client
    packs in Python, and with the admission script's two dozen arguments that packing was the
    largest cost of the ingress's admission path (about 60% of its CPU in a profile).
    """
    class HiredisPacked(cls):  # type: ignore[valid-type,misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            first = args[0]
            if isinstance(first, str):  # e.g. "CLIENT SETNAME": the server wants two words
                args = (*first.encode().split(), *args[1:])
            elif b" " in first:
                args = (*first.split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError:  # hiredis takes no bytearray / memoryview: convert, or refuse
                args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a
                             for a in args)
            try:
                return [hiredis.pack_command(args)]
            except TypeError as exc:
                raise DataError(str(exc)) from exc

    HiredisPacked.__name__ = HiredisPacked.__qualname__ = f"HiredisPacked{cls.__name__}"
    return HiredisPacked


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
