"""complete_request.lua, fail_entry.lua, claim_stale.lua, replay_dead_letter.lua,
renew_lease.lua: each settles an entry exactly once."""

from __future__ import annotations

from redis.asyncio import Redis

from dam_common.codes import FailCode, FailMode
from dam_common.keys import WORK_GROUP
from dam_common.scripts import LuaScripts
from dam_common.settings import CommonSettings
from tests.integration.helpers import T0, admit_n


async def _one_in_work(scripts: LuaScripts, redis: Redis, settings: CommonSettings,
                       consumer: str = "w1") -> tuple[str, str]:
    """Admit, dispatch and read one entry as `consumer`; returns (work id, rid)."""
    [rid] = await admit_n(scripts, 1)
    await scripts.renew_lease(consumer, 1, 60_000, T0)
    await scripts.dispatch(10, 0, 1, T0)
    [[_, [(wid, _)]]] = await redis.xreadgroup(WORK_GROUP, consumer, {settings.keys.work: ">"})
    return wid, rid


async def test_completion_records_result_acks_and_wakes_ingress(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    k = settings.keys
    wid, rid = await _one_in_work(scripts, redis, settings)
    assert await scripts.complete(wid, rid, "i1", '{"ok": 1}', T0) is True
    assert (await redis.hgetall(k.request(rid)))["status"] == "completed"
    assert await redis.xlen(k.work) == 0
    assert (await redis.xpending(k.work, WORK_GROUP))["pending"] == 0
    [(_, reply)] = await redis.xrange(k.reply("i1"))
    assert reply == {"rid": rid, "kind": "completed", "data": '{"ok": 1}'}


async def test_second_completion_changes_nothing(scripts: LuaScripts, redis: Redis,
                                                 settings: CommonSettings) -> None:
    k = settings.keys
    wid, rid = await _one_in_work(scripts, redis, settings)
    await scripts.complete(wid, rid, "i1", '"first"', T0)
    assert await scripts.complete(wid, rid, "i1", '"second"', T0) is False
    assert (await redis.hgetall(k.request(rid)))["result"] == '"first"'
    assert await redis.xlen(k.reply("i1")) == 1


async def test_retry_requeues_until_max_deliveries_then_dead_letters(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    k = settings.keys
    wid, rid = await _one_in_work(scripts, redis, settings)
    first = await scripts.fail(wid, rid, "i1", FailMode.RETRY, "boom 1", 2, T0)
    assert first.code is FailCode.REQUEUED
    [(wid2, fields)] = await redis.xrange(k.work)
    assert (wid2, fields["deliveries"], fields["rid"]) == (first.entry_id, "1", rid)
    await redis.xreadgroup(WORK_GROUP, "w1", {k.work: ">"})
    second = await scripts.fail(wid2, rid, "i1", FailMode.RETRY, "boom 2", 2, T0)
    assert second.code is FailCode.DEAD_LETTERED
    assert await redis.xlen(k.work) == 0
    [(dlq_id, dead)] = await redis.xrange(k.dlq)
    assert (dlq_id, dead["last_error"], dead["deliveries"]) == (second.entry_id, "boom 2", "2")
    record = await redis.hgetall(k.request(rid))
    assert (record["status"], record["error"]) == ("failed", "boom 2")
    assert await redis.hlen(k.inflight) == 0


async def test_handback_does_not_count_a_delivery(scripts: LuaScripts, redis: Redis,
                                                  settings: CommonSettings) -> None:
    wid, rid = await _one_in_work(scripts, redis, settings)
    res = await scripts.fail(wid, rid, "i1", FailMode.HANDBACK, "shutdown", 1, T0)
    assert res.code is FailCode.REQUEUED
    [(_, fields)] = await redis.xrange(settings.keys.work)
    assert fields["deliveries"] == "0"


async def test_failing_a_terminal_request_only_acknowledges(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    wid, rid = await _one_in_work(scripts, redis, settings)
    await redis.hset(settings.keys.request(rid), "status", "completed")
    res = await scripts.fail(wid, rid, "i1", FailMode.BURY, "late", 1, T0)
    assert res.code is FailCode.ALREADY_TERMINAL
    assert await redis.xlen(settings.keys.dlq) == 0


async def test_stale_entry_is_claimed_with_its_delivery_count(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    wid, _ = await _one_in_work(scripts, redis, settings, consumer="dead")
    res = await scripts.claim_stale("alive", 0, "0-0", 10, T0)
    assert res.cursor == "0-0"
    assert [(c.entry_id, c.deliveries) for c in res.claimed] == [(wid, 2)]
    info = await redis.xpending_range(settings.keys.work, WORK_GROUP, "-", "+", 10)
    assert info[0]["consumer"] == "alive"


async def test_recently_active_entry_is_not_claimed(scripts: LuaScripts, redis: Redis,
                                                    settings: CommonSettings) -> None:
    await _one_in_work(scripts, redis, settings, consumer="busy")
    res = await scripts.claim_stale("other", 60_000, "0-0", 10, T0)
    assert res.claimed == []


async def test_vanished_pending_entry_is_recorded_failed(scripts: LuaScripts, redis: Redis,
                                                         settings: CommonSettings) -> None:
    k = settings.keys
    wid, rid = await _one_in_work(scripts, redis, settings, consumer="dead")
    await redis.xdel(k.work, wid)  # what an outside trim or a careless operator would do
    res = await scripts.claim_stale("alive", 0, "0-0", 10, T0)
    assert (res.claimed, res.vanished) == ([], 1)
    record = await redis.hgetall(k.request(rid))
    assert record["status"] == "failed"
    assert "vanished" in record["error"]


async def test_replay_moves_dead_letter_back_to_intake(scripts: LuaScripts, redis: Redis,
                                                       settings: CommonSettings) -> None:
    k = settings.keys
    wid, rid = await _one_in_work(scripts, redis, settings)
    dead = await scripts.fail(wid, rid, "i1", FailMode.BURY, "bad", 3, T0)
    new_id = await scripts.replay(dead.entry_id, rid, T0 + 60_000, T0)
    assert new_id is not None
    assert await redis.xlen(k.dlq) == 0
    [(intake_id, fields)] = await redis.xrange(k.intake)
    assert (intake_id, fields["rid"], fields["deadline_ms"]) == (new_id, rid, str(T0 + 60_000))
    assert "deliveries" not in fields
    assert (await redis.hgetall(k.request(rid)))["status"] == "queued"
    assert await scripts.replay(dead.entry_id, rid, T0, T0) is None


async def test_lease_renewal_and_removal(scripts: LuaScripts, redis: Redis,
                                         settings: CommonSettings) -> None:
    k = settings.keys
    assert await scripts.renew_lease("w1", 4, 5000, T0) == T0 + 5000
    assert await redis.hget(k.worker_capacity, "w1") == "4"
    assert await scripts.renew_lease("w1", 0, 0, T0) == 0
    assert await redis.zcard(k.worker_leases) == 0


async def test_circuit_opens_after_consecutive_failures_and_closes_on_success(
        scripts: LuaScripts, redis: Redis, settings: CommonSettings) -> None:
    k = settings.keys
    assert [await scripts.record_backend_outcome(False, 3, 5000) for _ in range(3)] == [
        False, False, True]
    assert 0 < await redis.pttl(k.circuit) <= 5000
    assert await scripts.record_backend_outcome(True, 3, 5000) is False
    assert not await redis.exists(k.circuit)
