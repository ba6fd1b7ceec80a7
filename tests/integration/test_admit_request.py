"""admit_request.lua against a real server, with time passed in explicitly."""

from __future__ import annotations

from redis.asyncio import Redis

from dam_common.codes import AdmitCode
from dam_common.scripts import AdmitParams, LuaScripts
from dam_common.settings import CommonSettings

T0 = 1_700_000_000_000
FIELDS = {"body": "{}", "ingress": "i1", "client": "c", "stream": "0"}


def params(rate: float = 10, burst: int = 5, intake_rate: float = 0, intake_burst: int = 1,
           cap: int = 100) -> AdmitParams:
    return AdmitParams(rate, burst, intake_rate, intake_burst, cap, cap * 2, 60_000)


async def test_burst_is_admitted_then_client_gets_retry_time(scripts: LuaScripts) -> None:
    results = [await scripts.admit("c1", params(rate=10, burst=5), FIELDS, T0) for _ in range(6)]
    assert [r.code for r in results[:5]] == [AdmitCode.ADMITTED] * 5
    assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
    assert results[5].code is AdmitCode.RATE_LIMITED
    assert results[5].retry_ms == 100  # one token at 10/s
    assert results[5].reset_ms == 500  # five tokens to full


async def test_bucket_refills_at_its_rate(scripts: LuaScripts) -> None:
    for _ in range(5):
        await scripts.admit("c1", params(), FIELDS, T0)
    later = [await scripts.admit("c1", params(), FIELDS, T0 + 250) for _ in range(3)]
    assert [r.code for r in later] == [AdmitCode.ADMITTED, AdmitCode.ADMITTED,
                                       AdmitCode.RATE_LIMITED]


async def test_clients_have_separate_buckets(scripts: LuaScripts) -> None:
    for _ in range(5):
        await scripts.admit("c1", params(), FIELDS, T0)
    assert (await scripts.admit("c1", params(), FIELDS, T0)).code is AdmitCode.RATE_LIMITED
    assert (await scripts.admit("c2", params(), FIELDS, T0)).code is AdmitCode.ADMITTED


async def test_rejection_leaves_no_trace(scripts: LuaScripts, redis: Redis,
                                         settings: CommonSettings) -> None:
    k = settings.keys
    for _ in range(5):
        await scripts.admit("c1", params(), FIELDS, T0)
    bucket_before = await redis.hgetall(k.client_bucket("c1"))
    rejected = await scripts.admit("c1", params(), FIELDS, T0 + 10)
    assert rejected.code is AdmitCode.RATE_LIMITED
    assert await redis.xlen(k.intake) == 5
    assert await redis.hgetall(k.client_bucket("c1")) == bucket_before


async def test_full_backlog_rejects_without_charging_the_client(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    for i in range(3):
        assert (await scripts.admit(f"c{i}", params(cap=3), FIELDS, T0)).code is AdmitCode.ADMITTED
    full = await scripts.admit("c9", params(cap=3), FIELDS, T0)
    assert full.code is AdmitCode.BACKLOG_FULL
    assert full.backlog == 3
    assert await redis.xlen(settings.keys.intake) == 3
    assert not await redis.exists(settings.keys.client_bucket("c9"))


async def test_full_backlog_reports_the_last_second_drain_rate(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    sec = T0 // 1000
    await redis.hset(settings.keys.drain_window, mapping={"w": sec - 1, "c": 42, "p": 7})
    await scripts.admit("c1", params(cap=1), FIELDS, T0)
    full = await scripts.admit("c2", params(cap=1), FIELDS, T0)
    assert (full.code, full.drain_per_s) == (AdmitCode.BACKLOG_FULL, 42)


async def test_global_intake_bucket_limits_all_clients_together(scripts: LuaScripts) -> None:
    p = params(intake_rate=2, intake_burst=2)
    codes = [(await scripts.admit(f"c{i}", p, FIELDS, T0)).code for i in range(3)]
    assert codes == [AdmitCode.ADMITTED, AdmitCode.ADMITTED, AdmitCode.INTAKE_RATE]


async def test_admitted_entry_carries_fields_clock_and_deadline(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    result = await scripts.admit("c1", params(), FIELDS, T0)
    [(entry_id, fields)] = await redis.xrange(settings.keys.intake)
    assert entry_id == result.rid
    assert fields["accepted_ms"] == str(T0)
    assert fields["deadline_ms"] == str(T0 + 60_000)
    assert fields["ingress"] == "i1"


async def test_server_clock_is_used_when_no_time_is_given(scripts: LuaScripts, redis: Redis,
                                                         settings: CommonSettings) -> None:
    sec, _ = await redis.time()
    result = await scripts.admit("c1", params(), FIELDS)
    [(_, fields)] = await redis.xrange(settings.keys.intake)
    assert result.code is AdmitCode.ADMITTED
    assert abs(int(fields["accepted_ms"]) // 1000 - sec) <= 1


async def test_repeated_idempotency_key_returns_the_original_and_enqueues_nothing(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    p = AdmitParams(10, 5, 0, 1, 100, 200, 60_000, idempotency_ttl_ms=10_000)
    first = await scripts.admit("c1", p, FIELDS, T0, idempotency_digest="k1")
    again = await scripts.admit("c1", p, FIELDS, T0 + 5, idempotency_digest="k1")
    other_client = await scripts.admit("c2", p, FIELDS, T0 + 5, idempotency_digest="k1")
    assert (again.code, again.rid) == (AdmitCode.DUPLICATE, first.rid)
    assert other_client.code is AdmitCode.ADMITTED and other_client.rid != first.rid
    assert await redis.xlen(settings.keys.intake) == 2
    bucket = await redis.hgetall(settings.keys.client_bucket("c1"))
    assert float(bucket["tokens"]) == 4  # the repeat was not charged
    assert 0 < await redis.pttl(settings.keys.idempotency("c1", "k1")) <= 10_000


async def test_shadow_mode_lets_an_over_rate_request_through_and_says_so(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    shadow = AdmitParams(10, 1, 0, 1, 100, 200, 60_000, enforce=False)
    first = await scripts.admit("c1", shadow, FIELDS, T0)
    over = await scripts.admit("c1", shadow, FIELDS, T0)
    assert (first.code, first.shadowed) == (AdmitCode.ADMITTED, False)
    assert (over.code, over.shadowed) == (AdmitCode.ADMITTED, True)
    assert await redis.xlen(settings.keys.intake) == 2
    assert (await redis.hgetall(settings.keys.counters))["shadow_rate"] == "1"
    enforced = await scripts.admit("c1", params(rate=10, burst=1), FIELDS, T0)
    assert enforced.code is AdmitCode.RATE_LIMITED  # the same bucket, enforced, refuses


async def test_open_circuit_refuses_admission_and_enqueues_nothing(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    await redis.set(settings.keys.circuit, "open", px=4000)
    res = await scripts.admit("c1", params(), FIELDS, T0)
    assert res.code is AdmitCode.CIRCUIT_OPEN and 0 < res.retry_ms <= 4000
    assert await redis.xlen(settings.keys.intake) == 0


async def test_queued_request_learns_its_eta_from_the_drain_rate(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    await redis.hset(settings.keys.drain_window, mapping={"w": T0 // 1000 - 1, "c": 20, "p": 0})
    for i in range(9):
        await scripts.admit(f"c{i}", params(), FIELDS, T0)
    res = await scripts.admit("late", params(), FIELDS, T0)
    assert res.backlog == 9
    pos = await scripts.position(res.rid, T0)
    assert pos is not None
    assert (pos.position, pos.drain_per_s, pos.eta_s) == (9, 20, 0.5)  # 10th at 20/s
