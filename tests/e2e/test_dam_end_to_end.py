"""The whole dam as real processes: ingress, dispatcher, workers, mock LLM, real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson
import pytest
from openai import AsyncOpenAI

from tests.support.stack import DamStack, Proc, get_json

pytestmark = pytest.mark.e2e

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
OPEN_LIMITS = {"DAM_ANON_RATE": "10000", "DAM_ANON_BURST": "10000", "DAM_BACKLOG_CAP": "5000"}


async def _post_all(ingress: Proc, n: int, headers: dict[str, str] | None = None
                    ) -> list[tuple[int, dict[str, str], Any]]:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        async def one() -> tuple[int, dict[str, str], Any]:
            async with http.post(f"{ingress.url}/v1/chat/completions", json=CHAT,
                                 headers=headers or {}) as resp:
                return resp.status, dict(resp.headers), await resp.json()
        return await asyncio.gather(*(one() for _ in range(n)))


async def _wait_terminal(ingress: Proc, rids: list[str], timeout_s: float = 30
                         ) -> dict[str, dict[str, Any]]:
    """Poll GET /v1/requests/{id} until every request is terminal."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while len(done) < len(rids) and time.monotonic() < deadline:
            for rid in rids:
                if rid in done:
                    continue
                async with http.get(f"{ingress.url}/v1/requests/{rid}") as resp:
                    view = await resp.json()
                if view["status"] in ("completed", "failed", "expired", "cancelled"):
                    done[rid] = view
            await asyncio.sleep(0.2)
    return done


async def _backend_inflight_reaches(mock: Proc, n: int, timeout_s: float = 5.0) -> bool:
    """True once the mock reports `n` generations running at the same time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if get_json(f"{mock.url}/stats")["inflight"] == n:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_200_concurrent_requests_never_exceed_worker_slots(stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "300", "--tokens", "1", "--tokens-per-s", "1000")
    ingress = stack.ingress(**OPEN_LIMITS, DAM_WAIT_TIMEOUT_S="60")
    stack.dispatcher(DAM_DISPATCH_RATE="0")
    for i in range(2):
        stack.worker(mock, f"w{i}", DAM_WORKER_CAPACITY="4")
    results = await _post_all(ingress, 200)
    assert [status for status, _, _ in results] == [200] * 200
    rids = {headers["x-dam-request-id"] for _, headers, _ in results}
    assert len(rids) == 200
    assert all(body["choices"][0]["message"]["content"] for _, _, body in results)
    stats = get_json(f"{mock.url}/stats")
    assert stats["requests_total"] == 200  # exactly one backend call per request
    assert stats["max_inflight"] <= 8  # 2 workers x 4 slots, never more
    assert stats["max_inflight"] >= 4  # and the slots were really used


async def test_dispatch_rate_is_never_exceeded_in_any_second(stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "10", "--tokens", "1")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher(DAM_DISPATCH_RATE="20")
    for i in range(2):
        stack.worker(mock, f"w{i}", DAM_WORKER_CAPACITY="4")
    accepted = await _post_all(ingress, 70, {"Prefer": "respond-async"})
    rids = [body["id"] for status, _, body in accepted if status == 202]
    assert len(rids) == 70
    done = await _wait_terminal(ingress, rids, timeout_s=30)
    assert {v["status"] for v in done.values()} == {"completed"} and len(done) == 70
    stats = get_json(f"{mock.url}/stats")
    assert stats["requests_total"] == 70
    assert stats["max_started_per_second"] <= 20
    assert stats["max_started_per_second"] >= 15  # the limit, not something slower, held it


async def test_openai_sdk_gets_completions_streamed_and_not(stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "20", "--tokens", "5")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher()
    stack.worker(mock)
    client = AsyncOpenAI(base_url=f"{ingress.url}/v1", api_key="unused", max_retries=0)
    try:
        plain = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert plain.choices[0].message.content == "tok0 tok1 tok2 "
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True)
        pieces = [chunk.choices[0].delta.content async for chunk in stream
                  if chunk.choices and chunk.choices[0].delta.content]
        assert pieces == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
    finally:
        await client.close()


async def test_streamed_answer_is_stored_for_later_lookup(stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "20", "--tokens", "3")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher()
    stack.worker(mock)
    async with aiohttp.ClientSession() as http, http.post(
            f"{ingress.url}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        rid = resp.headers["x-dam-request-id"]
        lines = [line.strip() async for line in resp.content if line.strip()]
    assert lines[-1] == b"data: [DONE]"
    done = await _wait_terminal(ingress, [rid])
    assert done[rid]["completion"]["choices"][0]["message"]["content"] == "tok0 tok1 tok2 "


async def test_killed_workers_entries_are_answered_after_visibility_timeout(
        stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "1500", "--tokens", "1")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher(DAM_DISPATCH_RATE="0")
    fast = {"DAM_VISIBILITY_TIMEOUT_S": "2", "DAM_WORKER_CAPACITY": "4"}
    doomed = stack.worker(mock, "doomed", **fast)
    accepted = await _post_all(ingress, 4, {"Prefer": "respond-async"})
    rids = [body["id"] for _, _, body in accepted]
    assert await _backend_inflight_reaches(mock, 4)  # the doomed worker holds all four
    stack.kill(doomed)
    stack.worker(mock, "rescuer", **fast)
    done = await _wait_terminal(ingress, rids, timeout_s=20)
    assert sorted(done) == sorted(rids)
    assert {v["status"] for v in done.values()} == {"completed"}


def _dam(stack: DamStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAM_REDIS_URL": stack.redis_url, "DAM_KEY_PREFIX": stack.key_prefix}
    return subprocess.run([sys.executable, "-m", "dam_cli", *args], env=env, text=True,
                          capture_output=True, timeout=30, check=False)


async def test_always_failing_backend_dead_letters_then_replays(stack: DamStack) -> None:
    mock = stack.mock_llm("--error-rate", "1", "--status", "500")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher()
    stack.worker(mock, DAM_MAX_DELIVERIES="2", DAM_LLM_MAX_ATTEMPTS="2",
                 DAM_LLM_BACKOFF_BASE_S="0.01", DAM_LLM_BACKOFF_MAX_S="0.05")
    [(status, headers, body)] = await _post_all(ingress, 1)
    assert status == 502 and body["error"]["code"] == "backend_failed"
    rid = headers["x-dam-request-id"]
    assert get_json(f"{mock.url}/stats")["requests_total"] == 4  # 2 deliveries x 2 attempts
    listed = _dam(stack, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [dead] = orjson.loads(listed.stdout)
    assert (dead["rid"], dead["deliveries"]) == (rid, 2)
    assert "500" in dead["last_error"]

    stack.kill(mock)
    stack.mock_llm(port=mock.port)  # the backend recovers
    replayed = _dam(stack, "dlq", "replay", dead["dlq_id"])
    assert replayed.returncode == 0, replayed.stderr
    done = await _wait_terminal(ingress, [rid], timeout_s=15)
    assert done[rid]["status"] == "completed"
    assert orjson.loads(_dam(stack, "dlq", "list", "--json").stdout) == []


async def test_sigterm_hands_unfinished_work_back(stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "3000", "--tokens", "1")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher(DAM_DISPATCH_RATE="0")
    leaving = stack.worker(mock, "leaving", DAM_SHUTDOWN_GRACE_S="0.5")
    accepted = await _post_all(ingress, 2, {"Prefer": "respond-async"})
    rids = [body["id"] for _, _, body in accepted]
    assert await _backend_inflight_reaches(mock, 2)
    leaving.process.terminate()
    assert leaving.process.wait(10) == 0  # exits by itself, well before the 3 s generations end
    stack.worker(mock, "staying")
    done = await _wait_terminal(ingress, rids, timeout_s=20)
    assert {v["status"] for v in done.values()} == {"completed"} and len(done) == 2


async def test_idempotent_retry_returns_the_first_answer_without_a_second_call(
        stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "20", "--tokens", "2")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher()
    stack.worker(mock)
    [(s1, h1, first)] = await _post_all(ingress, 1, {"Idempotency-Key": "k-1"})
    [(s2, h2, again)] = await _post_all(ingress, 1, {"Idempotency-Key": "k-1"})
    assert (s1, s2) == (200, 200)
    assert h1["x-dam-request-id"] == h2["x-dam-request-id"]
    assert again == first and h2["x-dam-idempotent-replay"] == "true"
    assert get_json(f"{mock.url}/stats")["requests_total"] == 1


async def test_sigterm_lets_waiting_callers_finish_and_every_service_exit_cleanly(
        stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "1000", "--tokens", "1")
    ingress = stack.ingress(**OPEN_LIMITS, DAM_SHUTDOWN_GRACE_S="5")
    dispatcher = stack.dispatcher()
    worker = stack.worker(mock)
    waiting = asyncio.create_task(_post_all(ingress, 3))
    assert await _backend_inflight_reaches(mock, 3)
    ingress.process.terminate()
    answers = await waiting  # the ingress is draining: callers it holds still get answers
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert all(body["object"] == "chat.completion" for _, _, body in answers)
    assert ingress.process.wait(10) == 0
    for proc in (dispatcher, worker):
        proc.process.terminate()
        assert proc.process.wait(10) == 0


async def test_backend_down_opens_the_circuit_and_the_ingress_answers_503_at_once(
        stack: DamStack) -> None:
    mock = stack.mock_llm("--error-rate", "1", "--status", "503")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher()
    stack.worker(mock, DAM_CIRCUIT_FAILURES="2", DAM_CIRCUIT_COOLDOWN_S="3",
                 DAM_LLM_MAX_ATTEMPTS="1", DAM_MAX_DELIVERIES="1")
    failed = await _post_all(ingress, 2)
    assert [status for status, _, _ in failed] == [502, 502]
    started = time.monotonic()
    [(status, headers, body)] = await _post_all(ingress, 1)
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")
    assert int(headers["Retry-After"]) >= 1 and time.monotonic() - started < 1
    calls = get_json(f"{mock.url}/stats")["requests_total"]
    await asyncio.sleep(3.2)  # cooldown over: requests reach the (still failing) backend again
    [(status, _, _)] = await _post_all(ingress, 1)
    assert status == 502 and get_json(f"{mock.url}/stats")["requests_total"] == calls + 1


async def test_a_success_between_failures_keeps_the_circuit_closed(stack: DamStack) -> None:
    mock = stack.mock_llm("--error-rate", "1", "--status", "503")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher()
    stack.worker(mock, DAM_CIRCUIT_FAILURES="2", DAM_CIRCUIT_COOLDOWN_S="30",
                 DAM_LLM_MAX_ATTEMPTS="1", DAM_MAX_DELIVERIES="1")

    async def set_error_rate(rate: float) -> None:
        async with aiohttp.ClientSession() as http, \
                http.post(f"{mock.url}/config", json={"error_rate": rate}) as resp:
            assert resp.status == 200

    statuses = []
    for rate in (1.0, 0.0, 1.0, 1.0):  # fail, succeed, fail: still closed; fail: opens
        await set_error_rate(rate)
        [(status, _, _)] = await _post_all(ingress, 1)
        statuses.append(status)
    [(status, _, body)] = await _post_all(ingress, 1)
    assert statuses == [502, 200, 502, 502]
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")


async def test_caller_who_leaves_while_queued_costs_no_llm_call(stack: DamStack) -> None:
    mock = stack.mock_llm("--ttft-ms", "10")
    ingress = stack.ingress(**OPEN_LIMITS)
    stack.dispatcher()  # no worker yet: requests wait in the intake stream
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        with pytest.raises(TimeoutError):
            async with http.post(f"{ingress.url}/v1/chat/completions", json=CHAT) as resp:
                await resp.read()
    await asyncio.sleep(2.5)  # the ingress notices within a second
    stack.worker(mock)
    await asyncio.sleep(1.5)
    assert get_json(f"{mock.url}/stats")["requests_total"] == 0
    async with aiohttp.ClientSession() as http, http.get(f"{ingress.url}/metrics") as resp:
        assert "dam_ingress_cancelled_total 1.0" in await resp.text()
