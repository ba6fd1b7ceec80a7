"""Chaos harness: steady load with known ids, crashes at random moments, then reconciliation.

Clients behave as careful real ones do: every request carries an Idempotency-Key, and a client
whose connection breaks (its ingress died, Redis is down) sends the same request again, to the
same or another ingress, until it gets an answer. So every accepted request is known by id.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from dam_common.keys import Keys
from tests.support.stack import Proc

TERMINAL = ("completed", "failed", "expired", "cancelled")
TOKENS = 5  # the mock's answer length in these runs: "tok0 " ... "tok4 "


@dataclass
class Outcome:
    """What one client request ended with."""

    key: str
    rid: str | None = None
    accepted_at: float = 0.0
    streamed: bool = False
    repeated_tokens: bool = False
    http_status: int = 0


@dataclass
class Reconciliation:
    """Every accepted id against the terminal records in Redis."""

    accepted: int = 0
    completed: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0
    llm_calls: int = 0
    reclaimed: int = 0
    requeued: int = 0

    def table(self, title: str) -> str:
        """The reconciliation table `make chaos` prints."""
        rows = [("accepted", self.accepted), ("completed", self.completed),
                ("failed", self.failed), ("expired", self.expired),
                ("cancelled", self.cancelled), ("lost", len(self.lost)),
                ("duplicated answers", self.duplicated), ("LLM calls", self.llm_calls),
                ("reclaimed deliveries", self.reclaimed), ("requeued deliveries", self.requeued)]
        width = max(len(name) for name, _ in rows)
        return "\n".join([f"== {title}", *(f"  {name:<{width}}  {value:>7}"
                                            for name, value in rows)])


class LoadDriver:
    """Open-model load: a new request every 1/rate s, whatever the answers do."""

    def __init__(self, ingresses: list[Proc], rate: float, duration_s: float,
                 stream_share: float, give_up_s: float = 60.0) -> None:
        self._ingresses = ingresses
        self._rate = rate
        self._duration = duration_s
        self._stream_share = stream_share
        self._give_up = give_up_s
        self.outcomes: list[Outcome] = []

    async def run(self) -> list[Outcome]:
        """Send for `duration_s`, then wait for every client to finish."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=0)) as http:
            tasks = []
            start, n = time.monotonic(), 0
            while time.monotonic() - start < self._duration:
                outcome = Outcome(key=f"chaos-{n}", streamed=random.random() < self._stream_share)
                self.outcomes.append(outcome)
                tasks.append(asyncio.create_task(self._client(http, outcome, n)))
                n += 1
                await asyncio.sleep(max(0.0, start + n / self._rate - time.monotonic()))
            await asyncio.gather(*tasks)
        return self.outcomes

    async def _client(self, http: aiohttp.ClientSession, out: Outcome, n: int) -> None:
        deadline = time.monotonic() + self._give_up
        attempt = n
        while time.monotonic() < deadline:
            ingress = self._ingresses[attempt % len(self._ingresses)]
            attempt += 1
            try:
                if await self._try(http, ingress, out):
                    return
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                pass
            await asyncio.sleep(0.2)

    async def _try(self, http: aiohttp.ClientSession, ingress: Proc, out: Outcome) -> bool:
        body = {"model": "m", "messages": [{"role": "user", "content": out.key}],
                "stream": out.streamed}
        headers = {"Idempotency-Key": out.key}
        async with http.post(f"{ingress.url}/v1/chat/completions", json=body,
                             headers=headers) as resp:
            out.http_status = resp.status
            if "x-dam-request-id" in resp.headers:  # accepted (also on a 502 / 504 outcome)
                out.rid = resp.headers["x-dam-request-id"]
                out.accepted_at = out.accepted_at or time.time()
            if resp.status not in (200, 202):
                return resp.status not in (429, 503)  # those are worth another try
            if out.streamed and resp.status == 200 and "event-stream" in resp.content_type:
                tokens = await _read_stream(resp)
                expected = [f"tok{i} " for i in range(len(tokens))]
                out.repeated_tokens = out.repeated_tokens or tokens != expected
            else:
                await resp.read()
            return True


async def _read_stream(resp: aiohttp.ClientResponse) -> list[str]:
    tokens: list[str] = []
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        chunk = orjson.loads(line[5:])
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                tokens.append(content)
    return tokens


async def drain(redis: Redis, keys: Keys, rids: list[str], timeout_s: float) -> None:
    """Wait until every id has a terminal record (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    pending = set(rids)
    while pending and time.monotonic() < deadline:
        pipe = redis.pipeline(transaction=False)
        ordered = sorted(pending)
        for rid in ordered:
            pipe.hget(keys.request(rid), "status")
        for rid, status in zip(ordered, await pipe.execute(), strict=True):
            if status in TERMINAL:
                pending.discard(rid)
        await asyncio.sleep(0.3)


async def reconcile(redis: Redis, keys: Keys, outcomes: list[Outcome],
                    llm_calls: int) -> Reconciliation:
    """Count terminal states of accepted ids; find lost ones and duplicated answers."""
    rec = Reconciliation(llm_calls=llm_calls)
    rids = sorted({o.rid for o in outcomes if o.rid})
    rec.accepted = len(rids)
    for rid in rids:
        status = await redis.hget(keys.request(rid), "status")
        if status in TERMINAL:
            setattr(rec, status, getattr(rec, status) + 1)
        else:
            rec.lost.append(rid)
    rec.duplicated = sum(o.repeated_tokens for o in outcomes) + await _double_completions(
        redis, keys)
    counters = await redis.hgetall(keys.counters)
    rec.reclaimed = int(counters.get("reclaimed", 0))
    rec.requeued = int(counters.get("requeued", 0))
    return rec


async def _double_completions(redis: Redis, keys: Keys) -> int:
    """Requests for which some ingress was sent more than one terminal message."""
    seen: dict[str, int] = {}
    async for stream in redis.scan_iter(match=keys.reply("*"), count=1000):
        for _, fields in await redis.xrange(stream):
            if fields.get("kind") in ("completed", "failed", "expired"):
                seen[fields["rid"]] = seen.get(fields["rid"], 0) + 1
    return sum(1 for count in seen.values() if count > 1)


async def every(period_s: float, until: float, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` at random moments, about every `period_s`, until `until` (monotonic)."""
    while time.monotonic() + period_s / 2 < until:
        await asyncio.sleep(random.uniform(period_s / 2, period_s))
        await action()


def stats_of(mock: Proc) -> dict[str, Any]:
    """The mock backend's /stats."""
    from tests.support.stack import get_json

    return dict(get_json(f"{mock.url}/stats"))
