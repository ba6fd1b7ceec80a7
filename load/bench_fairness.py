"""Dispatch cost per request with 10 vs 10,000 tenants (deficit round robin).

Two cases per tenant count, each against the same embedded server, alternated and repeated:
- idle: N tenants have each sent (and been served) one request, then 10 tenants keep a
  backlog; what does dispatching cost now? (It must not grow with N: idle tenants leave the
  ring.)
- active: N tenants all have requests queued (weight 1 each); dispatch cost per request.
Measured: wall time of dispatch_entries.lua calls (batch 64, no rate limit, ample credits)
per dispatched request, in microseconds, from one client.

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


async def _drain_timed(scripts: LuaScripts, total: int) -> float:
    """Dispatch `total` requests; microseconds per dispatched request."""
    moved = 0
    started = time.perf_counter()
    while moved < total:
        res = await scripts.dispatch(BATCH, 0, 1)
        moved += res.dispatched + res.expired
        if not res.dispatched and not res.expired and res.code.value == 3:
            break
    elapsed = time.perf_counter() - started
    return elapsed / max(moved, 1) * 1e6


async def one_run(url: str, tenants: int, case: str, requests: int) -> float:
    redis = make_redis(url, max_connections=8)
    settings = CommonSettings(redis_url=url, key_prefix=f"bench-fair-{uuid.uuid4().hex[:6]}:")
    scripts = LuaScripts(redis, settings)
    await scripts.load()
    await scripts.renew_lease("bench-w", 10**9, 3_600_000)
    try:
        if case == "idle":
            await _fill(scripts, tenants, 1)
            await _drain_timed(scripts, tenants)  # every tenant has been served: all idle now
            await _fill(scripts, 10, requests // 10)
        else:
            await _fill(scripts, tenants, max(1, requests // tenants))
        total = await redis.xlen(settings.keys.intake)
        return await _drain_timed(scripts, total)
    finally:
        async for key in redis.scan_iter(match=f"{settings.key_prefix}*", count=1000):
            await redis.unlink(key)
        await redis.aclose()


async def main(requests: int, rounds: int) -> None:
    print(f"machine: {machine()}; {requests} requests dispatched per run, batch {BATCH}")
    with redis_server() as url:
        for case in ("idle", "active"):
            results: dict[int, list[float]] = {10: [], 10_000: []}
            for _ in range(rounds):  # alternated, so drift on a shared machine hits both
                for tenants in results:
                    results[tenants].append(await one_run(url, tenants, case, requests))
            few, many = median(results[10]), median(results[10_000])
            print(f"{case:>6} tenants: 10 -> {few:6.1f} us/request, 10,000 -> {many:6.1f} "
                  f"us/request, ratio {many / few:.2f} (runs: "
                  f"{[round(x, 1) for x in results[10]]} vs "
                  f"{[round(x, 1) for x in results[10_000]]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
