"""LLM-token limits on a real server: a tenant's tokens-per-minute budget reserved at
admission and settled afterwards, and worker capacity counted in tokens."""

from __future__ import annotations

from redis.asyncio import Redis

from dam_common.codes import AdmitCode, DispatchCode
from dam_common.scripts import AdmitParams, LuaScripts
from dam_common.settings import CommonSettings
from tests.integration.helpers import T0

FIELDS = {"body": "{}", "ingress": "i1"}


def costing(cost: int, tpm: int = 1200, enforce: bool = True) -> AdmitParams:
    return AdmitParams(1000, 1000, 0, 1, 10_000, 20_000, 60_000, tenant="key:t",
                       tokens_per_minute=tpm, token_cost=cost, enforce_tokens=enforce)


async def test_admission_reserves_tokens_and_refuses_past_the_budget(scripts: LuaScripts,
                                                                    redis: Redis,
                                                                    settings: CommonSettings
                                                                    ) -> None:
    first = await scripts.admit("c1", costing(1000), FIELDS, T0)
    assert (first.code, first.tokens_left) == (AdmitCode.ADMITTED, 200)
    refused = await scripts.admit("c2", costing(500), FIELDS, T0)
    assert refused.code is AdmitCode.TOKENS_LIMITED
    assert refused.tokens_left == 200
    assert refused.retry_ms == 15_000  # 300 tokens at 20 tokens/s
    assert refused.tokens_reset_ms == 50_000  # 1000 tokens to a full bucket
    assert await redis.xlen(settings.keys.intake) == 1
    # The budget refills at tokens_per_minute / 60 per second.
    later = await scripts.admit("c3", costing(500), FIELDS, T0 + 15_000)
    assert later.code is AdmitCode.ADMITTED


async def test_settlement_refunds_unused_tokens_and_charges_overuse(scripts: LuaScripts,
                                                                    redis: Redis) -> None:
    await scripts.admit("c1", costing(1000), FIELDS, T0)
    # The backend reported 300 tokens used: 700 come back.
    name, keys, args = scripts.adjust_tokens_call("key:t", 700, 1200, T0)
    assert int(await scripts.call(name, keys, args)) == 900
    assert (await scripts.admit("c2", costing(900), FIELDS, T0)).code is AdmitCode.ADMITTED
    # A request that used more than it reserved takes the bucket below zero.
    name, keys, args = scripts.adjust_tokens_call("key:t", -300, 1200, T0)
    assert int(await scripts.call(name, keys, args)) == -300
    assert (await scripts.admit("c3", costing(1), FIELDS, T0)).code is AdmitCode.TOKENS_LIMITED


async def test_token_budget_in_shadow_mode_lets_through_and_counts(scripts: LuaScripts,
                                                                   redis: Redis,
                                                                   settings: CommonSettings
                                                                   ) -> None:
    await scripts.admit("c1", costing(1200, enforce=False), FIELDS, T0)
    over = await scripts.admit("c2", costing(600, enforce=False), FIELDS, T0)
    assert (over.code, over.shadowed) == (AdmitCode.ADMITTED, True)
    assert await redis.hget(settings.keys.counters, "shadow_tokens") == "1"


async def test_worker_token_capacity_bounds_what_is_in_flight(scripts: LuaScripts,
                                                              redis: Redis,
                                                              settings: CommonSettings) -> None:
    k = settings.keys
    for i in range(4):
        res = await scripts.admit(f"c{i}", costing(400, tpm=100_000), FIELDS, T0)
        assert res.code is AdmitCode.ADMITTED
    await scripts.renew_lease("w1", 100, 60_000, T0, token_capacity=1000)
    res = await scripts.dispatch(10, 0, 1, T0)
    assert (res.code, res.dispatched) == (DispatchCode.MOVED, 2)  # 800 of 1000 tokens
    assert (await scripts.dispatch(10, 0, 1, T0)).code is DispatchCode.NO_CREDITS
    wid, fields = (await redis.xrange(k.work))[0]
    await scripts.complete(wid, fields["rid"], "i1", "{}", T0)
    assert await redis.hlen(k.inflight_cost) == 1
    res = await scripts.dispatch(10, 0, 1, T0)
    assert (res.code, res.dispatched) == (DispatchCode.MOVED, 1)


async def test_one_request_larger_than_the_token_capacity_still_runs_alone(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    await scripts.admit("c1", costing(5000, tpm=100_000), FIELDS, T0)
    await scripts.renew_lease("w1", 4, 60_000, T0, token_capacity=1000)
    res = await scripts.dispatch(10, 0, 1, T0)
    assert (res.code, res.dispatched) == (DispatchCode.MOVED, 1)
