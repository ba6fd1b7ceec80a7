"""Once a second: the backend's /stats, the pipeline in Redis, and CPU / RSS / FDs of every
process of the run (dam services, Redis, backend, generators)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from dam_common.connection import make_redis
from dam_common.keys import Keys
from dam_common.snapshot import take_snapshot


class Sampler(threading.Thread):
    """Samples into a JSON-lines file until stopped."""

    def __init__(self, out: Path, backend_url: str, t0: float, redis_url: str | None = None,
                 keys: Keys | None = None) -> None:
        super().__init__(daemon=True)
        self.out = out
        self._backend = backend_url
        self._t0 = t0
        self._redis_url = redis_url
        self._keys = keys
        self.processes: dict[str, psutil.Process] = {}
        self._known: dict[int, psutil.Process] = {}  # primed for cpu_percent between samples
        self._stop_event = threading.Event()

    def watch(self, name: str, pid: int) -> None:
        """Sample this process from now on (a restarted one replaces its predecessor)."""
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
            self.processes[name] = proc
        except psutil.Error:
            pass

    def stop(self) -> None:
        """End after the current sample."""
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        redis = make_redis(self._redis_url) if self._redis_url else None
        with self.out.open("w") as out:
            while not self._stop_event.is_set():
                sample: dict[str, Any] = {"t": round(time.time() - self._t0, 3),
                                          "backend": self._backend_stats(),
                                          "processes": self._processes()}
                if redis is not None and self._keys is not None:
                    try:
                        sample["pipeline"] = (await take_snapshot(redis, self._keys)).to_json()
                    except Exception as exc:
                        sample["pipeline_error"] = str(exc)
                out.write(json.dumps(sample) + "\n")
                out.flush()
                await asyncio.sleep(max(0.0, 1.0 - (time.time() - self._t0) % 1.0))
        if redis is not None:
            await redis.aclose()

    def _backend_stats(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self._backend}/stats", timeout=0.5) as resp:
                return dict(json.loads(resp.read()))
        except OSError:
            return None

    def _processes(self) -> dict[str, dict[str, float]]:
        """Each watched process with its children (the hey behind a generator wrapper)."""
        stats = {}
        for name, proc in list(self.processes.items()):
            total = {"cpu": 0.0, "rss_mb": 0.0, "fds": 0.0}
            try:
                family = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                family = [proc]
            for member in family:
                member = self._known.setdefault(member.pid, member)
                try:
                    with member.oneshot():
                        total["cpu"] += member.cpu_percent(None)
                        total["rss_mb"] += round(member.memory_info().rss / 2**20, 1)
                        total["fds"] += member.num_fds()
                except psutil.Error:
                    continue
            stats[name] = total
        return stats
