"""Accept -> complete requests/s through the real admission script, dispatcher and worker
(their real classes, in one process) with an instant in-process backend, beside a bare Redis
Streams loop (XADD; XREADGROUP COUNT 100; XACK) on the same server, alternated and repeated.
Target ratio >= 0.10.

    .venv/bin/python load/bench_pipeline.py [--requests 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import machine, median, redis_server

from dam_common.connection import ensure_groups, make_redis
from dam_common.probes import Readiness
from dam_common.scripts import AdmitParams, LuaScripts
from dam_dispatcher.dispatch import Dispatcher
from dam_dispatcher.settings import DispatcherSettings
from dam_worker.settings import WorkerSettings
from dam_worker.worker import Worker

COMPLETION = {"id": "x", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}


class InstantBackend:
    """Answers at once: the benchmark measures the dam, not a model."""

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        return COMPLETION


async def dam_rate(url: str, n: int) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:6]}:"
    common = {"redis_url": url, "key_prefix": prefix}
    dsettings = DispatcherSettings(**common, dispatch_rate=0, dispatch_batch=200)
    wsettings = WorkerSettings(**common, worker_capacity=256, heartbeat_ttl_s=30)
    redis, blocking = make_redis(url), make_redis(url, socket_timeout=None)
    scripts = LuaScripts(redis, dsettings)
    await scripts.load()
    await ensure_groups(redis, dsettings.keys)
    dispatcher = Dispatcher(dsettings, redis, blocking, Readiness())
    worker = Worker(wsettings, redis, blocking, InstantBackend(), Readiness(), "bench-w")  # type: ignore[arg-type]
    params = AdmitParams(1e9, 10**9, 0, 1, 10**9, 2 * 10**9, 600_000)
    fields = {"body": '{"model":"m","messages":[]}', "ingress": "bench", "stream": "0"}
    tasks = [asyncio.create_task(dispatcher.run()), asyncio.create_task(worker.run())]
    started = time.perf_counter()
    for lo in range(0, n, 500):
        calls = [scripts.admit_call(f"c{i}", params, fields) for i in range(lo, min(n, lo + 500))]
        await scripts.call_many(calls)
    while int((await redis.hget(dsettings.keys.counters, "completed")) or 0) < n:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    rate = n / (time.perf_counter() - started)
    dispatcher.stop()
    worker.stop()
    await asyncio.wait(tasks, timeout=10)
    await redis.aclose()
    await blocking.aclose()
    return rate


async def bare_rate(url: str, n: int) -> float:
    redis = make_redis(url)
    stream = f"bench-bare-{uuid.uuid4().hex[:6]}"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    started = time.perf_counter()
    for lo in range(0, n, 500):
        pipe = redis.pipeline(transaction=False)
        for _ in range(lo, min(n, lo + 500)):
            pipe.xadd(stream, {"body": "x"})
        await pipe.execute()
    done = 0
    while done < n:
        resp = await redis.xreadgroup("g", "c", {stream: ">"}, count=100)
        ids = [eid for _, entries in resp for eid, _ in entries]
        await redis.xack(stream, "g", *ids)
        done += len(ids)
    rate = n / (time.perf_counter() - started)
    await redis.delete(stream)
    await redis.aclose()
    return rate


async def main(n: int, rounds: int) -> None:
    print(f"machine: {machine()}; {n} requests per run")
    with redis_server() as url:
        dam, bare = [], []
        for _ in range(rounds):
            dam.append(await dam_rate(url, n))
            bare.append(await bare_rate(url, n))
        d, b = median(dam), median(bare)
        print(f"dam accept->complete {d:>8.0f}/s  bare streams loop {b:>8.0f}/s  "
              f"ratio {d / b:.3f}  (runs: dam {[round(x) for x in dam]}, "
              f"bare {[round(x) for x in bare]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
