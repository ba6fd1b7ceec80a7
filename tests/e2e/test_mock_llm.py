"""The mock backend fails the way real ones do: limited slots, a queue that costs memory and
latency, and an OOM-like exit when the queue grows too long."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.stack import DamStack, Proc, get_json

pytestmark = pytest.mark.e2e

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def _burst(mock: Proc, n: int) -> list[float]:
    async with aiohttp.ClientSession() as http:
        async def one() -> float:
            started = time.monotonic()
            async with http.post(f"{mock.url}/v1/chat/completions", json=CHAT) as resp:
                await resp.read()
                assert resp.status == 200
            return time.monotonic() - started
        return await asyncio.gather(*(one() for _ in range(n)))


async def test_requests_beyond_the_slots_queue_and_wait_longer(stack: DamStack) -> None:
    mock = stack.mock_llm("--slots", "2", "--ttft-ms", "200", "--tokens", "1",
                          "--tokens-per-s", "1000")
    latencies = sorted(await _burst(mock, 6))
    stats = get_json(f"{mock.url}/stats")
    assert stats["max_queued"] == 4
    assert latencies[0] < 0.4 and latencies[-1] > 0.55  # three rounds of two
    assert stats["queued"] == 0


async def test_a_long_queue_kills_the_backend_like_an_oom(stack: DamStack) -> None:
    mock = stack.mock_llm("--slots", "1", "--ttft-ms", "500", "--crash-at-queue", "3")
    with pytest.raises(aiohttp.ClientError):
        await _burst(mock, 8)
    assert mock.process.wait(5) == 137
