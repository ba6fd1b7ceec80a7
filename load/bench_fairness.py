"""Dispatch cost per request with 10 vs 10,000 tenants (deficit round robin).

Two cases per tenant count, each against the same embedded server, alternated and repeated:
- idle: N tenants have each sent (and been served) one request, then 10 tenants keep a
  backlog; what does dispatching cost now? (It must not grow with N: idle tenants leave the
  ring.)
- active: N tenants all have requests queued (weight 1 each); dispatch cost per request.
Measured: wall time of dispatch_entries.lua calls (batch 64, no rate limit, ample credits)
per dispatched request, in microseconds, from one client; and, as a figure a shared machine
cannot blur, the Redis commands those calls ran per dispatched request (INFO commandstats,
which counts the commands a script calls).

    .venv/bin/python load/bench_fairness.py [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import machine, median, redis_server
from redis.asyncio import Redis

from dam_common.connection import make_redis
from dam_common.scripts import AdmitParams, LuaScripts
from dam_common.settings import CommonSettings

FIELDS = {"body": '{"model":"m","messages":[{"role":"user","content":"hi"}]}', "ingress": "b",
          "stream": "0"}
BATCH = 64


def _params(tenant: str) -> AdmitParams:
    return AdmitParams(1e9, 10**9, 0, 1, 10**9, 2 * 10**9, 600_000, tenant=tenant)


async def _fill(scripts: LuaScripts, tenants: int, per_tenant: int) -> None:
    """Admit per_tenant requests for each of `tenants`, in pipelines of 500 calls."""
    calls = [scripts.admit_call(f"c{t}", _params(f"t{t}"), FIELDS)
             for _ in range(per_tenant) for t in range(tenants)]
    for i in range(0, len(calls), 500):
        await scripts.call_many(calls[i:i + 500])


async def _commands(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def _drain_timed(scripts: LuaScripts, redis: Redis, total: int) -> tuple[float, float]:
    """Dispatch `total` requests; (microseconds, Redis commands) per dispatched request."""
    moved = 0
    before = await _commands(redis)
    started = time.perf_counter()
    while moved < total:
        res = await scripts.dispatch(BATCH, 0, 1)
        moved += res.dispatched + res.expired
        if not res.dispatched and not res.expired and res.code.value == 3:
            break
    elapsed = time.perf_counter() - started
    commands = await _commands(redis) - before
    return elapsed / max(moved, 1) * 1e6, commands / max(moved, 1)


async def one_run(url: str, tenants: int, case: str, requests: int) -> tuple[float, float]:
    redis = make_redis(url, max_connections=8)
    settings = CommonSettings(redis_url=url, key_prefix=f"bench-fair-{uuid.uuid4().hex[:6]}:")
    scripts = LuaScripts(redis, settings)
    await scripts.load()
    await scripts.renew_lease("bench-w", 10**9, 3_600_000)
    try:
        if case == "idle":
            await _fill(scripts, tenants, 1)
            await _drain_timed(scripts, redis, tenants)  # all served once: idle now
            k = settings.keys  # as if those requests were settled: only idleness differs
            await redis.delete(k.work, k.inflight)
            await _fill(scripts, 10, requests // 10)
        else:
            await _fill(scripts, tenants, max(1, requests // tenants))
        total = await redis.xlen(settings.keys.intake)
        return await _drain_timed(scripts, redis, total)
    finally:
        async for key in redis.scan_iter(match=f"{settings.key_prefix}*", count=1000):
            await redis.unlink(key)
        await redis.aclose()


async def main(requests: int, rounds: int) -> None:
    print(f"machine: {machine()}; {requests} requests dispatched per run, batch {BATCH}")
    with redis_server() as url:
        for case in ("idle", "active"):
            results: dict[int, list[float]] = {10: [], 10_000: []}
            commands: dict[int, float] = {}
            for _ in range(rounds):  # alternated, so drift on a shared machine hits both
                for tenants in results:
                    us, cmds = await one_run(url, tenants, case, requests)
                    results[tenants].append(us)
                    commands[tenants] = cmds
            few, many = median(results[10]), median(results[10_000])
            print(f"{case:>6} tenants: 10 -> {few:6.1f} us/request, 10,000 -> {many:6.1f} "
                  f"us/request, ratio {many / few:.2f}; Redis commands/request "
                  f"{commands[10]:.2f} vs {commands[10_000]:.2f} (runs: "
                  f"{[round(x, 1) for x in results[10]]} vs "
                  f"{[round(x, 1) for x in results[10_000]]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
