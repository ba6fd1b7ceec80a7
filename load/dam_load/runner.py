"""Runs one phase of a scenario: `before` (naive gateway) or `after` (the dam), on loopback."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dam_cli.redis_server import EmbeddedServer
from dam_common.connection import make_redis
from dam_common.keys import Keys
from dam_ingress.access import hash_key
from dam_load import hey_group
from dam_load.generator import Spec, identity_key
from dam_load.sampler import Sampler
from dam_load.scenario import Scenario

PER_PROCESS_RATE = 1000  # requests/s one generator process offers comfortably
PYTHON_ONLY = os.environ.get("DAM_FLOOD_GENERATOR") == "python"
KEY_PREFIX = "flood:"


def free_port() -> int:
    """A free loopback port."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A process of the run, restarted if it dies while the load runs."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, *self.args], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.ready_url and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        if self.ready_url:
            raise RuntimeError(f"{self.name} not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class PhaseResult:
    """Everything a phase measured."""

    phase: str
    rows: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    restarts: dict[str, int]
    queue_wait: dict[str, float] = field(default_factory=dict)
    gone_clients: dict[str, int] = field(default_factory=dict)
    records: dict[str, float] = field(default_factory=dict)


class Phase:
    """One run of the scenario's load against either the naive gateway or the dam."""

    def __init__(self, scenario: Scenario, phase: str, workdir: Path) -> None:
        self.sc = scenario
        self.phase = phase
        self.dir = workdir / phase
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DAM_")}
        self.services: list[Service] = []
        self.redis: EmbeddedServer | None = None

    def _service(self, name: str, args: list[str], env: dict[str, str],
                 ready: str | None) -> Service:
        svc = Service(name, args, {**self.env, **env}, self.dir / f"{name}.log", ready)
        svc.start()
        svc.wait_ready()
        self.services.append(svc)
        return svc

    def _backend(self) -> str:
        port, b = free_port(), self.sc.backend
        args = ["-m", "dam_cli", "mock-llm", "--port", str(port), "--slots", str(b.slots),
                "--ttft-ms", str(b.ttft_ms), "--tokens", str(b.tokens), "--tokens-per-s",
                str(b.tokens_per_s), "--queue-memory-kb", str(b.queue_memory_kb),
                "--crash-at-queue", str(b.crash_at_queue)]
        self._service("backend", args, {}, f"http://127.0.0.1:{port}/stats")
        return f"http://127.0.0.1:{port}"

    def _limits_file(self) -> Path:
        lines = []
        for name, table in self.sc.tiers.items():
            lines += [f"[tiers.{name}]",
                      *(f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
                        for k, v in table.items()), ""]
        for g in self.sc.groups:
            if g.identify_by != "key":
                continue
            tier = [f'tier = "{g.tier}"'] if g.tier else []
            for i in range(g.identities):
                lines += ["[[keys]]", f'name = "{g.name}-{i}"',
                          f'key_sha256 = "{hash_key(identity_key(g.name, i))}"',
                          f"rate = {g.key_rate}", f"burst = {g.key_burst}", *tier, ""]
        anon = [g for g in self.sc.groups if g.identify_by == "forwarded_for"]
        if anon:
            tier = [f'tier = "{anon[0].tier}"'] if anon[0].tier else []
            lines = ["[anonymous]", "allowed = true", f"rate = {anon[0].key_rate}",
                     f"burst = {anon[0].key_burst}", *tier, "", *lines]
        path = self.dir / "limits.toml"
        path.write_text("\n".join(lines))
        return path

    def _dam(self, backend: str) -> str:
        self.redis = EmbeddedServer(free_port(), self.dir / "redis")
        self.redis.start()
        port = free_port()
        env = {"DAM_REDIS_URL": self.redis.url, "DAM_KEY_PREFIX": KEY_PREFIX,
               "DAM_CONFIG_FILE": str(self._limits_file()), **self.sc.dam}
        self._service("ingress", ["-m", "dam_cli", "ingress"],
                      {**env, "DAM_INGRESS_PORT": str(port)},
                      f"http://127.0.0.1:{port}/readyz")
        self._service("dispatcher", ["-m", "dam_cli", "dispatcher"],
                      {**env, "DAM_DISPATCHER_PORT": str(free_port())}, None)
        slots = max(1, math.ceil(self.sc.backend.slots / 2))
        for i in range(2):
            wport = free_port()
            self._service(f"worker-{i + 1}", ["-m", "dam_cli", "worker"],
                          {**env, "DAM_WORKER_PORT": str(wport), "DAM_WORKER_ID": f"w{i + 1}",
                           "DAM_WORKER_CAPACITY": str(slots),
                           "DAM_LLM_BASE_URL": f"{backend}/v1"},
                          f"http://127.0.0.1:{wport}/readyz")
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    def _gateway(self, backend: str) -> str:
        port = free_port()
        self._service("gateway", ["-m", "dam_load.naive_gateway", "--port", str(port),
                                  "--backend", backend], {}, None)
        time.sleep(1.0)
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    def _generators(self, url: str, t0: float) -> list[tuple[subprocess.Popen[bytes], Path]]:
        procs = []
        for g in self.sc.groups:
            single = g.identities == 1 and g.identify_by == "key" and not g.stream
            # hey is far cheaper but paces each worker, so only where answers come fast: the
            # dam's. Against the naive gateway's slow answers it would slow the attack down.
            use_hey = (single and g.rate >= 500 and self.phase == "after"
                       and hey_group.available() and not PYTHON_ONLY)
            n = 1 if use_hey else max(1, math.ceil(g.rate / PER_PROCESS_RATE))
            per = math.ceil(g.identities / n)
            duration = g.duration_s or self.sc.duration_s - g.start_s
            for j in range(n):
                offset = (j * per) % g.identities  # fewer identities than processes: they share
                spec = Spec(url=url, group=g.name, rate=g.rate / n,
                            identities=max(1, min(per, g.identities - offset)),
                            identity_offset=offset,
                            identify_by=g.identify_by, t0=t0, start_s=g.start_s,
                            duration_s=duration, stream=g.stream,
                            max_connections=g.connections,
                            timeout_s=self.sc.client_timeout_s)
                out = self.dir / f"gen-{g.name}-{j}.csv"
                module = "dam_load.hey_group" if use_hey else "dam_load.generator"
                proc = subprocess.Popen([sys.executable, "-m", module,
                                         json.dumps(spec.__dict__), str(out)], env=self.env)
                procs.append((proc, out))
        return procs

    def start(self) -> tuple[str, str]:
        """Start the backend and what fronts it (the dam after, the naive gateway before):
        their URLs, the backend's base and the front's chat completions endpoint."""
        backend = self._backend()
        return backend, self._dam(backend) if self.phase == "after" else self._gateway(backend)

    def stop(self) -> None:
        """Stop every process this phase started, the store last."""
        for svc in reversed(self.services):
            svc.stop()
        if self.redis:
            self.redis.stop()

    def run(self) -> PhaseResult:
        """Start everything, offer the load, supervise, collect."""
        try:
            backend, url = self.start()
            t0 = time.time() + 2.0
            sampler = Sampler(self.dir / "samples.jsonl", backend, t0,
                              self.redis.url if self.redis else None, Keys(prefix=KEY_PREFIX))
            for svc in self.services:
                if svc.process:
                    sampler.watch(svc.name, svc.process.pid)
            if self.redis and self.redis.process:
                sampler.watch("redis", self.redis.process.pid)
            gens = self._generators(url, t0)
            for i, (proc, _) in enumerate(gens):
                sampler.watch(f"generator-{i}", proc.pid)
            sampler.start()
            self._supervise(gens, sampler, t0)
            queue_wait = self._queue_wait()
            gone = asyncio.run(gone_clients(self.redis.url)) if self.redis else {}
            records = (asyncio.run(records_since(self.redis.url, (t0 + 10) * 1000))
                       if self.redis else {})
            sampler.stop()
        finally:
            self.stop()
        rows = [row for _, out in gens if out.exists()
                for row in csv.DictReader(out.read_text().splitlines())]
        samples = [json.loads(line)
                   for line in (self.dir / "samples.jsonl").read_text().splitlines()]
        return PhaseResult(self.phase, rows, samples,
                           {s.name: s.restarts for s in self.services}, queue_wait, gone, records)

    def _supervise(self, gens: list[tuple[subprocess.Popen[bytes], Path]], sampler: Sampler,
                   t0: float) -> None:
        limit = t0 + self.sc.duration_s + self.sc.client_timeout_s + self.sc.drain_s + 30
        while any(p.poll() is None for p, _ in gens) and time.time() < limit:
            for svc in self.services:
                if svc.process is not None and svc.process.poll() is not None:
                    svc.restarts += 1
                    svc.start()
                    sampler.watch(svc.name, svc.process.pid)
            time.sleep(0.2)
        for proc, _ in gens:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)

    def _queue_wait(self) -> dict[str, float]:
        """Mean and p95 queue wait from the workers' histograms (after phase only)."""
        text = ""
        for svc in self.services:
            port = svc.env.get("DAM_WORKER_PORT")
            if svc.name.startswith("worker") and port is not None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                        text += r.read().decode()
                except OSError:
                    continue
        return histogram_summary(text, "dam_worker_queue_wait_seconds")


async def gone_clients(redis_url: str) -> dict[str, int]:
    """Callers who left before their answer, and the LLM calls spent on them.

    From the dam's counters: requests cancelled while queued, and running requests whose
    caller left (their backend call aborted). Then every `cancelled` record is checked: one
    that left while queued must never have been dispatched; those that were are counted as
    LLM calls spent on a client already gone (the target is 0).
    """
    keys = Keys(prefix=KEY_PREFIX)
    redis = make_redis(redis_url, max_connections=2)
    try:
        counters = await redis.hgetall(keys.counters)
        wasted = 0
        async for key in redis.scan_iter(match=f"{keys.base}req:*", count=1000):
            record = await redis.hmget(key, "status", "dispatched_ms", "error")
            if record[0] == "cancelled" and record[1] and "while queued" in (record[2] or ""):
                wasted += 1
    finally:
        await redis.aclose()
    return {"left_while_queued": int(counters.get("cancelled", 0)),
            "left_while_running": int(counters.get("gone_while_running", 0)),
            "backend_calls_aborted": int(counters.get("aborted", 0)),
            "llm_calls_for_clients_gone_while_queued": wasted}


async def records_since(redis_url: str, since_ms: float,
                        prefix: str = KEY_PREFIX) -> dict[str, float]:
    """What the store was asked to keep after `since_ms`, and the memory it holds.

    Redis keeps every accepted request's record until DAM_RESULT_TTL_S (invariant 1) and
    every completion in its ingress's reply stream up to DAM_REPLY_MAXLEN, so its memory grows
    with the work done during a run; the report allows for exactly this much. Counted: the
    records accepted since (a request id is its intake stream id, `<ms>-<seq>`), whole; the
    results written since into records accepted before (their size without it was already
    there); and the reply entries added since, as their share of their stream's memory.
    """
    keys = Keys(prefix=prefix)
    redis = make_redis(redis_url, max_connections=2)
    count, completed, replies, total = 0, 0, 0, 0.0
    try:
        async for key in redis.scan_iter(match=f"{keys.base}req:*", count=1000):
            rid = key.rsplit(":", 1)[-1]
            if int(rid.split("-", 1)[0]) > since_ms:
                count += 1
                total += await redis.memory_usage(key, samples=0) or 0
            elif (float(await redis.hget(key, "updated_ms") or 0) > since_ms
                  and (size := await redis.hstrlen(key, "result"))):
                completed += 1
                total += size
        async for key in redis.scan_iter(match=f"{keys.base}reply:*", count=1000):
            length = await redis.xlen(key)
            added = len(await redis.xrange(key, min=f"{int(since_ms) + 1}", max="+"))
            if length and added:
                replies += added
                total += (await redis.memory_usage(key, samples=0) or 0) * added / length
    finally:
        await redis.aclose()
    return {"count": count, "completed": completed, "replies": replies,
            "mb": round(total / 2**20, 3)}


def histogram_summary(text: str, metric: str) -> dict[str, float]:
    """Mean and the bucket bound holding the 95th percentile, summed over the exposition."""
    buckets: dict[float, float] = {}
    total = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        value = line.rsplit(" ", 1)[-1]
        if line.startswith(f"{metric}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            edge = math.inf if le == "+Inf" else float(le)
            buckets[edge] = buckets.get(edge, 0) + float(value)
        elif line.startswith(f"{metric}_sum"):
            total["sum"] += float(value)
        elif line.startswith(f"{metric}_count"):
            total["count"] += float(value)
    if not total["count"]:
        return {}
    p95 = next((e for e in sorted(buckets) if buckets[e] >= 0.95 * total["count"]), math.inf)
    return {"mean_s": total["sum"] / total["count"], "p95_le_s": p95, "count": total["count"]}
