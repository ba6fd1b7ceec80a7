"""The mock's HTTP app and the statistics tests read to see exactly what reached the backend."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from dam_mock_llm.settings import MockSettings


@dataclass
class Stats:
    """What the backend saw: totals, concurrency, and starts per wall-clock second."""

    requests_total: int = 0
    inflight: int = 0
    max_inflight: int = 0
    queued: int = 0
    max_queued: int = 0
    errors_injected: int = 0
    rejected_overload: int = 0
    aborted: int = 0
    started_per_second: dict[int, int] = field(default_factory=dict)

    def started(self) -> None:
        """Count a request that began."""
        self.requests_total += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        sec = int(time.time())
        self.started_per_second[sec] = self.started_per_second.get(sec, 0) + 1
        if len(self.started_per_second) > 3600:
            del self.started_per_second[min(self.started_per_second)]

    def reset(self) -> None:
        """Zero the counters; requests still running stay counted as in flight."""
        self.requests_total = self.errors_injected = self.rejected_overload = self.aborted = 0
        self.max_inflight, self.max_queued = self.inflight, self.queued
        self.started_per_second.clear()

    def to_json(self) -> dict[str, Any]:
        """The /stats body."""
        return {
            "requests_total": self.requests_total,
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            "max_started_per_second": max(self.started_per_second.values(), default=0),
            "queued": self.queued,
            "max_queued": self.max_queued,
            "errors_injected": self.errors_injected,
            "rejected_overload": self.rejected_overload,
            "aborted": self.aborted,
        }


@dataclass
class Behaviour:
    """The settings in force; POST /config swaps them while the server runs."""

    current: MockSettings


class Slots:
    """Concurrent generations; the rest wait in an unbounded FIFO, each holding memory."""

    def __init__(self, behaviour: Behaviour, stats: Stats) -> None:
        self._behaviour = behaviour
        self._stats = stats
        self._busy = 0
        self._freed = asyncio.Condition()

    async def acquire(self) -> None:
        """Take a slot, waiting (and maybe crashing, like an OOM kill) when none is free."""
        settings = self._behaviour.current
        if settings.slots and self._busy >= settings.slots:
            stats = self._stats
            stats.queued += 1
            stats.max_queued = max(stats.max_queued, stats.queued)
            if settings.crash_at_queue and stats.queued > settings.crash_at_queue:
                os._exit(137)
            ballast = bytearray(settings.queue_memory_kb * 1024)
            try:
                async with self._freed:
                    await self._freed.wait_for(self._has_room)
            finally:
                stats.queued -= 1
                del ballast
        self._busy += 1

    def overloaded(self) -> bool:
        """All slots busy and the queue at `max_queue`: a hosted API would answer 429."""
        settings = self._behaviour.current
        return (settings.max_queue is not None and bool(settings.slots)
                and self._busy >= settings.slots and self._stats.queued >= settings.max_queue)

    def _has_room(self) -> bool:
        slots = self._behaviour.current.slots
        return not slots or self._busy < slots

    async def release(self) -> None:
        """Free a slot for the next waiter."""
        self._busy -= 1
        async with self._freed:
            self._freed.notify()


SETTINGS = web.AppKey("settings", Behaviour)
SLOTS = web.AppKey("slots", Slots)
STATS = web.AppKey("stats", Stats)


def _answer_tokens(body: dict[str, Any], settings: MockSettings) -> list[str]:
    cap = body.get("max_tokens") or body.get("max_completion_tokens") or settings.tokens
    n = max(1, min(settings.tokens, int(cap)))
    return [f"tok{i} " for i in range(n)]


def _chunk(cid: str, model: str, created: int, delta: dict[str, Any],
           finish: str | None) -> bytes:
    doc = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(doc) + b"\n\n"


async def chat(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, streamed or not, after the configured latency."""
    settings, stats = request.app[SETTINGS].current, request.app[STATS]
    try:
        body = orjson.loads(await request.read())
        assert isinstance(body, dict) and isinstance(body.get("messages"), list)
    except (orjson.JSONDecodeError, AssertionError):
        return web.json_response({"error": {"message": "bad request", "type": "invalid_request",
                                            "code": "bad_request"}}, status=400)
    stats.started()
    try:
        if random.random() < settings.error_rate:
            stats.errors_injected += 1
            headers = {}
            if settings.retry_after_s is not None:
                headers["Retry-After"] = str(settings.retry_after_s)
            return web.json_response({"error": {"message": "injected failure",
                                                "type": "server_error", "code": "mock"}},
                                     status=settings.status, headers=headers)
        slots = request.app[SLOTS]
        if slots.overloaded():
            stats.rejected_overload += 1
            return web.json_response({"error": {"message": "overloaded, retry later",
                                                "type": "rate_limit", "code": "overloaded"}},
                                     status=429, headers={"Retry-After": "1"})
        await slots.acquire()
        try:
            return await _generate(request, request.app[SETTINGS].current, body, stats)
        finally:
            await slots.release()
    except asyncio.CancelledError:
        stats.aborted += 1  # the caller closed the connection mid-generation
        raise
    finally:
        stats.inflight -= 1


async def _generate(request: web.Request, settings: MockSettings, body: dict[str, Any],
                    stats: Stats) -> web.StreamResponse:
    """The answer, after time to first token and at the configured token speed."""
    tokens = _answer_tokens(body, settings)
    model = str(body.get("model", "mock"))
    cid, created = f"chatcmpl-mock{stats.requests_total}", int(time.time())
    await asyncio.sleep(settings.ttft_ms / 1000)
    if body.get("stream"):
        return await _stream(request, settings, tokens, cid, model, created)
    await asyncio.sleep(len(tokens) / settings.tokens_per_s)
    usage = {"prompt_tokens": 8, "completion_tokens": len(tokens),
             "total_tokens": 8 + len(tokens)}
    return web.json_response({
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "".join(tokens)}}],
        "usage": usage})


async def _stream(request: web.Request, settings: MockSettings, tokens: list[str], cid: str,
                  model: str, created: int) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk(cid, model, created, {"role": "assistant", "content": ""}, None))
    for tok in tokens:
        await resp.write(_chunk(cid, model, created, {"content": tok}, None))
        await asyncio.sleep(1 / settings.tokens_per_s)
    await resp.write(_chunk(cid, model, created, {}, "stop"))
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def set_config(request: web.Request) -> web.Response:
    """POST /config: change behaviour mid-run (error bursts, slow-downs), e.g. {"ttft_ms": 900}."""
    try:
        changes = orjson.loads(await request.read())
        behaviour = request.app[SETTINGS]
        current = behaviour.current.model_dump()
        unknown = set(changes) - set(current)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        behaviour.current = MockSettings.model_validate({**current, **changes})
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        return web.json_response({"error": {"message": str(exc), "type": "invalid_request",
                                            "code": "bad_config"}}, status=400)
    return web.json_response(behaviour.current.model_dump())


async def get_stats(request: web.Request) -> web.Response:
    """GET /stats."""
    return web.json_response(request.app[STATS].to_json())


async def reset_stats(request: web.Request) -> web.Response:
    """POST /stats/reset: zero everything but the requests in flight."""
    request.app[STATS].reset()
    return web.json_response({"reset": True})


def create_app(settings: MockSettings) -> web.Application:
    """The mock backend app."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[SETTINGS] = Behaviour(settings)
    app[STATS] = Stats()
    app[SLOTS] = Slots(app[SETTINGS], app[STATS])
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/stats/reset", reset_stats)
    app.router.add_post("/config", set_config)
    return app
