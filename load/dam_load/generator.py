"""Open-model load for one client group: request k leaves at t0 + k/rate whatever the answers
do, so a slow server cannot slow the attack down. Every request is recorded.

`python -m dam_load.generator SPEC_JSON OUT_CSV` (the runner starts one or more per group).
"""

from __future__ import annotations

import asyncio
import csv
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

FIELDS = ("group", "scheduled_s", "sent_s", "status", "latency_s", "ttft_s", "error")
BODY = orjson.dumps({"model": "m", "max_tokens": 16,
                     "messages": [{"role": "user", "content": "Summarise the news."}]})


@dataclass(frozen=True)
class Spec:
    """What one generator process sends."""

    url: str
    group: str
    rate: float
    identities: int
    identity_offset: int
    identify_by: str
    t0: float
    start_s: float
    duration_s: float
    stream: bool
    max_connections: int = 128  # a keep-alive pool, as a real client (or bot) holds
    timeout_s: float = 60

    def headers(self, k: int) -> dict[str, str]:
        """Identity of request k: an API key, or a forwarded-for address (benchmark range)."""
        i = self.identity_offset + k % self.identities
        if self.identify_by == "key":
            return {"Authorization": f"Bearer sk-{self.group}-{i}"}
        return {"X-Forwarded-For": f"198.18.{i // 256 % 256}.{i % 256}"
                if i < 65536 else f"198.19.{i // 256 % 256}.{i % 256}"}


def identity_key(group: str, i: int) -> str:
    """The API key the generator sends for identity i of a group (the runner hashes it)."""
    return f"sk-{group}-{i}"


async def _one(http: aiohttp.ClientSession, spec: Spec, k: int, scheduled: float,
               rows: list[tuple[Any, ...]]) -> None:
    sent = time.time()
    status, ttft, error = 0, None, ""
    body = BODY if not spec.stream else BODY[:-1] + b',"stream":true}'
    try:
        async with http.post(spec.url, data=body, headers=spec.headers(k)) as resp:
            status = resp.status
            if spec.stream and status == 200:
                async for _ in resp.content.iter_any():
                    ttft = ttft if ttft is not None else time.time() - sent
            else:
                await resp.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = type(exc).__name__
    done = time.time()
    rows.append((spec.group, round(scheduled - spec.t0, 4), round(sent - spec.t0, 4), status,
                 round(done - sent, 5), "" if ttft is None else round(ttft, 5), error))


async def run(spec: Spec) -> list[tuple[Any, ...]]:
    """Send on schedule until the group's time is up; wait for the stragglers."""
    rows: list[tuple[Any, ...]] = []
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=spec.max_connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    total = int(spec.rate * spec.duration_s)
    start = spec.t0 + spec.start_s
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        k = 0
        while k < total:
            now = time.time()
            due = min(total, int((now - start) * spec.rate) + 1) if now >= start else 0
            while k < due:
                task = asyncio.create_task(_one(http, spec, k, start + k / spec.rate, rows))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                k += 1
            await asyncio.sleep(min(0.005, max(0.0, start + k / spec.rate - time.time())))
        if tasks:
            await asyncio.wait(tasks, timeout=spec.timeout_s + 5)
    return rows


def main() -> None:
    """Entry point: spec JSON and output CSV path."""
    spec = Spec(**orjson.loads(sys.argv[1]))
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    rows = asyncio.run(run(spec))
    with open(sys.argv[2], "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        writer.writerows(rows)


if __name__ == "__main__":
    main()
