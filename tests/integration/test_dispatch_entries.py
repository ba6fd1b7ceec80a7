"""dispatch_entries.lua: credits derived from leases and the work stream, rate, expiry."""

from __future__ import annotations

from redis.asyncio import Redis

from dam_common.codes import DispatchCode
from dam_common.scripts import LuaScripts
from dam_common.settings import CommonSettings
from tests.integration.helpers import T0, admit_n


async def test_no_live_worker_means_no_credits(scripts: LuaScripts, redis: Redis,
                                               settings: CommonSettings) -> None:
    await admit_n(scripts, 3)
    res = await scripts.dispatch(10, 0, 1, T0)
    assert res.code is DispatchCode.NO_CREDITS
    assert await redis.xlen(settings.keys.intake) == 3


async def test_moves_only_as_many_as_free_slots(scripts: LuaScripts, redis: Redis,
                                                settings: CommonSettings) -> None:
    k = settings.keys
    rids = await admit_n(scripts, 5)
    await scripts.renew_lease("w1", 3, 10_000, T0)
    res = await scripts.dispatch(10, 0, 1, T0)
    assert (res.code, res.dispatched, res.credits_left) == (DispatchCode.MOVED, 3, 0)
    assert await redis.xlen(k.intake) == 2
    assert await redis.xlen(k.work) == 3
    moved = [f["rid"] for _, f in await redis.xrange(k.work)]
    assert moved == rids[:3]  # FIFO
    assert (await scripts.dispatch(10, 0, 1, T0)).code is DispatchCode.NO_CREDITS


async def test_completed_work_frees_credits(scripts: LuaScripts, redis: Redis,
                                            settings: CommonSettings) -> None:
    await admit_n(scripts, 2)
    await scripts.renew_lease("w1", 1, 10_000, T0)
    await scripts.dispatch(10, 0, 1, T0)
    [(wid, fields)] = await redis.xrange(settings.keys.work)
    await scripts.complete(wid, fields["rid"], "i1", "{}", T0)
    res = await scripts.dispatch(10, 0, 1, T0)
    assert (res.code, res.dispatched) == (DispatchCode.MOVED, 1)


async def test_lapsed_lease_takes_its_capacity_away(scripts: LuaScripts, redis: Redis,
                                                    settings: CommonSettings) -> None:
    await admit_n(scripts, 2)
    await scripts.renew_lease("w1", 4, 100, T0)
    res = await scripts.dispatch(10, 0, 1, T0 + 200)
    assert res.code is DispatchCode.NO_CREDITS
    assert await redis.hgetall(settings.keys.worker_capacity) == {}


async def test_dispatch_rate_spaces_entries(scripts: LuaScripts) -> None:
    await admit_n(scripts, 5)
    await scripts.renew_lease("w1", 10, 60_000, T0)
    first = await scripts.dispatch(10, 10, 1, T0)
    held = await scripts.dispatch(10, 10, 1, T0 + 40)
    later = await scripts.dispatch(10, 10, 1, T0 + 100)
    assert (first.code, first.dispatched) == (DispatchCode.MOVED, 1)
    assert (held.code, held.wait_ms) == (DispatchCode.RATE_LIMITED, 60)
    assert (later.code, later.dispatched) == (DispatchCode.MOVED, 1)


async def test_past_deadline_entries_expire_instead_of_dispatching(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    k = settings.keys
    [rid] = await admit_n(scripts, 1, deadline_ms=1000)
    await scripts.renew_lease("w1", 4, 60_000, T0 + 5000)
    res = await scripts.dispatch(10, 0, 1, T0 + 5000)
    assert (res.dispatched, res.expired) == (0, 1)
    assert await redis.xlen(k.work) == 0
    assert await redis.xlen(k.intake) == 0
    assert (await redis.hgetall(k.request(rid)))["status"] == "expired"
    [(_, reply)] = await redis.xrange(k.reply("i1"))
    assert reply == {"rid": rid, "kind": "expired"}


async def test_dispatched_request_is_recorded_running(scripts: LuaScripts, redis: Redis,
                                                      settings: CommonSettings) -> None:
    [rid] = await admit_n(scripts, 1)
    await scripts.renew_lease("w1", 1, 60_000, T0)
    await scripts.dispatch(10, 0, 1, T0)
    record = await redis.hgetall(settings.keys.request(rid))
    assert record["status"] == "running"
    assert 0 < await redis.pttl(settings.keys.request(rid)) <= settings.result_ttl_ms


async def test_empty_intake_says_so(scripts: LuaScripts) -> None:
    await scripts.renew_lease("w1", 1, 60_000, T0)
    assert (await scripts.dispatch(10, 0, 1, T0)).code is DispatchCode.EMPTY


async def test_two_dispatchers_never_exceed_credits(scripts: LuaScripts, redis: Redis,
                                                    settings: CommonSettings) -> None:
    await admit_n(scripts, 10)
    await scripts.renew_lease("w1", 4, 60_000, T0)
    a = await scripts.dispatch(10, 0, 1, T0)
    b = await scripts.dispatch(10, 0, 1, T0)
    assert a.dispatched + b.dispatched == 4
    assert await redis.xlen(settings.keys.work) == 4


async def test_no_sliding_second_holds_more_than_the_rate_whatever_the_burst(
        scripts: LuaScripts) -> None:
    await admit_n(scripts, 20)
    await scripts.renew_lease("w1", 100, 60_000, T0)
    first = await scripts.dispatch(100, 5, 100, T0)
    held = await scripts.dispatch(100, 5, 100, T0 + 500)
    later = await scripts.dispatch(100, 5, 100, T0 + 1001)
    assert (first.code, first.dispatched) == (DispatchCode.MOVED, 5)  # the burst is capped
    assert (held.code, held.wait_ms) == (DispatchCode.RATE_LIMITED, 501)
    assert (later.code, later.dispatched) == (DispatchCode.MOVED, 5)
