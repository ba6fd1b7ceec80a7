"""Admissions/s of the dam's admission path (one script per request, batched per loop tick)
beside the `limits` library's moving-window limiter on async Redis, same process, same server,
1 hot key and 10,000 keys, alternated and repeated. Target: >= 2x `limits` in both.

    .venv/bin/python load/bench_admission.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import machine, median, redis_server

from dam_common.connection import make_redis
from dam_common.scripts import AdmitParams, LuaScripts
from dam_common.settings import CommonSettings
from dam_ingress.admission import AdmissionBatcher

CONCURRENCY = 256
FIELDS = {"body": '{"model":"m","messages":[{"role":"user","content":"hi"}]}', "ingress": "b",
          "stream": "0"}


async def _drive(op: Callable[[int], Awaitable[object]], seconds: float) -> float:
    """Run `op` from CONCURRENCY coroutines for `seconds`; returns operations/s."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < deadline:
            await op(i)
            done += 1
            i += CONCURRENCY

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


async def dam_rate(url: str, keys: int, seconds: float) -> float:
    redis = make_redis(url, max_connections=64)
    settings = CommonSettings(redis_url=url, key_prefix="bench-dam:")
    scripts = LuaScripts(redis, settings)
    await scripts.load()
    batcher = AdmissionBatcher(scripts)
    params = AdmitParams(1e9, 10**9, 0, 1, 10**9, 2 * 10**9, 600_000)
    try:
        return await _drive(lambda i: batcher.admit(f"c{i % keys}", params, FIELDS), seconds)
    finally:
        k = settings.keys
        await redis.delete(k.intake, k.tenant_queue("default", 0), k.sched_ring,
                           k.sched_tenants)
        await redis.aclose()


async def limits_rate(url: str, keys: int, seconds: float) -> float:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = RedisStorage(url.replace("redis://", "async+redis://"), implementation="redispy",
                           max_connections=CONCURRENCY + 8)
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(10**6)
    return await _drive(lambda i: limiter.hit(item, "bench", f"c{i % keys}"), seconds)


async def main(seconds: float, rounds: int) -> None:
    print(f"machine: {machine()}; {CONCURRENCY} concurrent callers, {seconds:g} s per run")
    with redis_server() as url:
        for keys in (1, 10_000):
            dam, lim = [], []
            for _ in range(rounds):  # alternated, so drift on a shared machine hits both
                dam.append(await dam_rate(url, keys, seconds))
                lim.append(await limits_rate(url, keys, seconds))
            d, m = median(dam), median(lim)
            print(f"{keys:>6} key(s): dam {d:>8.0f}/s  limits {m:>8.0f}/s  ratio {d / m:.2f}x  "
                  f"(runs: dam {[round(x) for x in dam]}, limits {[round(x) for x in lim]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
