"""Invariant 6 (trimming never drops an unacknowledged entry) and bounded Redis memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
from redis.asyncio import Redis

from dam_common.codes import AdmitCode
from dam_common.connection import ensure_groups
from dam_common.keys import WORK_GROUP
from dam_common.scripts import AdmitParams, LuaScripts
from dam_common.settings import CommonSettings

FIELDS = {"body": "{}", "ingress": "i1", "stream": "0"}


@pytest_asyncio.fixture
async def small_stream_nodes(redis: Redis) -> AsyncIterator[None]:
    """Tiny radix-tree nodes, so that MAXLEN ~ would really trim at these sizes."""
    old = (await redis.config_get("stream-node-max-entries"))["stream-node-max-entries"]
    await redis.config_set("stream-node-max-entries", 4)
    yield
    await redis.config_set("stream-node-max-entries", old)


async def _settle_all(scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    while True:
        resp = await redis.xreadgroup(WORK_GROUP, "w1", {settings.keys.work: ">"}, count=500)
        if not resp:
            return
        for entry_id, fields in resp[0][1]:
            await scripts.complete(entry_id, fields["rid"], "i1", "{}")


async def test_filling_past_the_cap_with_work_pending_loses_nothing(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings,
        small_stream_nodes: None) -> None:
    k = settings.keys
    params = AdmitParams(10_000, 10_000, 0, 1, backlog_cap=20, stream_maxlen=21,
                         deadline_ms=600_000)
    await scripts.renew_lease("w1", 10, 600_000)
    admitted: list[str] = []
    for _ in range(8):
        for _ in range(30):  # 10 more than the cap: those are refused, not trimmed
            res = await scripts.admit("c", params, FIELDS)
            if res.code is AdmitCode.ADMITTED:
                admitted.append(res.rid)
        await scripts.dispatch(100, 0, 1)  # 10 move to work and stay pending there
        in_intake = {eid for eid, _ in await redis.xrange(k.intake)}
        in_work = {f["rid"] for _, f in await redis.xrange(k.work)}
        completed = {rid for rid in admitted
                     if await redis.hget(k.request(rid), "status") == "completed"}
        assert set(admitted) == in_intake | in_work | completed
        await _settle_all(scripts, redis, settings)
    assert len(admitted) == 20 + 7 * 10


async def test_redis_memory_stays_flat_over_many_cycles(redis: Redis, redis_url: str) -> None:
    settings = CommonSettings(redis_url=redis_url, key_prefix="memtest:", result_ttl_s=0.5,
                              reply_ttl_s=0.5)
    scripts = LuaScripts(redis, settings)
    await scripts.load()
    await ensure_groups(redis, settings.keys)
    params = AdmitParams(100_000, 100_000, 0, 1, 10_000, 20_000, 600_000)
    await scripts.renew_lease("w1", 100_000, 600_000)

    async def cycle() -> None:
        for _ in range(2000):
            await scripts.admit("c", params, FIELDS)
        while (await scripts.dispatch(500, 0, 1)).dispatched:
            pass
        await _settle_all(scripts, redis, settings)
        await asyncio.sleep(1.5)  # records and reply streams expire

    await cycle()
    warm = (await redis.info("memory"))["used_memory"]
    for _ in range(5):
        await cycle()
    after = (await redis.info("memory"))["used_memory"]
    assert after <= warm * 1.10 + 256 * 1024, (warm, after)
    assert await redis.xlen(settings.keys.intake) == 0
    assert await redis.xlen(settings.keys.work) == 0


async def test_commands_packed_by_hiredis_round_trip_every_argument_type(redis: Redis) -> None:
    """make_redis packs with hiredis: text, bytes, ints, floats and views arrive intact."""
    await redis.rpush("pack-check", "ü", b"\x00ok", 7, 2.5, memoryview(b"mv"),
                      bytearray(b"ba"))
    assert await redis.lrange("pack-check", 0, -1) == ["ü", "\x00ok", "7", "2.5", "mv", "ba"]
    await redis.delete("pack-check")
