"""Session-wide Redis-compatible server (a real one, started here) and per-test key prefixes."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from dam_cli.redis_server import EmbeddedServer
from dam_common.connection import ensure_groups, make_redis
from dam_common.scripts import LuaScripts
from dam_common.settings import CommonSettings
from tests.support.ports import free_port
from tests.support.stack_fixture import stack  # noqa: F401 - the e2e suites' fixture


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL if the environment gives one, else a server this session starts and stops."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = EmbeddedServer(free_port(), Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def settings(redis_url: str) -> CommonSettings:
    """Settings with a key prefix of this test's own, so tests never see each other's keys."""
    return CommonSettings(redis_url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:10]}:")


@pytest_asyncio.fixture
async def redis(settings: CommonSettings) -> AsyncIterator[Redis]:
    """A client of the session's server."""
    client = make_redis(settings.redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def scripts(redis: Redis, settings: CommonSettings) -> LuaScripts:
    """The scripts, loaded, with both consumer groups created."""
    facade = LuaScripts(redis, settings)
    await facade.load()
    await ensure_groups(redis, settings.keys)
    return facade
