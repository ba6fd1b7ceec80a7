"""Delivery semantics under real processes: a live worker's long generation is never stolen."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.support.stack import DamStack, get_json

pytestmark = pytest.mark.e2e

CHAT = {"model": "m", "messages": [{"role": "user", "content": "write a long essay"}]}


async def test_generation_three_times_the_visibility_timeout_costs_one_llm_call(
        stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "4500", "--tokens", "1")  # 3 x the 1.5 s timeout
    ingress = stack.ingress(DAM_WAIT_TIMEOUT_S="30")
    stack.dispatcher()
    visibility = {"DAM_VISIBILITY_TIMEOUT_S": "1.5"}
    stack.worker(mock, "slow", **visibility)
    stack.worker(mock, "idle-peer", **visibility)  # would reclaim anything left idle
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.post(
            f"{ingress.url}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert time.monotonic() - started >= 4.5
    assert body["choices"][0]["message"]["content"] == "tok0 "
    assert get_json(f"{mock.url}/stats")["requests_total"] == 1
