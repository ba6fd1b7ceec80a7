"""Crash every part of the dam under load and prove that nothing accepted is lost.

CI runs each scenario for DAM_CHAOS_DURATION_S (default 5 s); `make chaos` runs them for
minutes and prints each reconciliation table.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from dam_cli.redis_server import EmbeddedServer
from dam_common.connection import make_redis
from dam_common.keys import WORK_GROUP, Keys
from tests.chaos.harness import (
    LoadDriver,
    Outcome,
    Reconciliation,
    drain,
    every,
    reconcile,
    stats_of,
)
from tests.support.ports import free_port
from tests.support.stack import DamStack, Proc

pytestmark = pytest.mark.e2e

DURATION_S = float(os.environ.get("DAM_CHAOS_DURATION_S", "5"))
RATE = float(os.environ.get("DAM_CHAOS_RATE", "20"))
SERVICE_ENV = {"DAM_ANON_RATE": "100000", "DAM_ANON_BURST": "100000",
               "DAM_BACKLOG_CAP": "100000", "DAM_WAIT_TIMEOUT_S": "20",
               "DAM_DISPATCH_RATE": "0", "DAM_VISIBILITY_TIMEOUT_S": "1.5",
               "DAM_HEARTBEAT_TTL_S": "2", "DAM_SHUTDOWN_GRACE_S": "1",
               "DAM_LLM_TIMEOUT_S": "1.5", "DAM_LLM_BACKOFF_BASE_S": "0.05",
               "DAM_LLM_BACKOFF_MAX_S": "0.2", "DAM_QUEUE_DEADLINE_S": "300"}
MOCK_FLAGS = ("--ttft-ms", "100", "--tokens", "5", "--tokens-per-s", "50")


@dataclass
class Dam:
    """The processes of one chaos run."""

    stack: DamStack
    mock: Proc
    ingresses: list[Proc]
    dispatchers: list[Proc]
    workers: list[Proc]

    @property
    def keys(self) -> Keys:
        return Keys(prefix=self.stack.key_prefix)


def build(stack: DamStack, ingresses: int = 1, dispatchers: int = 1, workers: int = 2) -> Dam:
    stack.env.update(SERVICE_ENV)
    mock = stack.mock_llm(*MOCK_FLAGS)
    return Dam(stack, mock,
               [stack.ingress() for _ in range(ingresses)],
               [stack.dispatcher() for _ in range(dispatchers)],
               [stack.worker(mock, f"w{i}") for i in range(workers)])


@pytest_asyncio.fixture
async def chaos_redis(stack: DamStack) -> AsyncIterator[Redis]:
    client = make_redis(stack.redis_url)
    yield client
    await client.aclose()


async def _run(dam: Dam, redis: Redis, title: str, *chaos: Awaitable[None],
               stream_share: float = 0.3) -> tuple[Reconciliation, list[Outcome]]:
    """Load + chaos actions, then drain, then reconcile and print the table."""
    driver = LoadDriver(dam.ingresses, RATE, DURATION_S, stream_share)
    outcomes, *_ = await asyncio.gather(driver.run(), *chaos)
    assert all(o.rid for o in outcomes), "a client never got its request accepted"
    await drain(redis, dam.keys, [o.rid for o in outcomes if o.rid], timeout_s=30)
    rec = await reconcile(redis, dam.keys, outcomes, stats_of(dam.mock)["requests_total"])
    print("\n" + rec.table(title))
    return rec, outcomes


async def _assert_nothing_stuck(redis: Redis, keys: Keys) -> None:
    assert await redis.xlen(keys.intake) == 0
    assert await redis.xlen(keys.work) == 0
    assert (await redis.xpending(keys.work, WORK_GROUP))["pending"] == 0


def _kill_and_restart(stack: DamStack, pick: list[Proc],
                      pause_s: float = 0.3) -> Callable[[], Awaitable[None]]:
    async def action() -> None:
        proc = random.choice(pick)
        stack.kill(proc)
        await asyncio.sleep(pause_s)
        await asyncio.to_thread(stack.restart, proc)
    return action


async def test_workers_killed_mid_stream(stack: DamStack, chaos_redis: Redis) -> None:
    dam = build(stack)
    until = time.monotonic() + DURATION_S
    rec, _ = await _run(dam, chaos_redis, "kill -9 workers, repeatedly",
                     every(1.5, until, _kill_and_restart(stack, dam.workers)),
                     stream_share=0.6)
    assert rec.lost == [] and rec.duplicated == 0
    assert rec.completed == rec.accepted
    assert rec.llm_calls <= rec.accepted + rec.reclaimed + rec.requeued
    await _assert_nothing_stuck(chaos_redis, dam.keys)


async def test_dispatcher_killed(stack: DamStack, chaos_redis: Redis) -> None:
    dam = build(stack)
    until = time.monotonic() + DURATION_S
    rec, _ = await _run(dam, chaos_redis, "kill -9 the dispatcher, repeatedly",
                     every(1.0, until, _kill_and_restart(stack, dam.dispatchers)))
    assert rec.lost == [] and rec.duplicated == 0
    assert rec.completed == rec.accepted
    assert rec.llm_calls <= rec.accepted + rec.reclaimed + rec.requeued
    await _assert_nothing_stuck(chaos_redis, dam.keys)


async def test_ingress_killed_while_clients_wait(stack: DamStack, chaos_redis: Redis) -> None:
    dam = build(stack, ingresses=2)
    until = time.monotonic() + DURATION_S
    rec, _ = await _run(dam, chaos_redis, "kill -9 an ingress while clients wait",
                     every(1.5, until, _kill_and_restart(stack, dam.ingresses, pause_s=0.5)))
    assert rec.lost == [] and rec.duplicated == 0
    assert rec.completed == rec.accepted
    await _assert_nothing_stuck(chaos_redis, dam.keys)


async def test_competing_services_and_a_frozen_worker(stack: DamStack,
                                                      chaos_redis: Redis) -> None:
    dam = build(stack, dispatchers=2, workers=3)
    frozen = dam.workers[0]

    async def freeze() -> None:
        await asyncio.sleep(DURATION_S / 4)
        frozen.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(3.0)  # twice the visibility timeout: its entries get reclaimed
        frozen.process.send_signal(signal.SIGCONT)

    rec, _ = await _run(dam, chaos_redis, "2 dispatchers, 3 workers, one frozen past the timeout",
                     freeze())
    assert rec.lost == [] and rec.duplicated == 0
    assert rec.completed == rec.accepted
    await _assert_nothing_stuck(chaos_redis, dam.keys)


async def test_backend_flapping(stack: DamStack, chaos_redis: Redis) -> None:
    stack.env.update({"DAM_LLM_MAX_ATTEMPTS": "2", "DAM_MAX_DELIVERIES": "2"})
    dam = build(stack)

    def configure(**changes: object) -> None:
        import orjson
        req = urllib.request.Request(f"{dam.mock.url}/config", data=orjson.dumps(changes))
        urllib.request.urlopen(req, timeout=5).close()

    async def flap() -> None:
        await asyncio.sleep(DURATION_S / 5)
        await asyncio.to_thread(configure, error_rate=0.6, status=503)
        await asyncio.sleep(DURATION_S / 4)
        await asyncio.to_thread(configure, error_rate=0, ttft_ms=2500)  # beyond the call timeout
        await asyncio.sleep(DURATION_S / 4)
        await asyncio.to_thread(configure, ttft_ms=100)

    rec, _ = await _run(dam, chaos_redis, "backend flapping: error bursts, then too slow", flap(),
                     stream_share=0.0)
    assert rec.lost == [] and rec.duplicated == 0
    assert rec.completed + rec.failed == rec.accepted
    assert await chaos_redis.xlen(dam.keys.dlq) == rec.failed
    assert rec.llm_calls <= rec.accepted * 2 * 2  # attempts x deliveries, nothing unbounded
    await _assert_nothing_stuck(chaos_redis, dam.keys)


@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_redis_killed_and_restarted(fsync: str, tmp_path: Path,
                                          stack: DamStack) -> None:
    server = EmbeddedServer(free_port(), tmp_path / "redis", appendfsync=fsync)
    server.start()
    stack.redis_url = server.url
    redis = make_redis(server.url)
    killed_at: list[float] = []

    async def crash() -> None:
        await asyncio.sleep(DURATION_S / 2)
        killed_at.append(time.time())
        server.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)

    try:
        dam = build(stack)
        rec, outcomes = await _run(dam, redis, f"Redis kill -9 + restart, appendfsync {fsync}",
                                   crash())
        assert rec.duplicated == 0
        if fsync == "always":
            assert rec.lost == []
        else:  # everysec may lose what was accepted in the last second before the crash
            accepted_at = {o.rid: o.accepted_at for o in outcomes}
            late = [rid for rid in rec.lost
                    if not killed_at[0] - 2.0 <= accepted_at[rid] <= killed_at[0] + 0.5]
            assert late == []
        assert rec.completed + len(rec.lost) == rec.accepted
        await _assert_nothing_stuck(redis, dam.keys)
    finally:
        stack.stop_all()
        await redis.aclose()
        server.stop()
